//! The parent's report: each cell's repeats reduced to medians, ratios to
//! tarpc (for the streaming workloads, to tonic and to `rpc-unary`; and to
//! the older build), `BENCHMARKS.md` and `BENCHMARKS.svg`.

mod chart;
mod compression;
mod machine;
mod streaming;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use machine::load_average;

use crate::Settings;
use crate::impls::Impl;
use crate::lineup::{Build, Contender, Fields, Lineup};
use crate::workloads::Workload;

/// Everything a run measured.
#[derive(Debug)]
pub(crate) struct Outcome<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) lineup: &'a Lineup,
    pub(crate) workloads: &'a [Workload],
    /// Each cell's repeats; `None`: a child that failed.
    pub(crate) cells: BTreeMap<(Workload, Contender), Vec<Option<Fields>>>,
    /// The memory test's repeats, if it ran.
    pub(crate) memory: Option<Vec<Option<Fields>>>,
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    pub(crate) elapsed: Duration,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// One cell's repeats, reduced.
#[derive(Debug, Default, Clone)]
struct Cell {
    runs: usize,
    failed: usize,
    /// The headline: calls/s (B, C), MB/s (D, S2), p50 µs (A), items/s
    /// (S1); then its min and max.
    value: Option<f64>,
    min: f64,
    max: f64,
    p99_us: Option<f64>,
    calls_per_s: Option<f64>,
    /// The calls (for S1 and S2, the items) of a window.
    calls: Option<f64>,
    cpu_us_stat: Option<f64>,
    cpu_us_sched: Option<f64>,
    hwm_mib: Option<f64>,
    /// Bytes the client wrote and read per call (Z1).
    wire_per_call: Option<f64>,
}

fn reduce(w: Workload, runs: &[Option<Fields>], clk_tck: f64) -> Cell {
    let ok: Vec<&Fields> = runs.iter().flatten().collect();
    let get = |f: &Fields, k: &str| f.get(k).copied();
    let headline = |f: &Fields| -> Option<f64> {
        let calls_per_s = get(f, "calls")? / get(f, "secs")?;
        match w {
            Workload::A => Some(get(f, "p50_ns")? / 1e3),
            Workload::D64K | Workload::D1M | Workload::Z1 => {
                Some(calls_per_s * w.payload()? as f64 / 1e6)
            }
            Workload::S2 => Some(calls_per_s * f64::from(w.item_size()?) / 1e6),
            _ => Some(calls_per_s),
        }
    };
    let collect = |g: &dyn Fn(&Fields) -> Option<f64>| -> Vec<f64> {
        ok.iter().filter_map(|f| g(f)).collect()
    };
    let values = collect(&headline);
    Cell {
        runs: runs.len(),
        failed: runs.len() - ok.len(),
        value: median(values.clone()),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        p99_us: median(collect(&|f| Some(get(f, "p99_ns")? / 1e3))),
        calls_per_s: median(collect(&|f| Some(get(f, "calls")? / get(f, "secs")?))),
        calls: median(collect(&|f| get(f, "calls"))),
        cpu_us_stat: median(collect(&|f| {
            Some(get(f, "ticks")? / clk_tck * 1e6 / get(f, "calls")?)
        })),
        cpu_us_sched: median(collect(&|f| {
            Some(get(f, "sched_ns")? / 1e3 / get(f, "calls")?)
        })),
        hwm_mib: median(collect(&|f| Some(get(f, "hwm_kb")? / 1024.0))),
        wire_per_call: median(collect(&|f| Some(get(f, "wire_bytes")? / get(f, "calls")?))),
    }
}

type Cells = BTreeMap<(Workload, Contender), Cell>;

/// How many times faster `c` is than `than` on `w`: the ratio of medians.
/// A cell's first columns: how many of its runs failed (if any), its
/// median, and its range.
fn measured(cell: &Cell, w: Workload) -> (String, String, String) {
    let failed = if cell.failed > 0 {
        format!(" ({} of {} runs failed)", cell.failed, cell.runs)
    } else {
        String::new()
    };
    let value = cell.value.map_or_else(|| "failed".into(), |v| w.format(v));
    let range = if cell.value.is_some() {
        format!("{} – {}", w.format(cell.min), w.format(cell.max))
    } else {
        "–".into()
    };
    (failed, value, range)
}

