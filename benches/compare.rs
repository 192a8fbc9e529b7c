//! This library side by side with tarpc and a hand-written tokio + bincode
//! protocol, over loopback TCP. Writes `BENCHMARKS.md` and `BENCHMARKS.svg`.
//!
//! ```text
//! cargo bench --bench compare --features compare                 # full run
//! BENCH_QUICK=1 cargo bench --bench compare --features compare   # a quick look
//! ```
//!
//! Workloads: A: sequential `add(i32, i32) -> i32`, 1 connection, 1 in flight
//! (p50/p99 latency); B: `add`, 1 connection, 64 in flight (calls/s); C: `add`,
//! 8 connections x 32 in flight (calls/s); D: `echo(Vec<u8>) -> Vec<u8>` of
//! 64 KiB and 1 MiB, 1 connection x 8 in flight (MB/s). Plus this library's
//! memory per idle connection and per in-flight call.
//!
//! Implementations: `rpc` (this library), `tarpc` (0.38, its serde transport
//! over TCP with the bincode codec), `baseline` (tokio, `LengthDelimitedCodec`
//! and bincode 2 with a batching writer task) and, for A and B,
//! `baseline-unbatched` (the same, writing each frame from the caller) and
//! `rpc-unbatched` (this library with `write_batching(false)`).
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
//! 0.5 and 2.5), `BENCH_REPEATS` (default 5), `BENCH_MEM_N` (connections and
//! calls of the memory test, default 1000), `BENCH_WORKLOADS` (e.g. `A,B`),
//! `BENCH_IMPLS` (e.g. `rpc,tarpc`), `BENCH_RUNTIME=multi` (one-worker
//! multi-thread runtimes instead of current-thread ones), `BENCH_NOTE` (a note printed at the top
//! of the report), `BENCH_OUT` (the directory to write into, default the
//! workspace root).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

// ---------------------------------------------------------------------------
// Settings, implementations, workloads

#[derive(Debug, Clone)]
struct Settings {
    warmup: Duration,
    secs: Duration,
    repeats: usize,
    mem_n: usize,
    quick: bool,
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
        quick,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Impl {
    Rpc,
    Tarpc,
    Baseline,
    BaselineUnbatched,
    RpcUnbatched,
}

impl Impl {
    const ALL: [Impl; 5] = [
        Impl::Rpc,
        Impl::Tarpc,
        Impl::Baseline,
        Impl::BaselineUnbatched,
        Impl::RpcUnbatched,
    ];

    fn name(self) -> &'static str {
        match self {
            Impl::Rpc => "rpc",
            Impl::Tarpc => "tarpc",
            Impl::Baseline => "baseline",
            Impl::BaselineUnbatched => "baseline-unbatched",
            Impl::RpcUnbatched => "rpc-unbatched",
        }
    }

    fn parse(s: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == s)
    }

    fn color(self) -> &'static str {
        match self {
            Impl::Rpc => "#1f6fb4",
            Impl::Tarpc => "#9a9a9a",
            Impl::Baseline => "#2c9a2c",
            Impl::BaselineUnbatched => "#9ad98a",
            Impl::RpcUnbatched => "#8fbce6",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    A,
    B,
    C,
    D64K,
    D1M,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::A,
        Workload::B,
        Workload::C,
        Workload::D64K,
        Workload::D1M,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::A => "A",
            Workload::B => "B",
            Workload::C => "C",
            Workload::D64K => "D64K",
            Workload::D1M => "D1M",
        }
    }

    fn parse(s: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == s)
    }

    fn describe(self) -> &'static str {
        match self {
            Workload::A => "A: add, 1 conn, 1 in flight (latency)",
            Workload::B => "B: add, 1 conn x 64 in flight",
            Workload::C => "C: add, 8 conns x 32 in flight",
            Workload::D64K => "D: echo 64 KiB, 1 conn x 8 in flight",
            Workload::D1M => "D: echo 1 MiB, 1 conn x 8 in flight",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Workload::A => "A p50 latency",
            Workload::B => "B 1x64 add",
            Workload::C => "C 8x32 add",
            Workload::D64K => "D echo 64 KiB",
            Workload::D1M => "D echo 1 MiB",
        }
    }

    fn connections(self) -> usize {
        match self {
            Workload::C => 8,
            _ => 1,
        }
    }

    fn in_flight(self) -> usize {
        match self {
            Workload::A => 1,
            Workload::B => 64,
            Workload::C => 32,
            Workload::D64K | Workload::D1M => 8,
        }
    }

    fn payload(self) -> Option<usize> {
        match self {
            Workload::D64K => Some(64 << 10),
            Workload::D1M => Some(1 << 20),
            _ => None,
        }
    }

    /// The batching question (what it costs a lone call, what it buys under
    /// concurrency) is asked of the library and the baseline alike, on the
    /// small-call workloads.
    fn impls(self) -> &'static [Impl] {
        match self {
            Workload::A | Workload::B => &Impl::ALL,
            _ => &Impl::ALL[..3],
        }
    }
}

