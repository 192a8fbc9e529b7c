//! The server on a tokio current-thread runtime, where each connection's
//! writer is a future polled by its read loop (not a task of its own) and a
//! handler's first poll runs inside that loop: backpressure against a peer
//! that never reads, the stall limit, graceful shutdown, pipelined bursts of
//! small and large calls, and peers that vanish mid-burst.
//!
//! Most tests run the server on a thread of its own with a current-thread
//! runtime ([`CtServer`]), so what the test does on its own runtime cannot
//! help or hide what the server does; some run client and server together
//! on the test's own current-thread runtime.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::probe::*;
use support::raw::{self, RawConn, RawFrame};
use support::{ShapesClient, ShapesImpl, ShapesServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::oneshot;

const PROMPTLY: Duration = Duration::from_secs(3);
const BUDGET: Duration = Duration::from_secs(30);
/// The large payload of the mixed bursts.
const LARGE: usize = 100 * 1024;

// ---------------------------------------------------------------------------
// A server on a current-thread runtime.

/// How the server thread is told to stop.
enum Stop {
    Shutdown,
    Abort,
}

enum Place {
    /// On a thread of its own, with a current-thread runtime.
    Thread {
        handle: Arc<Mutex<Option<rpc::ServerHandle>>>,
        stop: Option<oneshot::Sender<Stop>>,
        done: Option<oneshot::Receiver<Duration>>,
    },
    /// On the test's own (current-thread) runtime.
    Here(Option<rpc::ServerHandle>),
}

/// A probe, calculator and shapes server on a current-thread runtime.
struct CtServer {
    addr: SocketAddr,
    probe: Arc<ProbeState>,
    place: Place,
}

impl CtServer {
    /// Starts the server on a thread of its own running a current-thread
    /// runtime. Dropping the value aborts the server.
    fn on_own_thread(
        configure: impl FnOnce(rpc::server::Builder) -> rpc::server::Builder + Send + 'static,
    ) -> CtServer {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("current-thread-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    assert_eq!(
                        tokio::runtime::Handle::current().runtime_flavor(),
                        RuntimeFlavor::CurrentThread
                    );
                    let builder = configure(
                        rpc::Server::builder().add_service(ShapesServer::new(ShapesImpl)),
                    );
                    let (server, probe) = start_probe(builder).await;
                    let addr = server.local_addr();
                    let handle = Arc::new(Mutex::new(Some(server)));
                    ready_tx.send((addr, probe, handle.clone())).unwrap();
                    // The test dropping its end aborts the server.
                    let how = stop_rx.await.unwrap_or(Stop::Abort);
                    let server = handle.lock().unwrap().take().unwrap();
                    let started = Instant::now();
                    match how {
                        Stop::Shutdown => server.shutdown().await,
                        Stop::Abort => server.abort().await,
                    }
                    let _ = done_tx.send(started.elapsed());
                });
            })
            .unwrap();
        let (addr, probe, handle) = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the server thread did not start");
        CtServer {
            addr,
            probe,
            place: Place::Thread {
                handle,
                stop: Some(stop_tx),
                done: Some(done_rx),
            },
        }
    }

    /// Starts the server on the test's own runtime, which must be a
    /// current-thread one.
    async fn here(builder: rpc::server::Builder) -> CtServer {
        assert_eq!(
            tokio::runtime::Handle::current().runtime_flavor(),
            RuntimeFlavor::CurrentThread,
            "the test must run on a current-thread runtime"
        );
        let (server, probe) = start_probe(builder.add_service(ShapesServer::new(ShapesImpl))).await;
        CtServer {
            addr: server.local_addr(),
            probe,
            place: Place::Here(Some(server)),
        }
    }

    fn connections(&self) -> usize {
        match &self.place {
            Place::Thread { handle, .. } => handle
                .lock()
                .unwrap()
                .as_ref()
                .expect("the server is stopping")
                .connections(),
            Place::Here(server) => server.as_ref().unwrap().connections(),
        }
    }

    /// Graceful shutdown; returns how long it took.
    async fn shutdown(mut self) -> Duration {
        match &mut self.place {
            Place::Thread { stop, done, .. } => {
                let _ = stop.take().unwrap().send(Stop::Shutdown);
                tokio::time::timeout(Duration::from_secs(30), done.take().unwrap())
                    .await
                    .expect("shutdown did not finish within 30 s")
                    .expect("the server thread died")
            }
            Place::Here(server) => {
                let started = Instant::now();
                tokio::time::timeout(Duration::from_secs(30), server.take().unwrap().shutdown())
                    .await
                    .expect("shutdown did not finish within 30 s");
                started.elapsed()
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Raw frames over split halves (RawConn reads and writes on one task only).

/// Reads one frame; `None` when the connection ends.
async fn read_frame(rd: &mut (impl AsyncRead + Unpin)) -> Option<RawFrame> {
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await.ok()?;
    let len = u32::from_be_bytes(len) as usize;
    assert!(len >= 10, "the server sent a frame of length {len}");
    let mut f = vec![0u8; len];
    rd.read_exact(&mut f).await.ok()?;
    Some(RawFrame {
        kind: f[0],
        flags: f[1],
        call_id: u64::from_be_bytes(f[2..10].try_into().unwrap()),
        payload: f[10..].to_vec(),
    })
}

/// Bytes that differ from call to call, so a reply given to the wrong call
/// is noticed.
fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| {
            (j as u32)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7)) as u8
        })
        .collect()
}