fn speedup(cells: &Cells, w: Workload, c: Contender, than: Contender) -> Option<f64> {
    let (ours, theirs) = (cells.get(&(w, c))?.value?, cells.get(&(w, than))?.value?);
    Some(w.speedup(ours, theirs))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

/// The command that reproduces the run (`BENCH_OUT` aside).
fn command_line() -> String {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BENCH_") && k != "BENCH_OUT")
        .map(|(k, v)| {
            if v.contains(' ') {
                format!("{k}='{v}'")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    vars.sort();
    vars.push("cargo bench -p rpc-bench --bench compare --features compare".into());
    vars.join(" ")
}

/// Writes `BENCHMARKS.md` and `BENCHMARKS.svg` into `BENCH_OUT` (default:
/// the workspace root) and prints the markdown.
pub(crate) fn write(o: &Outcome<'_>) {
    let s = o.settings;
    let clk_tck = machine::clock_ticks_per_sec();
    let cpu = machine::cpu_model();
    let cells: Cells = o
        .cells
        .iter()
        .map(|(&(w, c), runs)| ((w, c), reduce(w, runs, clk_tck)))
        .collect();

    let mut md = String::new();
    header(&mut md, o);
    let _ = writeln!(md, "## Machine\n");
    machine::table(&mut md, &cpu, &o.load_before, &o.load_after);
    let mut chart = results(&mut md, o, &cells);
    chart.extend(streaming::table(&mut md, o, &cells));
    chart.extend(compression::table(&mut md, o, &cells));
    if let Some(before) = &o.lineup.before {
        against_before(&mut md, o, &cells, before);
    }
    if let Some(runs) = &o.memory {
        memory(&mut md, runs);
    }
    method(&mut md, clk_tck, o.workloads.iter().any(|w| w.streaming()));

    let svg = chart::svg(
        &chart,
        &o.lineup.contenders,
        &format!(
            "{} · median of {} runs of {:.1} s per cell · {}",
            cpu,
            s.repeats,
            s.secs.as_secs_f64(),
            if s.quick { "QUICK RUN" } else { "full run" }
        ),
    );
    let out_dir =
        std::env::var_os("BENCH_OUT").map_or_else(|| crate::workspace_root().into(), PathBuf::from);
    std::fs::create_dir_all(&out_dir).expect("create BENCH_OUT");
    let md_path = out_dir.join("BENCHMARKS.md");
    let svg_path = out_dir.join("BENCHMARKS.svg");
    std::fs::write(&md_path, &md).expect("write BENCHMARKS.md");
    std::fs::write(&svg_path, svg).expect("write BENCHMARKS.svg");
    println!("{md}");
    eprintln!(
        "compare: wrote {} and {}",
        md_path.display(),
        svg_path.display()
    );
}

/// Title, note, what ran and how to run it again.
fn header(md: &mut String, o: &Outcome<'_>) {
    let s = o.settings;
    let _ = writeln!(md, "# Benchmarks\n");
    if s.quick || std::env::var("BENCH_NOTE").is_ok() {
        let note = std::env::var("BENCH_NOTE").unwrap_or_default();
        let _ = writeln!(
            md,
            "> **{}** {note}\n",
            if s.quick {
                "Quick run: short windows and few repeats; not for conclusions."
            } else {
                "Note:"
            }
        );
    }
    let _ = writeln!(
        md,
        "This library (`rpc`) side by side with tarpc 0.38 and a hand-written \
         tokio + bincode baseline, and for streaming with tonic 0.14, over \
         loopback TCP, written by `benches/compare/` on {} (the run took {:.0} s).\n",
        machine::utc_now(),
        o.elapsed.as_secs_f64()
    );
    let _ = writeln!(md, "Command (from the workspace root):\n");
    let _ = writeln!(md, "```sh\n{}\n```\n", command_line());
    let _ = writeln!(
        md,
        "Settings: warm-up {:.1} s and measurement {:.1} s per cell, repeats: {}, \
         every cell in a fresh process, repeats interleaved across implementations.\n",
        s.warmup.as_secs_f64(),
        s.secs.as_secs_f64(),
        s.repeats
    );
}

/// The results table, one row per cell; returns the chart's bars.
fn results(md: &mut String, o: &Outcome<'_>, cells: &Cells) -> Vec<chart::Bars> {
    let workloads: Vec<Workload> = o
        .workloads
        .iter()
        .copied()
        .filter(|w| !w.streaming() && *w != Workload::Z1)
        .collect();
    if workloads.is_empty() {
        return Vec::new();
    }
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(md, "![Speed relative to tarpc](BENCHMARKS.svg)\n");
    let _ = writeln!(
        md,
        "Medians over the repeats. **× tarpc**: how many times faster than tarpc in \
         the same run (throughput over tarpc's; for A, tarpc's p50 latency over this \
         one's). Range: the lowest and highest repeat.\n"
    );
    let _ = writeln!(
        md,
        "| workload | implementation | median | range | × tarpc | p99 (A) | calls/s | CPU µs/call (stat) | CPU µs/call (schedstat) | peak RSS MiB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
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
                "| {} | {}{failed} | {value} | {range} | {} | {} | {} | {} | {} | {} |",
                w.describe(),
                c.name(),
                times(r),
                cell.p99_us
                    .map_or_else(|| "–".into(), |v| format!("{v:.1} µs")),
                opt(cell.calls_per_s, 0),
                opt(cell.cpu_us_stat, 2),
                opt(cell.cpu_us_sched, 2),
                opt(cell.hwm_mib, 1),
            );
        }
        chart.push((w, bars));
    }
    let _ = writeln!(md);
    chart
}

/// `rpc / rpc-before` (and `rpc-unbatched / rpc-unbatched-before`) per
/// workload, for the pairs that both ran.
fn against_before(md: &mut String, o: &Outcome<'_>, cells: &Cells, before: &Path) {
    let _ = writeln!(md, "## This build against the older one\n");
    let _ = writeln!(
        md,
        "The `-before` rows ran `{}` (`BENCH_BEFORE`), interleaved with this build's \
         cells. **rpc / rpc-before**: how many times faster this build is than the \
         older one in the same run (throughput over the older one's; for A, its p50 \
         latency over this one's).\n",
        before.display()
    );
    let _ = writeln!(
        md,
        "| workload | implementation | this build | older build | this / older |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for &w in o.workloads {
        for imp in [Impl::Rpc, Impl::RpcUnbatched] {
            let (this, older) = (
                Contender::this(imp),
                Contender {
                    imp,
                    build: Build::Before,
                },
            );
            if !o.lineup.on(w).contains(&this) || !o.lineup.on(w).contains(&older) {
                continue;
            }
            let value = |c: Contender| {
                cells
                    .get(&(w, c))
                    .and_then(|cell| cell.value)
                    .map_or_else(|| "failed".into(), |v| w.format(v))
            };
            let _ = writeln!(
                md,
                "| {} | {} / {} | {} | {} | {} |",
                w.describe(),
                this.name(),
                older.name(),
                value(this),
                value(older),
                times(speedup(cells, w, this, older)),
            );
        }
    }
    let _ = writeln!(md);
}

/// The memory test's table.
fn memory(md: &mut String, runs: &[Option<Fields>]) {
    let _ = writeln!(md, "## Memory of this library\n");
    let ok: Vec<&Fields> = runs.iter().flatten().collect();
    let m = |k: &str| median(ok.iter().filter_map(|f| f.get(k).copied()).collect());
    let n = m("n").unwrap_or(0.0);
    let kib =
        |v: Option<f64>| v.map_or_else(|| "failed".into(), |b| format!("{:.1} KiB", b / 1024.0));
    let _ = writeln!(
        md,
        "Growth of the process's VmRSS divided by N = {n:.0}, median of {} runs \
         ({} failed). Server share: the clients are plain blocking sockets that \
         do the handshake by hand, so the growth is the server's. Client + server: \
         both ends are this library, in one process.\n",
        ok.len(),
        runs.len() - ok.len()
    );
    let _ = writeln!(md, "| | server share | client + server |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| per idle connection | {} | {} |",
        kib(m("idle_server_b")),
        kib(m("idle_both_b"))
    );
    let _ = writeln!(
        md,
        "| per in-flight call (a handler sleeping) | {} | {} |\n",
        kib(m("inflight_server_b")),
        kib(m("inflight_both_b"))
    );
}

/// How each figure is computed, and what the unbatched variants ask.
fn method(md: &mut String, clk_tck: f64, streaming: bool) {
    let _ = writeln!(md, "## How each figure is computed\n");
    let runtimes = if std::env::var("BENCH_RUNTIME").is_ok_and(|v| v == "multi") {
        "multi-thread tokio runtimes of one worker each (`new_multi_thread`, \
         `BENCH_RUNTIME=multi`)"
    } else {
        "single-threaded tokio runtimes (`new_current_thread`)"
    };
    let _ = writeln!(
        md,
        "- **Cells.** Each (implementation, workload, repeat) runs in a fresh process: the \
         bench re-executes itself, and the child runs the server and the client on two \
         {runtimes} on two OS threads, over \
         loopback TCP with `TCP_NODELAY` on both ends for every implementation \
         (tarpc's `tcp::connect`/`listen` leave it off, so its streams are made by the \
         bench and wrapped as those functions wrap them). The child warms up, then \
         measures a fixed window. For each repeat, for each workload, the implementations \
         run in an order rotated by one each time.\n\
         - **Throughput** (B, C): calls completed in the window / window length. Each of the \
         `connections x in flight` tasks calls in a loop (closed loop). **MB/s** (D): calls/s \
         x payload bytes / 10^6, counting the payload once (it crosses the wire twice).\n\
         - **Latency** (A): every call of the window is timed; p50 and p99 of those.\n\
         - **CPU µs/call**: utime + stime of the whole process (client and server) from \
         `/proc/self/stat` before and after the window, / calls. Its unit is a clock tick \
         ({clk_tck:.0} Hz, {:.0} ms), so the error is one tick per window: {:.1} µs over \
         10,000 calls. The schedstat column sums the scheduler's own per-thread nanosecond \
         counters (`/proc/self/task/*/schedstat`) over the same window.\n\
         - **Peak RSS**: VmHWM of the child process at its end (client and server).\n\
         - **Medians** are over the repeats; **× tarpc** is the ratio of medians.\n\
         - **Implementations.** `rpc`: this library, a `#[rpc::service]` trait defined in the \
         bench. `tarpc`: 0.38 with `serde_transport` + the bincode codec (`tokio-serde`, \
         bincode 1), `BaseChannel::with_defaults`, one spawned task per request. `baseline`: \
         tokio + `LengthDelimitedCodec` + bincode 2 (serde, standard config), a writer task \
         that drains an mpsc into one buffer and writes once per batch, a map from request \
         id to oneshot on the client, a spawned task per request on the server, byte \
         buffers serialized as one block. `baseline-yield`: the same, but the writer task \
         yields to the runtime once after it is woken and before it drains the queue. \
         `baseline-unbatched`: the same, but every frame \
         is written by its caller under an async mutex. `rpc-unbatched`: this library with \
         `write_batching(false)` on both builders, so every frame gets a write syscall of \
         its own. `rpc-before`, `rpc-unbatched-before` (with `BENCH_BEFORE`): `rpc` and \
         `rpc-unbatched` as compiled into an older build, whose binary runs their cells.\n",
        1000.0 / clk_tck,
        1e6 / clk_tck / 1e4
    );
    if streaming {
        let _ = writeln!(
            md,
            "- **Streaming** (S1, S2). The child warms up with calls of 65,536 items (S1) \
             or 64 chunks (S2) until the warm-up time has passed, then makes the one \
             measured call, sized from the warm-up's rate to last about the measurement \
             time (or as `BENCH_S1_ITEMS`, `BENCH_S2_MIB` say); \
             the consumer counts the items and adds up their payload lengths, checked \
             against what was asked for. Every server makes each item a buffer of its \
             own (a clone of one `Vec<u8>`). **items/s**: items / the call's time; \
             **MB/s** (S2): items x 65,536 / 10^6 per second. CPU µs/item and peak RSS as \
             above, per item. `tonic`: tonic 0.14.9 with tonic-prost (prost 0.14), the \
             service generated by tonic-prost-build from `benches/proto/feed.proto`, \
             `Server::builder()` and `Endpoint::connect` with their defaults (`TCP_NODELAY` \
             on; hyper's HTTP/2 windows, 2 MiB per stream and 5 MiB per connection on the \
             receiving client). `rpc-unary`: `in flight` tasks on one connection, each \
             taking a ticket and calling `chunk(size) -> Vec<u8>` until the tickets run \
             out. `baseline-stream`: tokio + bincode 2 (serde, standard config), a request \
             of 12 bytes, then the items encoded back to back (no frame each) into one \
             buffer written every 64 KiB; the client reads into one buffer and decodes each \
             item from it in place in the same task; no flow control, no cancellation: a \
             floor under the cost per item (S1).\n"
        );
    }
    let _ = writeln!(md, "## The library's unbatched path\n");
    let _ = writeln!(
        md,
        "Every frame goes through the connection's writer task, which takes whatever is \
         queued and writes it at once: a lone call never waits for company. \
         `rpc-unbatched` is the same library with `write_batching(false)`, which gives \
         every frame a write of its own. On A (one call at a time) the two should be \
         alike: batching must not add latency to a lone call. On B they show what \
         batching buys under concurrency. The baseline asks the same of a hand-written \
         protocol: `baseline` against `baseline-unbatched`; `baseline-yield` asks \
         whether letting the ready callers queue their frames before each write (one \
         yield of the writer task) buys bigger batches, and what it costs a lone call.\n"
    );
    let _ = writeln!(
        md,
        "Criterion micro-benchmarks of the hot paths (frame encode/decode, an in-process \
         round trip) are separate: `cargo bench -p rpc-bench --bench hot_paths`."
    );
}
