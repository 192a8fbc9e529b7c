//! The report's streaming section: S1 and S2, against tonic and against
//! the same items fetched by unary calls.

use std::fmt::Write as _;

use super::{Cells, Outcome, chart, measured, opt, speedup, times};
use crate::impls::Impl;
use crate::lineup::Contender;
use crate::workloads::Workload;

/// The streaming workloads' table (S1, S2), with ratios to tonic and to
/// `rpc-unary`; returns the chart's bars (ratios to tonic).
pub(super) fn table(md: &mut String, o: &Outcome<'_>, cells: &Cells) -> Vec<chart::Bars> {
    let workloads: Vec<Workload> = o
        .workloads
        .iter()
        .copied()
        .filter(|w| w.streaming())
        .collect();
    if workloads.is_empty() {
        return Vec::new();
    }
    let s = o.settings;
    let _ = writeln!(md, "## Streaming\n");
    let sizes = match (s.s1_items, s.s2_mib) {
        (None, None) => format!(
            "as many items as the implementation would fetch in {:.1} s at the rate of \
             its {:.1} s of warm-up calls (`BENCH_S1_ITEMS`, `BENCH_S2_MIB` fix the \
             size instead)",
            s.secs.as_secs_f64(),
            s.warmup.as_secs_f64()
        ),
        (s1, s2) => format!(
            "S1: {}, S2: {} (the rest sized from the warm-up's rate to last {:.1} s)",
            s1.map_or_else(|| "sized from the warm-up".into(), |n| format!("{n} items")),
            s2.map_or_else(|| "sized from the warm-up".into(), |n| format!("{n} MiB")),
            s.secs.as_secs_f64()
        ),
    };
    let window = s.stream_window.map_or_else(
        || {
            format!(
                "the library's default stream window ({} KiB)",
                ::rpc::stream::DEFAULT_CLIENT_WINDOW >> 10
            )
        },
        |b| format!("a stream window of {b} bytes (`BENCH_STREAM_WINDOW`)"),
    );
    if o.workloads.iter().all(|w| w.streaming()) {
        let _ = writeln!(md, "![Speed relative to tonic](BENCHMARKS.svg)\n");
    }
    let _ = writeln!(
        md,
        "**S1**: items of 16 bytes; **S2**: chunks of 64 KiB. One connection; each \
         cell's measured call is timed from its start to its last item, and fetches \
         {sizes}. `rpc-stream`: this library's server streaming, one call, the client \
         granting {window}. \
         `rpc-unary`: this library's unary calls, one per item, {} (S1) and {} (S2) \
         in flight. `tonic`: tonic 0.14 + prost, one server-streaming call over one \
         HTTP/2 connection, tonic's default settings. `baseline-stream`: a \
         hand-written stream (tokio, bincode), items encoded back to back with no \
         frame each, no flow control, no cancellation, decoded in the task that \
         reads the socket: a floor under the cost per item (S1). Medians over the repeats; \
         **× tonic** and **× rpc-unary**: the ratio of medians in the same run \
         (items/s for S1, MB/s for S2). Range: the lowest and highest repeat. \
         Items per call: the median of the measured calls' sizes.\n",
        Workload::S1.in_flight(),
        Workload::S2.in_flight(),
    );
    let _ = writeln!(
        md,
        "| workload | implementation | median | range | × tonic | × rpc-unary | items/s | items per call | CPU µs/item (stat) | CPU µs/item (schedstat) | peak RSS MiB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    let unary = Contender::this(Impl::RpcUnary);
    let mut chart = Vec::new();
    for w in workloads {
        let mut bars = Vec::new();
        for c in o.lineup.on(w) {
            let Some(cell) = cells.get(&(w, c)) else {
                continue;
            };
            let r = speedup(cells, w, c, Contender::this(w.reference()));
            bars.push((c, r));
            let (failed, value, range) = measured(cell, w);
            let _ = writeln!(
                md,
                "| {} | {}{failed} | {value} | {range} | {} | {} | {} | {} | {} | {} | {} |",
                w.describe(),
                c.name(),
                times(r),
                times(speedup(cells, w, c, unary)),
                opt(cell.calls_per_s, 0),
                opt(cell.calls, 0),
                opt(cell.cpu_us_stat, 3),
                opt(cell.cpu_us_sched, 3),
                opt(cell.hwm_mib, 1),
            );
        }
        chart.push((w, bars));
    }
    let _ = writeln!(md);
    chart
}