/// Waits until `count` stops moving for `quiet`, and returns where it stopped.
async fn until_it_stops(what: &str, count: impl Fn() -> usize, quiet: Duration) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = usize::MAX;
    loop {
        let now = count();
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "{what} never stopped: {now}");
        last = now;
        tokio::time::sleep(quiet).await;
    }
}

/// A well-behaved client on a fresh connection: `n` calls one after another,
/// each answered within `within`, then a concurrent burst of `n`.
async fn assert_served_promptly(addr: SocketAddr, n: u32, within: Duration) {
    let client = tokio::time::timeout(PROMPTLY, probe_client(addr))
        .await
        .expect("connecting took too long");
    let calc = CalculatorClient::connect(addr).await.unwrap();
    for i in 0..n {
        let started = Instant::now();
        let sum = tokio::time::timeout(within, calc.add(i64::from(i), 1))
            .await
            .unwrap_or_else(|_| panic!("call {i} took over {within:?}"))
            .unwrap();
        assert_eq!(sum, i64::from(i) + 1);
        assert!(started.elapsed() < within);
    }
    let burst = futures::future::join_all((0..n).map(|i| client.hold(1, i)));
    let got = tokio::time::timeout(within * 4, burst)
        .await
        .expect("a burst of calls was not answered promptly");
    for (i, got) in got.into_iter().enumerate() {
        assert_eq!(got.unwrap(), i as u32);
    }
}

// ---------------------------------------------------------------------------
// 1. Backpressure.

