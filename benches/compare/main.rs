//! This library side by side with tarpc and a hand-written tokio + bincode
//! protocol, and for streaming with tonic, over loopback TCP. Writes
//! `BENCHMARKS.md` and `BENCHMARKS.svg`.
//!
//! ```text
//! cargo bench -p rpc-bench --bench compare --features compare                 # full run
//! BENCH_QUICK=1 cargo bench -p rpc-bench --bench compare --features compare   # a quick look
//! ```
//!
//! Workloads: A: sequential `add(i32, i32) -> i32`, 1 connection, 1 in flight
//! (p50/p99 latency); B: `add`, 1 connection, 64 in flight (calls/s); C: `add`,
//! 8 connections x 32 in flight (calls/s); D: `echo(Vec<u8>) -> Vec<u8>` of
//! 64 KiB and 1 MiB, 1 connection x 8 in flight (MB/s); S1: one call
//! streaming 16-byte items to a consumer that counts them (items/s); S2: one
//! call streaming 64 KiB chunks (MB/s). Plus this library's memory per idle
//! connection and per in-flight call.
//!
//! Implementations: `rpc` (this library), `tarpc` (0.38, its serde transport
//! over TCP with the bincode codec), `baseline` (tokio, `LengthDelimitedCodec`
//! and bincode 2 with a batching writer task), `baseline-yield` (the same,
//! whose writer task yields once after it is woken and before it drains its
//! queue, so that more frames join each write) and, for A and B,
//! `baseline-unbatched` (the same, writing each frame from the caller) and
//! `rpc-unbatched` (this library with `write_batching(false)`), `rpc-json`
//! (this library with JSON payloads, `rpc::Format::Json`). With
//! `BENCH_BEFORE`, also `rpc-before` and, for A and B, `rpc-unbatched-before`:
//! the same implementations as compiled into an older build of this bench.
//! S1 and S2 have implementations of their own, and only they run there:
//! `rpc-stream` (this library's server streaming, one call), `rpc-unary`
//! (this library's unary calls, one per item, 64 in flight for S1 and 8 for
//! S2, as B and D keep), `tonic` (0.14 + prost, server streaming over one
//! HTTP/2 connection, with the service generated from `benches/proto/`)
//! and `baseline-stream` (a hand-written stream: items encoded back to back
//! with no frame each, no flow control and no cancellation; a floor under
//! the cost per item).
//!
//! Every cell (implementation x workload x repeat) runs in a fresh process:
//! this binary re-executes itself with `--child IMPL WORKLOAD`; the child runs
//! the server and the client on two single-threaded tokio runtimes on two OS
//! threads, warms up, measures for a fixed time and prints one `RESULT` line.
//! Repeats are interleaved (for each repeat, for each workload, every
//! implementation in a rotating order) so that a slow minute of a noisy
//! machine hits every implementation alike.
//!
//! Settings (environment variables): `BENCH_QUICK=1` (0.2 s warm-up, 1 s
//! measurement, 3 repeats), `BENCH_WARMUP` and `BENCH_SECS` (seconds, default
//! 0.5 and 2.5), `BENCH_REPEATS` (default 5), `BENCH_MEM=0` (skip the memory
//! test), `BENCH_MEM_N` (connections and calls of the memory test, default
//! 1000), `BENCH_WORKLOADS` (e.g. `A,B`), `BENCH_IMPLS` (e.g. `rpc,tarpc`),
//! `BENCH_RUNTIME=multi` (one-worker multi-thread runtimes instead of
//! current-thread ones), `BENCH_NOTE` (a note printed at the top of the
//! report), `BENCH_OUT` (the directory to write into, default the workspace
//! root), `BENCH_BEFORE` (below). S1 and S2 measure one call each, sized from
//! the warm-up's rate to last about `BENCH_SECS`; `BENCH_S1_ITEMS` (items)
//! and `BENCH_S2_MIB` (MiB) fix its size instead. `BENCH_STREAM_WINDOW`
//! (bytes) gives `rpc-stream`'s client that stream window instead of the
//! library's default (tonic's client, through hyper, grants 2 MiB).
//!
//! `BENCH_BEFORE=/path/to/an/older/compare/binary` compares this build with
//! an older one in the same run: the cells of `rpc-before` (and
//! `rpc-unbatched-before`) run `<path> --child rpc WORKLOAD` (and
//! `--child rpc-unbatched WORKLOAD`) instead of this binary, interleaved with
//! the others, and the report adds `rpc / rpc-before` per workload. The older
//! build must take the same `--child IMPL WORKLOAD` arguments and print the
//! same `RESULT` line (every version of this bench does; `rpc-unbatched`
//! exists from 845eb10 on), and it reads the same settings from the
//! environment it inherits. To build one:
//!
//! ```text
//! git worktree add /tmp/before <commit> && (cd /tmp/before && \
//!   CARGO_TARGET_DIR=/tmp/before-target cargo bench -p rpc-bench --bench compare --features compare --no-run)
//! ```
//!
//! (without `-p rpc-bench` for a commit from before the benches became the
//! `rpc-bench` package, when the root package owned them)
//! and pass the executable path it prints (`/tmp/before-target/release/deps/compare-...`).
//!
//! Files: `impls/` (one per implementation, and the `LoadClient` trait the
//! load loops call), `workloads.rs`, `harness.rs` (the child: one cell),
//! `lineup.rs` (which binary runs which cell; reading its `RESULT` line),
//! `report.rs` and `report/` (medians, ratios, BENCHMARKS.md and .svg).

