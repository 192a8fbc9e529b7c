//! The child: one cell in a process of its own. The server and the client
//! run on two single-threaded runtimes on two OS threads; the load loops, the
//! measurement window and this library's memory test; CPU and memory readings
//! from /proc (no libc, no unsafe).
//!
//! Both entry points, [`cell`] and [`memory`], return the child's
//! `RESULT key=value ...` line, which the parent of this build and of newer
//! builds (through `BENCH_BEFORE`) parses: its keys and format stay as they
//! are.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Settings;
use crate::impls::{self, Family, Impl, LoadClient, StreamClient};
use crate::workloads::Workload;

fn runtime() -> tokio::runtime::Runtime {
    // `BENCH_RUNTIME=multi`: multi-thread runtimes with one worker each
    // instead (same threads; the library then spawns every handler).
    if std::env::var("BENCH_RUNTIME").is_ok_and(|v| v == "multi") {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts `imp`'s server on its own OS thread and runtime.
fn start_server(imp: Impl, max_handlers: usize) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            runtime().block_on(async move {
                let addr = match imp.family() {
                    Family::Rpc {
                        batching, extra, ..
                    } => impls::rpc::serve(max_handlers, batching, extra).await,
                    Family::Tarpc => impls::tarpc::serve().await,
                    Family::Baseline(writes) => impls::baseline::serve(writes).await,
                    Family::RpcStream => impls::rpc_stream::serve(max_handlers).await,
                    Family::RpcUnary => impls::rpc_unary::serve(max_handlers).await,
                    Family::Tonic => impls::tonic::serve().await,
                    Family::BaselineStream => impls::baseline_stream::serve().await,
                };
                tx.send(addr).expect("send address");
                std::future::pending::<()>().await;
            });
        })
        .expect("spawn the server thread");
    rx.recv().expect("server address")
}

/// What one measurement window saw.
#[derive(Debug, Default)]
struct Window {
    calls: u64,
    secs: f64,
    ticks: u64,
    sched_ns: Option<u64>,
    p50_ns: Option<u64>,
    p99_ns: Option<u64>,
    /// Bytes the counted connections wrote and read (Z1).
    wire_bytes: u64,
}

/// The clocks at the start of a window.
struct Meter {
    start: Instant,
    ticks: u64,
    sched: Option<u64>,
    wire: u64,
}

impl Meter {
    fn start() -> Meter {
        let (ticks, sched) = (cpu_ticks(), sched_ns());
        Meter {
            start: Instant::now(),
            ticks,
            sched,
            wire: impls::rpc::WIRE.load(Ordering::Relaxed),
        }
    }

    fn stop(self, calls: u64) -> Window {
        let secs = self.start.elapsed().as_secs_f64();
        let (ticks, sched) = (cpu_ticks(), sched_ns());
        Window {
            calls,
            secs,
            ticks: ticks - self.ticks,
            sched_ns: sched.zip(self.sched).map(|(b, a)| b - a),
            wire_bytes: impls::rpc::WIRE.load(Ordering::Relaxed) - self.wire,
            ..Window::default()
        }
    }
}

/// A: one call at a time; every call's latency is recorded.
async fn sequential<C: LoadClient>(client: &C, s: &Settings) -> Window {
    let mut i = 0i32;
    let warm_end = Instant::now() + s.warmup;
    while Instant::now() < warm_end {
        assert_eq!(client.add(i, 1).await, i.wrapping_add(1));
        i = i.wrapping_add(1);
    }
    let mut lat = Vec::with_capacity(1 << 20);
    let meter = Meter::start();
    let end = meter.start + s.secs;
    loop {
        let t0 = Instant::now();
        let sum = client.add(i, 1).await;
        let t1 = Instant::now();
        assert_eq!(sum, i.wrapping_add(1));
        lat.push((t1 - t0).as_nanos() as u64);
        i = i.wrapping_add(1);
        if t1 >= end {
            break;
        }
    }
    let mut w = meter.stop(lat.len() as u64);
    lat.sort_unstable();
    w.p50_ns = Some(lat[lat.len() / 2]);
    w.p99_ns = Some(lat[(lat.len() * 99 / 100).min(lat.len() - 1)]);
    w
}

