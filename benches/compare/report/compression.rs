//! The report's compression section: Z1, the same echo of JSON-like text
//! uncompressed (`rpc`) and compressed with LZ4 and zstd, in MB/s and in
//! bytes on the wire.

use std::fmt::Write as _;

use super::{Cells, Outcome, chart, measured, opt, speedup, times};
use crate::impls::Impl;
use crate::lineup::Contender;
use crate::workloads::Workload;

/// Z1's table, with ratios to `rpc` (uncompressed); returns the chart's bars.
pub(super) fn table(md: &mut String, o: &Outcome<'_>, cells: &Cells) -> Vec<chart::Bars> {
    let w = Workload::Z1;
    if !o.workloads.contains(&w) {
        return Vec::new();
    }
    let _ = writeln!(md, "## Compression\n");
    let _ = writeln!(
        md,
        "**Z1**: `echo` of 1 MiB of JSON-like text (records of a few fields whose names \
         repeat), {} in flight on one connection, so each call's 1 MiB crosses twice. \
         `rpc`: uncompressed; `rpc-lz4`, `rpc-zstd`: the channel and the server set to \
         compress with that algorithm (zstd at level 3). **MB/s** counts the payload once \
         per call; **wire bytes/call**: what the client wrote and read per call (frames \
         both ways), counted by its transport. Medians over the repeats; **× rpc**: the \
         ratio of medians in the same run.\n",
        w.in_flight()
    );
    let _ = writeln!(
        md,
        "| implementation | MB/s | range | × rpc | wire bytes/call | × rpc's bytes | calls/s | CPU µs/call (stat) | peak RSS MiB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let plain = Contender::this(Impl::Rpc);
    let plain_wire = cells.get(&(w, plain)).and_then(|c| c.wire_per_call);
    let mut bars = Vec::new();
    for c in o.lineup.on(w) {
        let Some(cell) = cells.get(&(w, c)) else {
            continue;
        };
        let r = speedup(cells, w, c, plain);
        bars.push((c, r));
        let (failed, value, range) = measured(cell, w);
        let wire_ratio = cell.wire_per_call.zip(plain_wire).map(|(a, b)| a / b);
        let _ = writeln!(
            md,
            "| {}{failed} | {value} | {range} | {} | {} | {} | {} | {} | {} |",
            c.name(),
            times(r),
            opt(cell.wire_per_call, 0),
            wire_ratio.map_or_else(|| "–".into(), |r| format!("{r:.3}×")),
            opt(cell.calls_per_s, 0),
            opt(cell.cpu_us_stat, 1),
            opt(cell.hwm_mib, 1),
        );
    }
    let _ = writeln!(md);
    vec![(w, bars)]
}
