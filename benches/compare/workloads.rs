//! The workloads: what is called, over how many connections, with how many
//! calls in flight, and how each is named in the report.

use crate::impls::Impl;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Workload {
    A,
    B,
    C,
    D64K,
    D1M,
}

impl Workload {
    pub(crate) const ALL: [Workload; 5] = [
        Workload::A,
        Workload::B,
        Workload::C,
        Workload::D64K,
        Workload::D1M,
    ];

    /// The `WORKLOAD` of `--child IMPL WORKLOAD`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::A => "A",
            Workload::B => "B",
            Workload::C => "C",
            Workload::D64K => "D64K",
            Workload::D1M => "D1M",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Workload::A => "A: add, 1 conn, 1 in flight (latency)",
            Workload::B => "B: add, 1 conn x 64 in flight",
            Workload::C => "C: add, 8 conns x 32 in flight",
            Workload::D64K => "D: echo 64 KiB, 1 conn x 8 in flight",
            Workload::D1M => "D: echo 1 MiB, 1 conn x 8 in flight",
        }
    }

    /// The label under the workload's bars in the chart.
    pub(crate) fn short(self) -> &'static str {
        match self {
            Workload::A => "A p50 latency",
            Workload::B => "B 1x64 add",
            Workload::C => "C 8x32 add",
            Workload::D64K => "D echo 64 KiB",
            Workload::D1M => "D echo 1 MiB",
        }
    }

    pub(crate) fn connections(self) -> usize {
        match self {
            Workload::C => 8,
            _ => 1,
        }
    }

    /// Calls in flight per connection.
    pub(crate) fn in_flight(self) -> usize {
        match self {
            Workload::A => 1,
            Workload::B => 64,
            Workload::C => 32,
            Workload::D64K | Workload::D1M => 8,
        }
    }

    /// The bytes each `echo` sends; `None`: the workload calls `add`.
    pub(crate) fn payload(self) -> Option<usize> {
        match self {
            Workload::D64K => Some(64 << 10),
            Workload::D1M => Some(1 << 20),
            _ => None,
        }
    }

    /// Whether `imp` runs on this workload: the unbatched variants only on
    /// the small-call workloads, where batching is the question.
    pub(crate) fn runs(self, imp: Impl) -> bool {
        !imp.unbatched() || matches!(self, Workload::A | Workload::B)
    }

    /// The headline in the unit of the report: p50 µs (A), calls/s (B, C),
    /// MB/s counting the payload once (D).
    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Workload::A => format!("{v:.1} µs"),
            Workload::D64K | Workload::D1M => format!("{v:.0} MB/s"),
            _ => format!("{:.0}k calls/s", v / 1e3),
        }
    }

    /// How many times faster `ours` is than `theirs`, both headlines of this
    /// workload (for A, a latency: their p50 over ours).
    pub(crate) fn speedup(self, ours: f64, theirs: f64) -> f64 {
        if self == Workload::A {
            theirs / ours
        } else {
            ours / theirs
        }
    }
}