/// B, C, D: `in_flight` tasks per connection, each calling in a loop.
async fn closed_loop<C: LoadClient>(clients: Vec<C>, w: Workload, s: &Settings) -> Window {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let payload = w.payload_bytes().map(Arc::new);
    let mut tasks = Vec::new();
    for client in clients {
        for task in 0..w.in_flight() {
            let (client, done, stop, payload) =
                (client.clone(), done.clone(), stop.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = task as i32;
                while !stop.load(Ordering::Relaxed) {
                    match &payload {
                        None => assert_eq!(client.add(i, 1).await, i.wrapping_add(1)),
                        Some(p) => assert_eq!(client.echo(p.to_vec()).await.len(), p.len()),
                    }
                    i = i.wrapping_add(1);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    tokio::time::sleep(s.warmup).await;
    let before = done.load(Ordering::Relaxed);
    let meter = Meter::start();
    tokio::time::sleep(s.secs).await;
    let window = meter.stop(done.load(Ordering::Relaxed) - before);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a call task panicked");
    }
    window
}

/// S1, S2: one connection; warm-up calls of `warm_items` each until the
/// warm-up time has passed (at least one), then one measured call, timed
/// from its start to its last item. Its items: as many as the warm-up's rate
/// fetches in `BENCH_SECS`, unless the settings fix them.
async fn streamed<C: StreamClient>(client: C, w: Workload, s: &Settings) -> Window {
    let size = w.item_size().expect("a streaming workload");
    let warm = w.warm_items();
    let started = Instant::now();
    let mut fetched = 0u64;
    loop {
        assert_eq!(client.fetch(warm, size).await, warm * u64::from(size));
        fetched += warm;
        if started.elapsed() >= s.warmup {
            break;
        }
    }
    let rate = fetched as f64 / started.elapsed().as_secs_f64();
    let count = w
        .fixed_items(s)
        .unwrap_or_else(|| ((rate * s.secs.as_secs_f64()) as u64).max(warm));
    let meter = Meter::start();
    let bytes = client.fetch(count, size).await;
    let window = meter.stop(count);
    assert_eq!(bytes, count * u64::from(size), "bytes received");
    window
}

/// Opens `w`'s connections one after the other, then runs its load loop.
async fn drive<C, F>(w: Workload, s: &Settings, connect: impl Fn() -> F) -> Window
where
    C: LoadClient,
    F: Future<Output = C>,
{
    let mut clients = Vec::with_capacity(w.connections());
    for _ in 0..w.connections() {
        clients.push(connect().await);
    }
    if w == Workload::A {
        sequential(&clients[0], s).await
    } else {
        closed_loop(clients, w, s).await
    }
}

/// One cell: `imp` under workload `w`.
pub(crate) fn cell(imp: Impl, w: Workload, s: &Settings) -> String {
    assert!(w.runs(imp), "{} does not run {}", imp.name(), w.name());
    let addr = start_server(imp, 256);
    let window = runtime().block_on(async {
        match imp.family() {
            Family::Rpc {
                batching,
                balanced: 0,
                extra,
            } => {
                let counted = w == Workload::Z1;
                drive(w, s, || impls::rpc::connect(addr, batching, extra, counted)).await
            }
            Family::Rpc { balanced, .. } => {
                drive(w, s, || impls::rpc::connect_balanced(addr, balanced)).await
            }
            Family::Tarpc => drive(w, s, || impls::tarpc::connect(addr)).await,
            Family::Baseline(writes) => {
                drive(w, s, || impls::baseline::connect(addr, writes)).await
            }
            Family::RpcStream => {
                let client = impls::rpc_stream::connect(addr, s.stream_window).await;
                streamed(client, w, s).await
            }
            Family::RpcUnary => {
                let client = impls::rpc_unary::connect(addr, w.in_flight()).await;
                streamed(client, w, s).await
            }
            Family::Tonic => streamed(impls::tonic::connect(addr).await, w, s).await,
            Family::BaselineStream => {
                streamed(impls::baseline_stream::connect(addr).await, w, s).await
            }
        }
    });
    let mut line = format!(
        "RESULT calls={} secs={:.6} ticks={} hwm_kb={}",
        window.calls,
        window.secs,
        window.ticks,
        status_kb("VmHWM")
    );
    for (key, v) in [
        ("sched_ns", window.sched_ns),
        ("p50_ns", window.p50_ns),
        ("p99_ns", window.p99_ns),
        (
            "wire_bytes",
            (w == Workload::Z1).then_some(window.wire_bytes),
        ),
    ] {
        if let Some(v) = v {
            let _ = write!(line, " {key}={v}");
        }
    }
    line
}

/// Opens a connection with std's blocking socket and does the handshake by
/// hand: the client side costs no user-space memory worth counting, so the
/// RSS it adds is the server's.
fn raw_connect(addr: SocketAddr) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(addr).expect("raw connect");
    stream.set_nodelay(true).expect("nodelay");
    let hello = ::rpc::bench_api::hello_frame();
    stream.write_all(&hello).expect("send hello");
    let mut theirs = vec![0; hello.len()];
    stream.read_exact(&mut theirs).expect("read hello");
    // Length, kind and flags, call id, magic and version (its features may
    // say more than ours: the compressions built in).
    assert_eq!(theirs[..20], hello[..20], "the server's Hello");
    stream
}

/// VmRSS once the allocator and the kernel have caught up.
async fn settle() -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    status_kb("VmRSS")
}

async fn wait_started(n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while impls::rpc::STARTED.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "slow calls did not all start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// This library's memory: per idle connection and per in-flight call, the
/// server's share (raw clients) and the total with the library's own client.
pub(crate) fn memory(s: &Settings) -> String {
    let n = s.mem_n;
    let addr = start_server(Impl::Rpc, n + 16);
    let per = |after: u64, before: u64| (after.saturating_sub(before) * 1024) as f64 / n as f64;
    let connect = move || async move {
        impls::rpc::BenchClient::connect(addr)
            .await
            .expect("connect")
    };
    runtime().block_on(async move {
        // Warm up: a connection of each kind and a call, so that what is
        // allocated once per process is not counted per connection.
        let _warm_raw = raw_connect(addr);
        let warm = connect().await;
        assert_eq!(warm.add(1, 2).await.expect("add"), 3);

        let r0 = settle().await;
        let raws: Vec<_> = (0..n).map(|_| raw_connect(addr)).collect();
        let r1 = settle().await;
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(connect().await);
        }
        let r2 = settle().await;

        // In flight, server side: n requests on one raw connection.
        let mut raw = raw_connect(addr);
        let mut requests = Vec::new();
        for id in 0..n as u64 {
            let frame = ::rpc::bench_api::request_frame(
                "Bench.slow",
                id + 1,
                Duration::from_secs(120),
                &(120_000u64,),
            )
            .expect("encode");
            requests.extend_from_slice(&frame);
        }
        let r3 = settle().await;
        raw.write_all(&requests).expect("send requests");
        wait_started(n).await;
        let r4 = settle().await;

        // In flight, both sides: n calls from the library's client.
        let client = connect().await;
        let r5 = settle().await;
        let calls: Vec<_> = (0..n)
            .map(|_| tokio::spawn(client.slow(120_000)))
            .collect();
        wait_started(2 * n).await;
        let r6 = settle().await;
        drop((raws, clients, calls));
        format!(
            "RESULT n={n} idle_server_b={:.0} idle_both_b={:.0} inflight_server_b={:.0} inflight_both_b={:.0}",
            per(r1, r0),
            per(r2, r1),
            per(r4, r3),
            per(r6, r5),
        )
    })
}

/// utime + stime of the whole process, in clock ticks (`getconf CLK_TCK`).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The command name may hold spaces; the fields after it are: state(3) ...
    // utime(14) stime(15), i.e. indices 11 and 12 after the closing paren.
    let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields[i].parse::<u64>().expect("stat field");
    field(11) + field(12)
}

/// CPU time of every thread of the process, in nanoseconds (the scheduler's own
/// accounting, finer than the tick), if the kernel exposes schedstat.
fn sched_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// A `Vm*` line of /proc/self/status, in KiB.
fn status_kb(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}