#[tokio::test]
async fn a_peer_that_never_reads_is_held_back_while_other_connections_are_served() {
    const REQUESTS: u64 = 4_000;
    const BLOB: u32 = 64 * 1024;
    let server = CtServer::on_own_thread(|b| b);
    let probe = server.probe.clone();
    let peer = RawConn::handshake(server.addr).await;
    let (rd, mut wr) = peer.stream.into_split();
    // 4,000 small requests for 64 KiB each (250 MiB of replies), never read.
    let mut requests = Vec::new();
    for id in 1..=REQUESTS {
        requests.extend(raw::request(id, "Probe.blob", BUDGET, &raw::args(&(BLOB,))));
    }
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&requests).await;
        wr
    });
    eventually("the first blobs", PROMPTLY, || probe.blobs() > 0).await;
    let stuck_at = until_it_stops(
        "the server making blobs",
        || probe.blobs(),
        Duration::from_millis(400),
    )
    .await;
    eprintln!("the server stopped after {stuck_at} blobs");
    // The sockets' buffers plus the server's 1 MiB queue hold well under
    // 1,000 replies of 64 KiB.
    assert!(
        stuck_at < 1_000,
        "{stuck_at} of {REQUESTS} requests were served to a peer that reads nothing"
    );

    // The stalled connection holds up nobody else on the server's one thread.
    assert_served_promptly(server.addr, 50, Duration::from_secs(1)).await;
    assert!(
        probe.blobs() <= stuck_at + 1,
        "serving another connection restarted the stalled one: {} blobs, was {stuck_at}",
        probe.blobs()
    );

    // Backpressure loses nothing: once the peer reads, every reply comes.
    let mut rd = tokio::io::BufReader::with_capacity(256 * 1024, rd);
    let mut seen = vec![false; REQUESTS as usize + 1];
    let read_all = async {
        for _ in 0..REQUESTS {
            let f = read_frame(&mut rd).await.expect("the connection closed");
            assert_eq!(f.kind, raw::kind::RESPONSE, "{f:?}");
            assert_eq!(f.status(), raw::status::OK);
            // A 64 KiB Vec<u8>: status, varint length (5 bytes), the bytes.
            assert_eq!(f.payload.len(), 1 + 5 + BLOB as usize);
            assert!(
                !std::mem::replace(&mut seen[f.call_id as usize], true),
                "call {} answered twice",
                f.call_id
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("the replies did not all come once the peer read");
    assert_eq!(probe.blobs(), REQUESTS as usize);
    let _wr = writer.await.unwrap();
}

#[tokio::test]
async fn at_the_handler_cap_a_current_thread_server_holds_requests_back_and_answers_pings() {
    const CAP: usize = 4;
    let server = CtServer::on_own_thread(|b| b.max_handlers_per_connection(CAP));
    let probe = server.probe.clone();
    let mut greedy = RawConn::handshake(server.addr).await;
    // Handlers that never finish, then quick calls (done in their first poll,
    // inline), which wait behind the cap, and a Ping, answered at once.
    let mut burst = Vec::new();
    for id in 1..=100u64 {
        burst.extend(raw::hold(id, BUDGET, u64::MAX, id as u32));
    }
    for id in 101..=120u64 {
        burst.extend(raw::request(
            id,
            "Calculator.add",
            BUDGET,
            &raw::args(&(id as i64, 1i64)),
        ));
    }
    burst.extend(raw::ping(7));
    greedy.send(&burst).await;
    probe
        .wait_for("the cap to fill", PROMPTLY, |p| p.started() == CAP)
        .await;
    let pong = greedy.next_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!((pong.kind, pong.call_id), (raw::kind::PONG, 7), "{pong:?}");
    assert!(
        greedy.is_silent_for(Duration::from_millis(300)).await,
        "the server answered a request that waits for a slot"
    );
    assert_eq!(probe.started(), CAP, "a handler started beyond the cap");
    assert_eq!(probe.high_water(), CAP);

    // Another connection is not held up by this one's cap.
    assert_served_promptly(server.addr, 20, Duration::from_secs(1)).await;
    assert_eq!(probe.started(), CAP + 20);

    assert_eq!(probe.dropped(), 0);
}

/// Opens a connection, sends `requests` calls that never finish, waits for
/// `held` of them to start (the rest wait at the cap), leaves, and waits for
/// the handlers to be dropped.
async fn leave_with_handlers_running(server: &CtServer, requests: usize, held: usize) {
    let probe = &server.probe;
    let (started, dropped) = (probe.started(), probe.dropped());
    let mut peer = RawConn::handshake(server.addr).await;
    let mut burst = Vec::new();
    for id in 1..=requests as u64 {
        burst.extend(raw::hold(id, BUDGET, u64::MAX, id as u32));
    }
    peer.send(&burst).await;
    probe
        .wait_for("the handlers to start", PROMPTLY, |p| {
            p.started() == started + held
        })
        .await;
    drop(peer);
    probe
        .wait_for(
            "the departed peer's handlers to be dropped",
            PROMPTLY,
            |p| p.dropped() == dropped + held,
        )
        .await;
    eventually("the departed peer's connection to close", PROMPTLY, || {
        server.connections() == 0
    })
    .await;
    assert_eq!(probe.started(), started + held, "a parked request ran");
}

#[tokio::test]
async fn a_peer_that_leaves_has_its_handlers_dropped_even_at_the_handler_cap() {
    const CAP: usize = 4;
    let server = CtServer::on_own_thread(|b| b.max_handlers_per_connection(CAP));
    // Below the cap: the server reads, sees the close, drops the handlers.
    leave_with_handlers_running(&server, CAP - 1, CAP - 1).await;
    // At the cap it does not read (backpressure), but a peer that is gone
    // must not keep its handlers running (and its connection slot taken)
    // until their deadlines.
    leave_with_handlers_running(&server, CAP + 1, CAP).await;
    assert_eq!(server.probe.running(), 0);
}

// ---------------------------------------------------------------------------
// 2. The stall limit.

#[tokio::test]
async fn a_peer_that_stops_reading_past_the_stall_limit_is_closed_and_the_server_lives_on() {
    // A peer that takes none of its replies for keepalive interval + timeout
    // (here 0.5 s) is dropped.
    let interval = Duration::from_millis(200);
    let timeout = Duration::from_millis(300);
    let server = CtServer::on_own_thread(move |b| b.keepalive(interval, timeout));
    let probe = server.probe.clone();

    // A good client with a call that spans the whole episode.
    let good = probe_client(server.addr).await;
    let long_call = tokio::spawn({
        let good = good.clone();
        async move { good.hold(1_500, 1).await }
    });
    probe
        .wait_for("the good call to start", PROMPTLY, |p| p.started() == 1)
        .await;

    let peer = RawConn::handshake(server.addr).await;
    let (rd, mut wr) = peer.stream.into_split();
    let started = Instant::now();
    // A call that never ends (its drop shows when the server gave up), then
    // 30 MiB of replies it will not read.
    let mut requests = raw::hold(1, BUDGET, u64::MAX, 2u32);
    for id in 2..=31u64 {
        requests.extend(raw::request(
            id,
            "Probe.blob",
            BUDGET,
            &raw::args(&(1u32 << 20,)),
        ));
    }
    // It keeps talking (Pings every 20 ms), so only its not reading can
    // count against it, not its silence.
    let writer = tokio::spawn(async move {
        if wr.write_all(&requests).await.is_err() {
            return;
        }
        for nonce in 0.. {
            if wr.write_all(&raw::ping(nonce)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    probe
        .wait_for("the stalled peer's call to start", PROMPTLY, |p| {
            p.started() == 2
        })
        .await;
    probe
        .wait_for(
            "the stalled peer's call to be dropped",
            Duration::from_secs(5),
            |p| p.dropped() == 1,
        )
        .await;
    let gave_up_after = started.elapsed();
    assert!(
        gave_up_after >= interval + timeout,
        "the peer was dropped after {gave_up_after:?}, before the 500 ms stall limit"
    );
    assert!(
        probe.blobs() < 30,
        "all {} blobs were made for a peer that read nothing",
        probe.blobs()
    );

    // The connection goes (its unwritten replies get a few seconds at most),
    // and nothing else with it.
    eventually(
        "the stalled connection to close",
        Duration::from_secs(10),
        || server.connections() == 1,
    )
    .await;
    let mut rd = tokio::io::BufReader::with_capacity(1 << 20, rd);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut rd).await {
            frames.push(f);
        }
        frames
    })
    .await
    .expect("the stalled peer's socket was left open");
    assert!(
        closed
            .iter()
            .all(|f| f.kind != raw::kind::RESPONSE || f.call_id != 1),
        "the dropped call was answered"
    );
    writer.abort();

    assert_eq!(
        long_call.await.unwrap().unwrap(),
        1,
        "the good call finished"
    );
    assert_eq!(good.hold(1, 3).await.unwrap(), 3);
    assert_eq!(
        server.connections(),
        1,
        "the good client kept its connection"
    );
    assert_served_promptly(server.addr, 10, Duration::from_secs(1)).await;
    assert_eq!(probe.dropped(), 1);
}

#[tokio::test]
async fn a_slow_reader_that_keeps_reading_is_not_taken_for_a_stalled_one() {
    // The stall limit is 0.6 s; this peer reads 256 KiB every 50 ms, much
    // slower than the server makes its replies, so they back up, but they
    // always move. (No call stays in flight, so the server sends no Pings
    // that this peer would have to answer.)
    const BLOBS: u64 = 12;
    const BLOB: usize = 1 << 20;
    let server = CtServer::on_own_thread(|b| {
        b.keepalive(Duration::from_millis(300), Duration::from_millis(300))
    });
    let probe = server.probe.clone();
    let mut peer = RawConn::handshake(server.addr).await;
    let mut requests = Vec::new();
    for id in 1..=BLOBS {
        requests.extend(raw::request(
            id,
            "Probe.blob",
            BUDGET,
            &raw::args(&(BLOB as u32,)),
        ));
    }
    peer.send(&requests).await;
    let (mut rd, _wr) = peer.stream.into_split();
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 256 * 1024];
    // Each reply: prefix and header, status, varint length, the bytes.
    let expected = BLOBS as usize * (raw::HEADER + 1 + 5 + BLOB);
    let started = Instant::now();
    while bytes.len() < expected {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of {expected} bytes after 20 s",
            bytes.len()
        );
        let n = rd.read(&mut chunk).await.unwrap_or(0);
        assert!(
            n > 0,
            "closed after {} of {expected} bytes, {:?} in, {} blobs made",
            bytes.len(),
            started.elapsed(),
            probe.blobs()
        );
        bytes.extend_from_slice(&chunk[..n]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{expected} bytes read in {:?}", started.elapsed());
    let mut frames = &bytes[..];
    let mut ids = Vec::new();
    while !frames.is_empty() {
        let f = read_frame(&mut frames).await.expect("a whole frame");
        assert_eq!(f.kind, raw::kind::RESPONSE, "{:?}", f.kind);
        assert_eq!(f.status(), raw::status::OK);
        assert_eq!(f.payload.len(), 1 + 5 + BLOB);
        ids.push(f.call_id);
    }
    ids.sort();
    assert_eq!(ids, (1..=BLOBS).collect::<Vec<_>>());
    assert_eq!(server.connections(), 1, "the slow reader was cut off");
}

// ---------------------------------------------------------------------------
// 3. Graceful shutdown.

/// `calls` calls in flight from a generated client and 100 from a raw peer,
/// then a graceful shutdown: every call gets its reply before its
/// connection closes, and requests that arrive after GoAway never run.
async fn in_flight_calls_survive_a_shutdown(server: CtServer, calls: u32) {
    const RAW: u64 = 100;
    let probe = server.probe.clone();
    let addr = server.addr;
    let client = probe_client(addr).await;
    let calc = CalculatorClient::connect(addr).await.unwrap();
    let held: Vec<_> = (0..calls)
        .map(|i| tokio::spawn(client.hold(100 + u64::from(i % 5) * 50, i)))
        .collect();

    let mut peer = RawConn::handshake(addr).await;
    let mut burst = Vec::new();
    for id in 1..=RAW {
        burst.extend(raw::hold(id, BUDGET, 150 + id % 7 * 20, id as u32));
    }
    peer.send(&burst).await;
    let all = calls as usize + RAW as usize;
    probe
        .wait_for("every call to start", PROMPTLY, |p| p.started() == all)
        .await;
    // Quick calls, done in their first poll, alongside.
    for i in 0..20 {
        assert_eq!(calc.add(i, i).await.unwrap(), 2 * i);
    }

    let shutdown = tokio::spawn(server.shutdown());
    // The raw peer: GoAway, then the drain Ping. Requests sent now crossed
    // the GoAway: refused, never run. Then the Pong, and every reply.
    let mut replies: HashMap<u64, u32> = HashMap::new();
    let mut refused = 0;
    let mut goaway = false;
    let (frames, _) = loop {
        let f = peer.next_frame(Duration::from_secs(10)).await.unwrap();
        match f.kind {
            raw::kind::GOAWAY => {
                assert_eq!(f.goaway_reason(), raw::goaway::SHUTDOWN, "{f:?}");
                goaway = true;
            }
            raw::kind::PING if f.call_id == u64::MAX => {
                assert!(goaway, "the drain Ping came before GoAway");
                for id in 1_001..=1_010u64 {
                    peer.send(&raw::hold(id, BUDGET, 1u64, 0u32)).await;
                }
                peer.send(&raw::pong(f.call_id)).await;
                break peer.frames_until_closed(Duration::from_secs(10)).await;
            }
            raw::kind::RESPONSE => {
                assert!(replies.insert(f.call_id, f.value()).is_none());
            }
            _ => panic!("unexpected {f:?}"),
        }
    };
    for f in frames {
        assert_eq!(f.kind, raw::kind::RESPONSE, "{f:?}");
        if f.call_id > 1_000 {
            assert_eq!(f.status(), raw::status::SHUTTING_DOWN, "{f:?}");
            refused += 1;
        } else {
            assert!(replies.insert(f.call_id, f.value()).is_none());
        }
    }
    assert_eq!(refused, 10, "requests after GoAway were not all refused");
    let expected: HashMap<u64, u32> = (1..=RAW).map(|id| (id, id as u32)).collect();
    assert_eq!(replies, expected, "the raw peer lost replies");

    for (i, call) in held.into_iter().enumerate() {
        assert_eq!(
            call.await.unwrap().unwrap(),
            i as u32,
            "call {i} lost its reply"
        );
    }
    let took = shutdown.await.unwrap();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert_eq!(probe.completed(), all, "every accepted call finished");
    assert_eq!(probe.dropped(), 0);
    assert_eq!(probe.started(), all, "a refused request ran");
}

#[tokio::test]
async fn in_flight_calls_survive_a_graceful_shutdown_of_a_current_thread_server() {
    let server = CtServer::on_own_thread(|b| b);
    in_flight_calls_survive_a_shutdown(server, 150).await;
}

#[tokio::test]
async fn in_flight_calls_survive_a_graceful_shutdown_with_client_and_server_on_one_thread() {
    let server = CtServer::here(rpc::Server::builder()).await;
    in_flight_calls_survive_a_shutdown(server, 150).await;
}

// ---------------------------------------------------------------------------
// 4. Many pipelined calls, small and large.

/// `calls` concurrent calls on one connection, a mix of large echoes, quick
/// calls done in their first poll, calls that sleep, and replies of every
/// size; each must get its own correct reply.
async fn pipelined_mixed_calls(addr: SocketAddr, calls: u32) {
    let channel = rpc::Channel::connect(addr).await.unwrap();
    let probe = ProbeClient::new(channel.clone());
    let shapes = ShapesClient::new(channel.clone());
    let calc = CalculatorClient::new(channel);
    let tasks: Vec<_> = (0..calls)
        .map(|i| {
            let (probe, shapes, calc) = (probe.clone(), shapes.clone(), calc.clone());
            tokio::spawn(async move {
                match i % 6 {
                    0 => {
                        let data = pattern(i, LARGE + i as usize);
                        let got = shapes.echo(data.clone()).await.unwrap();
                        assert!(got == data, "call {i}: a wrong echo of {} bytes", got.len());
                    }
                    1 => {
                        let sum = calc.add(i64::from(i), 1_000_000).await.unwrap();
                        assert_eq!(sum, i64::from(i) + 1_000_000);
                    }
                    2 => {
                        let s = format!("call number {i}");
                        let got = shapes.string(s.clone()).await.unwrap();
                        assert_eq!(got, s.chars().rev().collect::<String>());
                    }
                    3 => {
                        let got = probe.hold(u64::from(i % 20), i).await.unwrap();
                        assert_eq!(got, i);
                    }
                    4 => {
                        let len = (i as usize * 997) % (3 * LARGE);
                        let got = shapes.make(len).await.unwrap();
                        assert!(got.len() == len && got.iter().all(|&b| b == 7), "call {i}");
                    }
                    _ => {
                        let got = shapes.echo(pattern(i, i as usize)).await.unwrap();
                        assert_eq!(got, pattern(i, i as usize), "call {i}");
                    }
                }
            })
        })
        .collect();
    let results = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(tasks))
        .await
        .expect("the burst was not answered within 30 s");
    for (i, r) in results.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
}

#[tokio::test]
async fn hundreds_of_pipelined_mixed_calls_get_their_own_replies_from_a_current_thread_server() {
    let server = CtServer::on_own_thread(|b| b);
    let started = Instant::now();
    pipelined_mixed_calls(server.addr, 600).await;
    eprintln!("600 mixed calls in {:?}", started.elapsed());
    assert_eq!(server.connections(), 1);
    assert_eq!(server.probe.completed(), 100);
}

#[tokio::test]
async fn hundreds_of_pipelined_mixed_calls_with_client_and_server_on_one_current_thread_runtime() {
    let server = CtServer::here(rpc::Server::builder()).await;
    let started = Instant::now();
    // Two clients at once, each on its own connection.
    futures::join!(
        pipelined_mixed_calls(server.addr, 600),
        pipelined_mixed_calls(server.addr, 300),
    );
    eprintln!("900 mixed calls in {:?}", started.elapsed());
    assert_eq!(server.probe.completed(), 150);
}

/// What a request of the raw burst must get back.
#[derive(Debug)]
enum Expect {
    Sum(i64),
    Bytes(Vec<u8>),
    Tag(u32),
    SeenItself,
    UnknownMethod,
}

#[tokio::test]
async fn a_raw_burst_written_at_once_gets_one_correct_reply_per_request() {
    // 1,200 requests in one write: the read loop takes them in turns of many
    // frames, polls each handler once, and its inline writer sends the
    // replies between turns.
    const REQUESTS: u64 = 1_200;
    let server = CtServer::on_own_thread(|b| b);
    let peer = RawConn::handshake(server.addr).await;
    let (rd, mut wr) = peer.stream.into_split();
    let mut burst = Vec::new();
    let mut expect = HashMap::new();
    for id in 1..=REQUESTS {
        let (method, args, e) = match id % 8 {
            0 => {
                let data = pattern(id as u32, LARGE);
                (
                    "Shapes.echo",
                    raw::args(&(data.clone(),)),
                    Expect::Bytes(data),
                )
            }
            1 | 5 => (
                "Calculator.add",
                raw::args(&(id as i64, -7i64)),
                Expect::Sum(id as i64 - 7),
            ),
            2 => ("Probe.seen", raw::args(&()), Expect::SeenItself),
            3 => (
                "Probe.hold",
                raw::args(&(id % 30, id as u32)),
                Expect::Tag(id as u32),
            ),
            4 => {
                let data = pattern(id as u32, id as usize);
                (
                    "Shapes.echo",
                    raw::args(&(data.clone(),)),
                    Expect::Bytes(data),
                )
            }
            6 => ("Nobody.home", raw::args(&()), Expect::UnknownMethod),
            _ => (
                "Probe.blob",
                raw::args(&(40_000u32,)),
                Expect::Bytes(vec![7; 40_000]),
            ),
        };
        burst.extend(raw::request(id, method, BUDGET, &args));
        expect.insert(id, e);
    }
    let writer = tokio::spawn(async move {
        wr.write_all(&burst).await.unwrap();
        wr
    });
    let mut rd = tokio::io::BufReader::with_capacity(256 * 1024, rd);
    let read_all = async {
        for _ in 0..REQUESTS {
            let f = read_frame(&mut rd).await.expect("the connection closed");
            assert_eq!(f.kind, raw::kind::RESPONSE, "{f:?}");
            let e = expect
                .remove(&f.call_id)
                .unwrap_or_else(|| panic!("a reply to call {} again or unasked", f.call_id));
            match e {
                Expect::Sum(n) => assert_eq!(f.value::<i64>(), n, "call {}", f.call_id),
                Expect::Bytes(b) => assert!(f.value::<Vec<u8>>() == b, "call {}", f.call_id),
                Expect::Tag(t) => assert_eq!(f.value::<u32>(), t),
                Expect::SeenItself => {
                    let seen: Seen = f.value();
                    assert_eq!(seen.call_id, f.call_id, "a handler saw another call's id");
                    assert_eq!(seen.method, "Probe.seen");
                    assert!(seen.peer.is_some());
                }
                Expect::UnknownMethod => {
                    assert_eq!(f.status(), raw::status::UNKNOWN_METHOD, "{f:?}")
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("the replies did not all come within 30 s");
    assert!(expect.is_empty());
    let mut wr = writer.await.unwrap();
    // The connection is still good after the burst.
    wr.write_all(&raw::ping(5)).await.unwrap();
    let pong = tokio::time::timeout(PROMPTLY, read_frame(&mut rd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((pong.kind, pong.call_id), (raw::kind::PONG, 5));
    assert_eq!(server.connections(), 1);
}

// ---------------------------------------------------------------------------
// 5. Peers that vanish mid-burst.

#[tokio::test]
async fn peers_that_vanish_mid_burst_do_not_disturb_other_connections() {
    const ROUNDS: usize = 6;
    const HELD: usize = 20;
    let server = CtServer::on_own_thread(|b| b);
    let probe = server.probe.clone();
    let addr = server.addr;

    // A good client calls all along, large and small.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let good = {
        let (stop, made) = (stop.clone(), made.clone());
        tokio::spawn(async move {
            let channel = rpc::Channel::connect(addr).await.unwrap();
            let shapes = ShapesClient::new(channel.clone());
            let calc = CalculatorClient::new(channel);
            let mut i = 0u32;
            while !stop.load(SeqCst) {
                let data = pattern(i, if i.is_multiple_of(4) { LARGE } else { 64 });
                let (echo, sum) =
                    futures::join!(shapes.echo(data.clone()), calc.add(i64::from(i), 1));
                assert!(echo.unwrap() == data, "echo {i} came back wrong");
                assert_eq!(sum.unwrap(), i64::from(i) + 1);
                made.fetch_add(1, SeqCst);
                i += 1;
            }
        })
    };
    // And one with long calls in flight across every round.
    let patient = probe_client(addr).await;
    let long_calls: Vec<_> = (0..10)
        .map(|i| tokio::spawn(patient.hold(1_500, i)))
        .collect();
    probe
        .wait_for("the long calls to start", PROMPTLY, |p| p.started() == 10)
        .await;

    for round in 0..ROUNDS {
        let peer = RawConn::handshake(addr).await;
        let (rd, mut wr) = peer.stream.into_split();
        let mut burst = Vec::new();
        for id in 1..=HELD as u64 {
            burst.extend(raw::hold(id, BUDGET, u64::MAX, 0u32));
        }
        for id in 100..300u64 {
            let (method, args) = match id % 3 {
                0 => ("Probe.blob", raw::args(&(50_000u32,))),
                1 => ("Calculator.add", raw::args(&(1i64, 2i64))),
                _ => ("Shapes.echo", raw::args(&(pattern(id as u32, 5_000),))),
            };
            burst.extend(raw::request(id, method, BUDGET, &args));
        }
        wr.write_all(&burst).await.unwrap();
        let started_before = 10 + round * HELD;
        probe
            .wait_for("this round's held calls to start", PROMPTLY, |p| {
                p.started() == started_before + HELD
            })
            .await;
        // Half a large request, then gone: a reset, or a plain close with
        // replies still on their way.
        let big = raw::request(
            999,
            "Shapes.echo",
            BUDGET,
            &raw::args(&(pattern(9, LARGE),)),
        );
        wr.write_all(&big[..big.len() / 2]).await.unwrap();
        match round % 3 {
            // A reset.
            0 => {
                let stream = rd.reunite(wr).unwrap();
                stream.set_zero_linger().unwrap();
                drop(stream);
            }
            // A close with replies unread (the kernel resets too).
            1 => drop((rd, wr)),
            // A half close: it still reads, so the server can end cleanly.
            _ => {
                wr.shutdown().await.unwrap();
                let mut rd = rd;
                let mut sink = Vec::new();
                tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut sink))
                    .await
                    .expect("the server left a half-closed connection open")
                    .expect("the server reset a half-closed connection");
                drop(wr);
            }
        }
        probe
            .wait_for(
                "the vanished peer's handlers to be dropped",
                PROMPTLY,
                |p| p.dropped() == (round + 1) * HELD,
            )
            .await;
    }
    eventually("the vanished connections to close", PROMPTLY, || {
        server.connections() == 2
    })
    .await;
    for (i, call) in long_calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u32, "long call {i}");
    }
    let before = made.load(SeqCst);
    eventually("the good client to go on calling", PROMPTLY, || {
        made.load(SeqCst) >= before + 10
    })
    .await;
    stop.store(true, SeqCst);
    good.await.unwrap();
    assert!(made.load(SeqCst) > 0);
    assert_eq!(probe.completed(), 10);
    assert_eq!(probe.dropped(), ROUNDS * HELD);
    assert_served_promptly(addr, 10, Duration::from_secs(1)).await;
}