mod harness;
mod impls;
mod lineup;
mod report;
mod workloads;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use impls::Impl;
use lineup::{Contender, Lineup};
use workloads::Workload;

/// The workspace root, where the report goes unless `BENCH_OUT` says
/// otherwise, and whose commit it names. This bench's package is the root's
/// `benches/` folder.
pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the rpc-bench package sits in the workspace's benches/")
}

/// The settings every process reads from the environment (a child inherits
/// its parent's).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) warmup: Duration,
    pub(crate) secs: Duration,
    pub(crate) repeats: usize,
    pub(crate) mem_n: usize,
    /// S1: the items of the measured call, if fixed (`BENCH_S1_ITEMS`).
    pub(crate) s1_items: Option<u64>,
    /// S2: the MiB of the measured call, if fixed (`BENCH_S2_MIB`).
    pub(crate) s2_mib: Option<u64>,
    /// `rpc-stream`'s client stream window in bytes, if not the library's
    /// default (`BENCH_STREAM_WINDOW`).
    pub(crate) stream_window: Option<usize>,
    pub(crate) quick: bool,
}

fn env_num(name: &str) -> Option<f64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Some(x),
        _ => panic!("{name}={v:?} is not a non-negative number"),
    }
}

fn settings() -> Settings {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let (warmup, secs, repeats) = if quick { (0.2, 1.0, 3) } else { (0.5, 2.5, 5) };
    Settings {
        warmup: Duration::from_secs_f64(env_num("BENCH_WARMUP").unwrap_or(warmup)),
        secs: Duration::from_secs_f64(env_num("BENCH_SECS").unwrap_or(secs).max(0.05)),
        repeats: env_num("BENCH_REPEATS").map_or(repeats, |r| (r as usize).max(1)),
        mem_n: env_num("BENCH_MEM_N").map_or(1000, |n| (n as usize).max(10)),
        s1_items: env_num("BENCH_S1_ITEMS").map(|n| (n as u64).max(1)),
        s2_mib: env_num("BENCH_S2_MIB").map(|n| (n as u64).max(1)),
        stream_window: env_num("BENCH_STREAM_WINDOW").map(|n| n as usize),
        quick,
    }
}

/// The comma-separated names in `var`, or `all` if it is unset or empty.
pub(crate) fn selected<T: Clone>(var: &str, all: &[T], parse: fn(&str) -> Option<T>) -> Vec<T> {
    match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| parse(s.trim()).unwrap_or_else(|| panic!("{var}: unknown name {s:?}")))
            .collect(),
        _ => all.to_vec(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let s = settings();
    match args.iter().position(|a| a == "--child") {
        Some(i) => child(&args[i + 1..], &s),
        // `cargo bench` passes `--bench`; nothing else is expected.
        None => parent(&s),
    }
}

/// `--child IMPL WORKLOAD` (or `--child rpc mem`): one cell, one `RESULT`
/// line on stdout, then exit.
fn child(args: &[String], s: &Settings) {
    // A cell that hangs must not hang the run.
    let limit = s.warmup + s.secs + Duration::from_secs(120);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("compare: child timed out after {limit:?}");
        std::process::exit(3);
    });
    let line = match (args.first().map(String::as_str), args.get(1)) {
        (Some("rpc"), Some(w)) if w == "mem" => harness::memory(s),
        (Some(imp), Some(w)) => harness::cell(
            Impl::parse(imp).expect("implementation"),
            Workload::parse(w).expect("workload"),
            s,
        ),
        _ => panic!("usage: compare --child IMPL WORKLOAD"),
    };
    println!("{line}");
    std::io::stdout().flush().expect("flush");
    // The servers run until the process ends.
    std::process::exit(0);
}

/// Runs every cell, interleaved, then writes the report.
fn parent(s: &Settings) {
    let workloads = selected("BENCH_WORKLOADS", &Workload::ALL, Workload::parse);
    let lineup = Lineup::from_env();
    let with_mem = lineup.has(Contender::this(Impl::Rpc))
        && std::env::var("BENCH_MEM").map_or(true, |v| v != "0");
    let load_before = report::load_average();
    let started = Instant::now();
    eprintln!("compare: {s:?}");
    if let Some(before) = &lineup.before {
        eprintln!("compare: older build {}", before.display());
    }

    let mut cells: BTreeMap<(Workload, Contender), Vec<_>> = BTreeMap::new();
    let mut memory = Vec::new();
    for repeat in 0..s.repeats {
        for (wi, &w) in workloads.iter().enumerate() {
            let on = lineup.on(w);
            let k = on.len();
            for j in 0..k {
                let c = on[(j + repeat + wi) % k];
                eprintln!(
                    "compare: repeat {}/{} {} {}",
                    repeat + 1,
                    s.repeats,
                    w.name(),
                    c.name()
                );
                cells.entry((w, c)).or_default().push(lineup.run(c, w));
            }
        }
        if with_mem {
            eprintln!("compare: repeat {}/{} memory", repeat + 1, s.repeats);
            memory.push(lineup.run_memory());
        }
    }
    report::write(&report::Outcome {
        settings: s,
        lineup: &lineup,
        workloads: &workloads,
        cells,
        memory: with_mem.then_some(memory),
        load_before,
        load_after: report::load_average(),
        elapsed: started.elapsed(),
    });
}