fn selected<T: Copy>(var: &str, all: &[T], parse: fn(&str) -> Option<T>) -> Vec<T> {
    match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| parse(s.trim()).unwrap_or_else(|| panic!("{var}: unknown name {s:?}")))
            .collect(),
        _ => all.to_vec(),
    }
}

// ---------------------------------------------------------------------------
// This library

mod rpc_side {
    use super::*;

    /// Handlers of `slow` that have started (for the memory test).
    pub(crate) static STARTED: AtomicUsize = AtomicUsize::new(0);

    #[rpc::service]
    pub(crate) trait Bench {
        async fn add(&self, a: i32, b: i32) -> i32;
        async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
        async fn slow(&self, ms: u64);
    }

    struct BenchImpl;

    impl Bench for BenchImpl {
        async fn add(&self, a: i32, b: i32) -> i32 {
            a.wrapping_add(b)
        }

        async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
            data
        }

        async fn slow(&self, ms: u64) {
            STARTED.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    pub(crate) async fn serve(max_handlers_per_connection: usize, batching: bool) -> SocketAddr {
        let server = rpc::Server::builder()
            .max_handlers_per_connection(max_handlers_per_connection)
            .write_batching(batching)
            .add_service(BenchServer::new(BenchImpl))
            .bind("127.0.0.1:0")
            .await
            .expect("rpc: bind");
        // Dropping the handle leaves the server running.
        server.local_addr()
    }
}

// ---------------------------------------------------------------------------
// tarpc 0.38: its serde transport over TCP with the bincode codec

mod tarpc_side {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

    use std::net::SocketAddr;

    use futures::StreamExt;
    use tarpc::server::{BaseChannel, Channel};
    use tarpc::tokio_serde::formats::Bincode;
    use tarpc::tokio_util::codec::LengthDelimitedCodec;
    use tarpc::{context, serde_transport};
    use tokio::net::{TcpListener, TcpStream};

    #[tarpc::service]
    pub trait TBench {
        async fn add(a: i32, b: i32) -> i32;
        async fn echo(data: Vec<u8>) -> Vec<u8>;
    }

    #[derive(Clone)]
    struct Srv;

    impl TBench for Srv {
        async fn add(self, _: context::Context, a: i32, b: i32) -> i32 {
            a.wrapping_add(b)
        }

        async fn echo(self, _: context::Context, data: Vec<u8>) -> Vec<u8> {
            data
        }
    }

    /// `tcp::listen`/`tcp::connect` do not set `TCP_NODELAY`; the other two
    /// implementations do, so the streams are made here, with it, and wrapped
    /// exactly as those functions wrap them (a 16 MiB frame limit like ours).
    fn framed(
        stream: TcpStream,
    ) -> tarpc::tokio_util::codec::Framed<TcpStream, LengthDelimitedCodec> {
        stream.set_nodelay(true).expect("nodelay");
        LengthDelimitedCodec::builder()
            .max_frame_length(16 << 20)
            .new_framed(stream)
    }

    pub async fn serve() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("tarpc: bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.expect("tarpc: accept");
                let transport = serde_transport::new(framed(stream), Bincode::default());
                tokio::spawn(
                    BaseChannel::with_defaults(transport)
                        .execute(Srv.serve())
                        .for_each(|response| async move {
                            tokio::spawn(response);
                        }),
                );
            }
        });
        addr
    }

    pub async fn connect(addr: SocketAddr) -> TBenchClient {
        let stream = TcpStream::connect(addr).await.expect("tarpc: connect");
        let transport = serde_transport::new(framed(stream), Bincode::default());
        TBenchClient::new(tarpc::client::Config::default(), transport).spawn()
    }
}

