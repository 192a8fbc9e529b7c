//! The workloads: what is called, over how many connections, with how many
//! calls in flight, and how each is named in the report.

use crate::Settings;
use crate::impls::Impl;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Workload {
    A,
    B,
    C,
    D64K,
    D1M,
    /// One call streaming many 16-byte items (items/s).
    S1,
    /// One call streaming 64 KiB chunks (MB/s).
    S2,
    /// Echo of 1 MiB of JSON-like text, compressed or not (MB/s, and bytes
    /// on the wire).
    Z1,
}

impl Workload {
    pub(crate) const ALL: [Workload; 8] = [
        Workload::A,
        Workload::B,
        Workload::C,
        Workload::D64K,
        Workload::D1M,
        Workload::S1,
        Workload::S2,
        Workload::Z1,
    ];

    /// The `WORKLOAD` of `--child IMPL WORKLOAD`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::A => "A",
            Workload::B => "B",
            Workload::C => "C",
            Workload::D64K => "D64K",
            Workload::D1M => "D1M",
            Workload::S1 => "S1",
            Workload::S2 => "S2",
            Workload::Z1 => "Z1",
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
            Workload::S1 => "S1: stream 16-byte items, 1 conn",
            Workload::S2 => "S2: stream 64 KiB chunks, 1 conn",
            Workload::Z1 => "Z1: echo 1 MiB of JSON-like text, 1 conn x 8 in flight",
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
            Workload::S1 => "S1 16 B items",
            Workload::S2 => "S2 64 KiB chunks",
            Workload::Z1 => "Z1 echo 1 MiB JSON",
        }
    }

    pub(crate) fn connections(self) -> usize {
        match self {
            Workload::C => 8,
            _ => 1,
        }
    }

    /// Calls in flight per connection (for S1 and S2, the unary calls of
    /// `rpc-unary`: as many as B keeps for small calls and D for large ones).
    pub(crate) fn in_flight(self) -> usize {
        match self {
            Workload::A => 1,
            Workload::B | Workload::S1 => 64,
            Workload::C => 32,
            Workload::D64K | Workload::D1M | Workload::S2 | Workload::Z1 => 8,
        }
    }

    /// The streaming workloads (S1, S2), which the streaming
    /// implementations run, and only they.
    pub(crate) fn streaming(self) -> bool {
        matches!(self, Workload::S1 | Workload::S2)
    }

    /// The bytes of each streamed item (S1, S2).
    pub(crate) fn item_size(self) -> Option<u32> {
        match self {
            Workload::S1 => Some(16),
            Workload::S2 => Some(64 << 10),
            _ => None,
        }
    }

    /// The items of each warm-up call of S1 or S2 (1 MiB for S1, 4 MiB for
    /// S2).
    pub(crate) fn warm_items(self) -> u64 {
        match self {
            Workload::S1 => 1 << 16,
            Workload::S2 => 64,
            _ => 0,
        }
    }

    /// The items of the measured call of S1 or S2 if the settings fix them
    /// (`BENCH_S1_ITEMS`, `BENCH_S2_MIB`); otherwise the child sizes the call
    /// from its warm-up rate to last about `BENCH_SECS`.
    pub(crate) fn fixed_items(self, s: &Settings) -> Option<u64> {
        match self {
            Workload::S1 => s.s1_items,
            Workload::S2 => s.s2_mib.map(|mib| (mib << 20).div_ceil(64 << 10)),
            _ => None,
        }
    }

    /// The implementation the others are measured against: tarpc, or for
    /// the streaming workloads tonic.
    pub(crate) fn reference(self) -> Impl {
        match self {
            Workload::Z1 => Impl::Rpc,
            w if w.streaming() => Impl::Tonic,
            _ => Impl::Tarpc,
        }
    }

    /// The bytes each `echo` sends; `None`: the workload calls `add`.
    pub(crate) fn payload(self) -> Option<usize> {
        match self {
            Workload::D64K => Some(64 << 10),
            Workload::D1M | Workload::Z1 => Some(1 << 20),
            _ => None,
        }
    }

    /// What each `echo` sends: D's bytes are all alike, Z1's are text as
    /// an API would send (records of a few fields, their names repeated),
    /// which compresses as such text does.
    pub(crate) fn payload_bytes(self) -> Option<Vec<u8>> {
        let len = self.payload()?;
        if self != Workload::Z1 {
            return Some(vec![0xA5u8; len]);
        }
        let mut text = String::from("[");
        let mut i = 0u64;
        while text.len() < len {
            // A small deterministic generator, so that values vary as ids,
            // counts and names do.
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            text.push_str(&format!(
                "{{\"id\":{i},\"user\":\"user-{}\",\"active\":{},\"score\":{}.{},\
                 \"tags\":[\"t{}\",\"t{}\"],\"city\":\"{}\"}},",
                x % 5000,
                x.is_multiple_of(3),
                x % 1000,
                x % 100,
                x % 17,
                x % 29,
                ["Lisbon", "Oslo", "Kyoto", "Lima", "Accra", "Perth"][(x % 6) as usize],
            ));
            i += 1;
        }
        let mut bytes = text.into_bytes();
        bytes.truncate(len);
        Some(bytes)
    }

    /// Whether `imp` runs on this workload: the unbatched variants only on
    /// the small-call workloads, where batching is the question.
    /// The streaming implementations run only on the streaming workloads,
    /// and those only them.
    /// Z1 is run by `rpc` (uncompressed) and the compressing contenders,
    /// which run nothing else.
    pub(crate) fn runs(self, imp: Impl) -> bool {
        if self == Workload::Z1 || imp.compressing() {
            return self == Workload::Z1 && (imp == Impl::Rpc || imp.compressing());
        }
        imp.streaming() == self.streaming()
            && (!imp.unbatched() || matches!(self, Workload::A | Workload::B))
    }

    /// The headline in the unit of the report: p50 µs (A), calls/s (B, C),
    /// MB/s counting the payload once (D, S2), items/s (S1).
    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Workload::A => format!("{v:.1} µs"),
            Workload::D64K | Workload::D1M | Workload::S2 | Workload::Z1 => {
                format!("{v:.0} MB/s")
            }
            Workload::S1 => format!("{:.2}M items/s", v / 1e6),
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