// ---------------------------------------------------------------------------
// The hand-written baseline: tokio + LengthDelimitedCodec + bincode 2 (serde,
// standard config); a writer task drains an mpsc into one buffer and writes
// once per batch; the client maps request ids to oneshots; the server spawns a
// task per request. `batched = false` writes each frame from the caller
// instead (behind an async mutex): the unbatched variant.

mod baseline {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use bytes::{BufMut, Bytes, BytesMut};
    use futures::StreamExt;
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Serialize};
    use tokio::io::AsyncWriteExt;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, oneshot};
    use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

    const MAX_FRAME: usize = 16 << 20;
    const BATCH: usize = 128;

    #[derive(Serialize, Deserialize)]
    enum Req {
        Add(i32, i32),
        Echo(#[serde(with = "block")] Vec<u8>),
    }

    #[derive(Serialize, Deserialize)]
    enum Resp {
        Add(i32),
        Echo(#[serde(with = "block")] Vec<u8>),
    }

    /// Byte buffers as one block (what a careful hand-written protocol does).
    mod block {
        use serde::{Deserializer, Serializer};

        pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }

        pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    fn codec() -> LengthDelimitedCodec {
        LengthDelimitedCodec::builder()
            .max_frame_length(MAX_FRAME)
            .new_codec()
    }

    /// A length-prefixed frame holding `(id, msg)`.
    fn encode<T: Serialize>(id: u64, msg: &T, hint: usize) -> Bytes {
        let mut buf = BytesMut::with_capacity(32 + hint);
        buf.put_u32(0);
        let mut w = (&mut buf).writer();
        bincode::serde::encode_into_std_write((id, msg), &mut w, bincode::config::standard())
            .expect("baseline: encode");
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf.freeze()
    }

    fn decode<T: DeserializeOwned>(frame: &[u8]) -> (u64, T) {
        let config = bincode::config::standard().with_limit::<MAX_FRAME>();
        bincode::serde::decode_from_slice(frame, config)
            .expect("baseline: decode")
            .0
    }

    #[derive(Clone)]
    enum Out {
        Batched(mpsc::UnboundedSender<Bytes>),
        Direct(Arc<tokio::sync::Mutex<OwnedWriteHalf>>),
    }

    impl Out {
        fn new(w: OwnedWriteHalf, batched: bool) -> Out {
            if batched {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(writer(w, rx));
                Out::Batched(tx)
            } else {
                Out::Direct(Arc::new(tokio::sync::Mutex::new(w)))
            }
        }

        async fn send(&self, frame: Bytes) {
            match self {
                Out::Batched(tx) => {
                    let _ = tx.send(frame);
                }
                Out::Direct(w) => {
                    let _ = w.lock().await.write_all(&frame).await;
                }
            }
        }
    }

    async fn writer(mut w: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Bytes>) {
        let mut frames = Vec::with_capacity(BATCH);
        let mut buf = BytesMut::new();
        while rx.recv_many(&mut frames, BATCH).await > 0 {
            let written = if frames.len() == 1 {
                w.write_all(&frames[0]).await
            } else {
                for f in &frames {
                    buf.extend_from_slice(f);
                }
                w.write_all(&buf).await
            };
            if written.is_err() {
                return;
            }
            frames.clear();
            buf.clear();
        }
    }

    pub(crate) async fn serve(batched: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("baseline: bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.expect("baseline: accept");
                stream.set_nodelay(true).expect("nodelay");
                tokio::spawn(serve_connection(stream, batched));
            }
        });
        addr
    }

    async fn serve_connection(stream: TcpStream, batched: bool) {
        let (r, w) = stream.into_split();
        let out = Out::new(w, batched);
        let mut frames = FramedRead::new(r, codec());
        while let Some(Ok(frame)) = frames.next().await {
            let out = out.clone();
            tokio::spawn(async move {
                let (id, req): (u64, Req) = decode(&frame);
                let (resp, hint) = match req {
                    Req::Add(a, b) => (Resp::Add(a.wrapping_add(b)), 0),
                    Req::Echo(data) => {
                        let n = data.len();
                        (Resp::Echo(data), n)
                    }
                };
                out.send(encode(id, &resp, hint)).await;
            });
        }
    }

    type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Resp>>>>;

    #[derive(Clone)]
    pub(crate) struct Client {
        out: Out,
        pending: Pending,
        next_id: Arc<AtomicU64>,
    }

    pub(crate) async fn connect(addr: SocketAddr, batched: bool) -> Client {
        let stream = TcpStream::connect(addr).await.expect("baseline: connect");
        stream.set_nodelay(true).expect("nodelay");
        let (r, w) = stream.into_split();
        let pending = Pending::default();
        tokio::spawn(read_responses(r, pending.clone()));
        Client {
            out: Out::new(w, batched),
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    async fn read_responses(r: OwnedReadHalf, pending: Pending) {
        let mut frames = FramedRead::new(r, codec());
        while let Some(Ok(frame)) = frames.next().await {
            let (id, resp): (u64, Resp) = decode(&frame);
            if let Some(tx) = pending.lock().unwrap().remove(&id) {
                let _ = tx.send(resp);
            }
        }
        pending.lock().unwrap().clear();
    }

    impl Client {
        async fn call(&self, req: Req, hint: usize) -> Resp {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let frame = encode(id, &req, hint);
            let (tx, rx) = oneshot::channel();
            self.pending.lock().unwrap().insert(id, tx);
            self.out.send(frame).await;
            rx.await.expect("baseline: connection closed")
        }

        pub(crate) async fn add(&self, a: i32, b: i32) -> i32 {
            match self.call(Req::Add(a, b), 0).await {
                Resp::Add(sum) => sum,
                Resp::Echo(_) => panic!("baseline: wrong response"),
            }
        }

        pub(crate) async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
            let n = data.len();
            match self.call(Req::Echo(data), n).await {
                Resp::Echo(data) => data,
                Resp::Add(_) => panic!("baseline: wrong response"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The client side of each implementation, behind one trait

/// What the load loops call. Each implementation's loop is compiled for its
/// own client type: through an enum, every call's future would be the size
/// of the largest implementation's (tarpc's), and copying it per call cost
/// every implementation alike, a few percent of this library's time on C.
trait LoadClient: Clone + Send + Sync + 'static {
    fn add(&self, a: i32, b: i32) -> impl Future<Output = i32> + Send;
    fn echo(&self, data: Vec<u8>) -> impl Future<Output = Vec<u8>> + Send;
}

impl LoadClient for rpc_side::BenchClient {
    async fn add(&self, a: i32, b: i32) -> i32 {
        rpc_side::BenchClient::add(self, a, b)
            .await
            .expect("rpc: add")
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        rpc_side::BenchClient::echo(self, data)
            .await
            .expect("rpc: echo")
    }
}

impl LoadClient for tarpc_side::TBenchClient {
    async fn add(&self, a: i32, b: i32) -> i32 {
        tarpc_side::TBenchClient::add(self, tarpc::context::current(), a, b)
            .await
            .expect("tarpc: add")
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        tarpc_side::TBenchClient::echo(self, tarpc::context::current(), data)
            .await
            .expect("tarpc: echo")
    }
}

impl LoadClient for baseline::Client {
    async fn add(&self, a: i32, b: i32) -> i32 {
        baseline::Client::add(self, a, b).await
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        baseline::Client::echo(self, data).await
    }
}

async fn rpc_connect(addr: SocketAddr, batching: bool) -> rpc_side::BenchClient {
    rpc_side::BenchClient::new(
        rpc::Channel::builder()
            .write_batching(batching)
            .connect(addr)
            .await
            .expect("rpc: connect"),
    )
}

// ---------------------------------------------------------------------------
// Process measurements from /proc (no libc, no unsafe)

/// utime + stime of the whole process, in clock ticks (10 ms at USER_HZ 100).
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

// ---------------------------------------------------------------------------
// The child: one cell

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

/// Starts `imp`'s server on its own OS thread and single-threaded runtime.
fn start_server(imp: Impl, max_handlers: usize) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            runtime().block_on(async move {
                let addr = match imp {
                    Impl::Rpc => rpc_side::serve(max_handlers, true).await,
                    Impl::RpcUnbatched => rpc_side::serve(max_handlers, false).await,
                    Impl::Tarpc => tarpc_side::serve().await,
                    Impl::Baseline => baseline::serve(true).await,
                    Impl::BaselineUnbatched => baseline::serve(false).await,
                };
                tx.send(addr).expect("send address");
                std::future::pending::<()>().await;
            });
        })
        .expect("spawn the server thread");
    rx.recv().expect("server address")
}

#[derive(Debug, Default)]
struct Window {
    calls: u64,
    secs: f64,
    ticks: u64,
    sched_ns: Option<u64>,
    p50_ns: Option<u64>,
    p99_ns: Option<u64>,
}

struct Meter {
    start: Instant,
    ticks: u64,
    sched: Option<u64>,
}

impl Meter {
    fn start() -> Meter {
        let (ticks, sched) = (cpu_ticks(), sched_ns());
        Meter {
            start: Instant::now(),
            ticks,
            sched,
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
    let payload = w.payload().map(|n| Arc::new(vec![0xA5u8; n]));
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

async fn drive<C: LoadClient>(clients: Vec<C>, w: Workload, s: &Settings) -> Window {
    if w == Workload::A {
        sequential(&clients[0], s).await
    } else {
        closed_loop(clients, w, s).await
    }
}

fn child_cell(imp: Impl, w: Workload, s: &Settings) -> String {
    let addr = start_server(imp, 256);
    let n = w.connections();
    let window = runtime().block_on(async {
        match imp {
            Impl::Rpc | Impl::RpcUnbatched => {
                let mut clients = Vec::new();
                for _ in 0..n {
                    clients.push(rpc_connect(addr, imp == Impl::Rpc).await);
                }
                drive(clients, w, s).await
            }
            Impl::Tarpc => {
                let mut clients = Vec::new();
                for _ in 0..n {
                    clients.push(tarpc_side::connect(addr).await);
                }
                drive(clients, w, s).await
            }
            Impl::Baseline | Impl::BaselineUnbatched => {
                let mut clients = Vec::new();
                for _ in 0..n {
                    clients.push(baseline::connect(addr, imp == Impl::Baseline).await);
                }
                drive(clients, w, s).await
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
    let hello = rpc::bench_api::hello_frame();
    stream.write_all(&hello).expect("send hello");
    let mut theirs = vec![0; hello.len()];
    stream.read_exact(&mut theirs).expect("read hello");
    assert_eq!(theirs, hello[..], "the server's Hello");
    stream
}

async fn settle() -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    status_kb("VmRSS")
}

async fn wait_started(n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while rpc_side::STARTED.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "slow calls did not all start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// This library's memory: per idle connection and per in-flight call, the
/// server's share (raw clients) and the total with the library's own client.
fn child_mem(s: &Settings) -> String {
    let n = s.mem_n;
    let addr = start_server(Impl::Rpc, n + 16);
    let per = |after: u64, before: u64| (after.saturating_sub(before) * 1024) as f64 / n as f64;
    runtime().block_on(async move {
        // Warm up: a connection of each kind and a call, so that what is
        // allocated once per process is not counted per connection.
        let _warm_raw = raw_connect(addr);
        let warm = rpc_side::BenchClient::connect(addr)
            .await
            .expect("connect");
        assert_eq!(warm.add(1, 2).await.expect("add"), 3);

        let r0 = settle().await;
        let raws: Vec<_> = (0..n).map(|_| raw_connect(addr)).collect();
        let r1 = settle().await;
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(
                rpc_side::BenchClient::connect(addr)
                    .await
                    .expect("connect"),
            );
        }
        let r2 = settle().await;

        // In flight, server side: n requests on one raw connection.
        let mut raw = raw_connect(addr);
        let mut requests = Vec::new();
        for id in 0..n as u64 {
            let frame = rpc::bench_api::request_frame(
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
        let client = rpc_side::BenchClient::connect(addr)
            .await
            .expect("connect");
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

fn child(args: &[String], s: &Settings) {
    // A cell that hangs must not hang the run.
    let limit = s.warmup + s.secs + Duration::from_secs(120);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("compare: child timed out after {limit:?}");
        std::process::exit(3);
    });
    let line = match (args.first().map(String::as_str), args.get(1)) {
        (Some("rpc"), Some(w)) if w == "mem" => child_mem(s),
        (Some(imp), Some(w)) => child_cell(
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

// ---------------------------------------------------------------------------
// The parent: run every cell, aggregate, write the report

type Fields = BTreeMap<String, f64>;

fn run_child(imp: &str, workload: &str) -> Option<Fields> {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args(["--child", imp, workload])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run a child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
    match line {
        Some(line) if out.status.success() => Some(
            line.split_whitespace()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        ),
        _ => {
            eprintln!("compare: {imp} {workload} failed ({})", out.status);
            None
        }
    }
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
    /// The headline: calls/s (B, C), MB/s (D), p50 µs (A); then its min and max.
    value: Option<f64>,
    min: f64,
    max: f64,
    p99_us: Option<f64>,
    calls_per_s: Option<f64>,
    cpu_us_stat: Option<f64>,
    cpu_us_sched: Option<f64>,
    hwm_mib: Option<f64>,
}

fn reduce(w: Workload, runs: &[Option<Fields>], clk_tck: f64) -> Cell {
    let ok: Vec<&Fields> = runs.iter().flatten().collect();
    let get = |f: &Fields, k: &str| f.get(k).copied();
    let headline = |f: &Fields| -> Option<f64> {
        let calls_per_s = get(f, "calls")? / get(f, "secs")?;
        match w {
            Workload::A => Some(get(f, "p50_ns")? / 1e3),
            Workload::D64K | Workload::D1M => Some(calls_per_s * w.payload()? as f64 / 1e6),
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
        cpu_us_stat: median(collect(&|f| {
            Some(get(f, "ticks")? / clk_tck * 1e6 / get(f, "calls")?)
        })),
        cpu_us_sched: median(collect(&|f| {
            Some(get(f, "sched_ns")? / 1e3 / get(f, "calls")?)
        })),
        hwm_mib: median(collect(&|f| Some(get(f, "hwm_kb")? / 1024.0))),
    }
}

/// How many times faster than tarpc (latency: tarpc's p50 over ours).
fn ratio(w: Workload, cell: &Cell, tarpc: Option<&Cell>) -> Option<f64> {
    let (v, t) = (cell.value?, tarpc?.value?);
    Some(if w == Workload::A { t / v } else { v / t })
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// UTC date and time, from the system clock (days-to-civil, Howard Hinnant).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn fmt_value(w: Workload, v: f64) -> String {
    match w {
        Workload::A => format!("{v:.1} µs"),
        Workload::D64K | Workload::D1M => format!("{v:.0} MB/s"),
        _ => format!("{:.0}k calls/s", v / 1e3),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

/// One group of bars: each implementation's ratio to tarpc on one workload.
type Bars = (Workload, Vec<(Impl, Option<f64>)>);

fn svg_chart(groups: &[Bars], subtitle: &str) -> String {
    let (width, height) = (860.0, 420.0);
    let (left, right, top, bottom) = (60.0, 20.0, 70.0, 60.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max_ratio = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().filter_map(|b| b.1))
        .fold(1.0f64, f64::max);
    let y_max = ((max_ratio * 1.15) * 2.0).ceil() / 2.0;
    let y = |r: f64| top + plot_h * (1.0 - r / y_max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Speed relative to tarpc 0.38 in the same run (higher is better)</text><text x="{}" y="40" text-anchor="middle" fill="#555">{subtitle}</text>"##,
        width / 2.0,
        width / 2.0
    );
    // Grid and axis.
    let step = if y_max > 6.0 { 1.0 } else { 0.5 };
    let mut r = 0.0;
    while r <= y_max + 1e-9 {
        let yy = y(r);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}" stroke-width="{}"/><text x="{}" y="{:.1}" text-anchor="end">{r:.1}×</text>"##,
            width - right,
            if (r - 1.0).abs() < 1e-9 {
                "#333"
            } else {
                "#ddd"
            },
            if (r - 1.0).abs() < 1e-9 { 1.5 } else { 1.0 },
            left - 6.0,
            yy + 4.0
        );
        r += step;
    }
    let group_w = plot_w / groups.len().max(1) as f64;
    let bar_w = group_w * 0.8 / Impl::ALL.len() as f64;
    for (gi, (w, bars)) in groups.iter().enumerate() {
        let gx = left + group_w * gi as f64;
        let offset = (group_w - bar_w * bars.len() as f64) / 2.0;
        for (bi, (imp, ratio)) in bars.iter().enumerate() {
            let x = gx + offset + bar_w * bi as f64;
            match ratio {
                Some(r) => {
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {r:.2}×</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{r:.2}</text>"#,
                        y(*r),
                        bar_w - 2.0,
                        y(0.0) - y(*r),
                        imp.color(),
                        imp.name(),
                        w.name(),
                        x + (bar_w - 2.0) / 2.0,
                        y(*r) - 3.0
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">n/a</text>"#,
                        x + bar_w / 2.0,
                        y(0.0) - 3.0
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            gx + group_w / 2.0,
            height - bottom + 18.0,
            w.short()
        );
    }
    // Legend.
    let mut lx = left;
    for imp in Impl::ALL {
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            height - 24.0,
            imp.color(),
            lx + 16.0,
            height - 14.0,
            imp.name()
        );
        lx += 40.0 + 8.0 * imp.name().len() as f64;
    }
    s.push_str("</svg>\n");
    s
}

fn command_line(s: &Settings) -> String {
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
    let _ = s;
    vars.push("cargo bench --bench compare --features compare".into());
    vars.join(" ")
}

fn parent(s: &Settings) {
    let workloads = selected("BENCH_WORKLOADS", &Workload::ALL, Workload::parse);
    let impls = selected("BENCH_IMPLS", &Impl::ALL, Impl::parse);
    let with_mem =
        impls.contains(&Impl::Rpc) && std::env::var("BENCH_MEM").map_or(true, |v| v != "0");
    let out_dir = std::env::var("BENCH_OUT").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let clk_tck: f64 = command_output("getconf", &["CLK_TCK"])
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0);
    let load_before = read_trimmed("/proc/loadavg");
    let started = Instant::now();
    eprintln!("compare: {s:?}");

    let mut runs: BTreeMap<(Workload, Impl), Vec<Option<Fields>>> = BTreeMap::new();
    let mut mem_runs: Vec<Option<Fields>> = Vec::new();
    for repeat in 0..s.repeats {
        for (wi, &w) in workloads.iter().enumerate() {
            let cell_impls: Vec<Impl> = w
                .impls()
                .iter()
                .copied()
                .filter(|i| impls.contains(i))
                .collect();
            let k = cell_impls.len();
            for j in 0..k {
                let imp = cell_impls[(j + repeat + wi) % k];
                eprintln!(
                    "compare: repeat {}/{} {} {}",
                    repeat + 1,
                    s.repeats,
                    w.name(),
                    imp.name()
                );
                let result = run_child(imp.name(), w.name());
                runs.entry((w, imp)).or_default().push(result);
            }
        }
        if with_mem {
            eprintln!("compare: repeat {}/{} memory", repeat + 1, s.repeats);
            mem_runs.push(run_child("rpc", "mem"));
        }
    }
    let load_after = read_trimmed("/proc/loadavg");
    let elapsed = started.elapsed();

    let cells: BTreeMap<(Workload, Impl), Cell> = runs
        .iter()
        .map(|(&(w, i), r)| ((w, i), reduce(w, r, clk_tck)))
        .collect();

    // The report.
    let mut md = String::new();
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
         tokio + bincode baseline, over loopback TCP, written by \
         `benches/compare.rs` on {} (the run took {:.0} s).\n",
        utc_now(),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(md, "Command (from the workspace root):\n");
    let _ = writeln!(md, "```sh\n{}\n```\n", command_line(s));
    let _ = writeln!(
        md,
        "Settings: warm-up {:.1} s and measurement {:.1} s per cell, repeats: {}, \
         every cell in a fresh process, repeats interleaved across implementations.\n",
        s.warmup.as_secs_f64(),
        s.secs.as_secs_f64(),
        s.repeats
    );

    let _ = writeln!(md, "## Machine\n");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".into());
    let commit = command_output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let dirty = command_output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_some_and(|s| !s.is_empty());
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {cpu} |");
    let _ = writeln!(md, "| nproc | {nproc} |");
    let _ = writeln!(
        md,
        "| kernel | {} |",
        read_trimmed("/proc/sys/kernel/osrelease")
    );
    let _ = writeln!(md, "| rustc | {rustc} |");
    let _ = writeln!(
        md,
        "| commit | {}{} |",
        commit.unwrap_or_else(|| "unknown".into()),
        if dirty {
            " (with uncommitted changes in the tree)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| load average before / after | {load_before} / {load_after} |\n"
    );

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
    for &w in &workloads {
        let mut bars = Vec::new();
        for &imp in w.impls().iter().filter(|i| impls.contains(i)) {
            let Some(cell) = cells.get(&(w, imp)) else {
                continue;
            };
            let r = ratio(w, cell, cells.get(&(w, Impl::Tarpc)));
            bars.push((imp, r));
            let failed = if cell.failed > 0 {
                format!(" ({} of {} runs failed)", cell.failed, cell.runs)
            } else {
                String::new()
            };
            let value = cell
                .value
                .map_or_else(|| "failed".into(), |v| fmt_value(w, v));
            let range = if cell.value.is_some() {
                format!("{} – {}", fmt_value(w, cell.min), fmt_value(w, cell.max))
            } else {
                "–".into()
            };
            let _ = writeln!(
                md,
                "| {} | {}{failed} | {value} | {range} | {} | {} | {} | {} | {} | {} |",
                w.describe(),
                imp.name(),
                r.map_or_else(|| "–".into(), |r| format!("{r:.2}×")),
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

    if with_mem {
        let _ = writeln!(md, "## Memory of this library\n");
        let ok: Vec<&Fields> = mem_runs.iter().flatten().collect();
        let m = |k: &str| median(ok.iter().filter_map(|f| f.get(k).copied()).collect());
        let n = m("n").unwrap_or(0.0);
        let kib = |v: Option<f64>| {
            v.map_or_else(|| "failed".into(), |b| format!("{:.1} KiB", b / 1024.0))
        };
        let _ = writeln!(
            md,
            "Growth of the process's VmRSS divided by N = {n:.0}, median of {} runs \
             ({} failed). Server share: the clients are plain blocking sockets that \
             do the handshake by hand, so the growth is the server's. Client + server: \
             both ends are this library, in one process.\n",
            ok.len(),
            mem_runs.len() - ok.len()
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

    let _ = writeln!(md, "## How each figure is computed\n");
    let _ = writeln!(
        md,
        "- **Cells.** Each (implementation, workload, repeat) runs in a fresh process: the \
         bench re-executes itself, and the child runs the server and the client on two \
         single-threaded tokio runtimes (`new_current_thread`) on two OS threads, over \
         loopback TCP with `TCP_NODELAY` on both ends for all three implementations \
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
         buffers serialized as one block. `baseline-unbatched`: the same, but every frame \
         is written by its caller under an async mutex. `rpc-unbatched`: this library with \
         `write_batching(false)` on both builders, so every frame gets a write syscall of \
         its own.\n",
        1000.0 / clk_tck,
        1e6 / clk_tck / 1e4
    );
    let _ = writeln!(md, "## The library's unbatched path\n");
    let _ = writeln!(
        md,
        "Every frame goes through the connection's writer task, which takes whatever is \
         queued and writes it at once: a lone call never waits for company. \
         `rpc-unbatched` is the same library with `write_batching(false)`, which gives \
         every frame a write of its own. On A (one call at a time) the two should be \
         alike: batching must not add latency to a lone call. On B they show what \
         batching buys under concurrency. The baseline asks the same of a hand-written \
         protocol: `baseline` against `baseline-unbatched`.\n"
    );
    let _ = writeln!(
        md,
        "Criterion micro-benchmarks of the hot paths (frame encode/decode, an in-process \
         round trip) are separate: `cargo bench --bench hot_paths`."
    );

    let svg = svg_chart(
        &chart,
        &format!(
            "{} · median of {} runs of {:.1} s per cell · {}",
            cpu,
            s.repeats,
            s.secs.as_secs_f64(),
            if s.quick { "QUICK RUN" } else { "full run" }
        ),
    );
    let md_path = std::path::Path::new(&out_dir).join("BENCHMARKS.md");
    let svg_path = std::path::Path::new(&out_dir).join("BENCHMARKS.svg");
    std::fs::write(&md_path, &md).expect("write BENCHMARKS.md");
    std::fs::write(&svg_path, svg).expect("write BENCHMARKS.svg");
    println!("{md}");
    eprintln!(
        "compare: wrote {} and {}",
        md_path.display(),
        svg_path.display()
    );
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
