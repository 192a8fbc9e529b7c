//! Limits and backpressure over real TCP, each configured short through the
//! builders: handlers per connection, calls in flight, connections, handshake
//! time, frame time (slowloris), idleness, keepalive, abuse, accept errors.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use support::assert_handshake_timed_out;
use support::probe::*;
use support::raw::{self, RawConn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROMPTLY: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_request_cancel_pairs_never_runs_more_handlers_than_the_cap() {
    const CAP: usize = 4;
    const PAIRS: u64 = 1_000;
    let (server, probe) =
        start_probe(rpc::Server::builder().max_handlers_per_connection(CAP)).await;
    let peer = RawConn::handshake(server.local_addr()).await;
    let (mut rd, mut wr) = peer.stream.into_split();

    // Every request is cancelled at once, except every tenth, which runs for
    // 100 ms: those fill the cap while the cancelled ones come and go.
    let mut flood = Vec::new();
    let mut kept = 0;
    for id in 1..=PAIRS {
        let keep = id % 10 == 0;
        let ms = if keep { 100 } else { u64::MAX };
        flood.extend(raw::hold(id, Duration::from_secs(60), ms, id as u32));
        if keep {
            kept += 1;
        } else {
            flood.extend(raw::cancel(id));
        }
    }
    let writer = tokio::spawn(async move {
        wr.write_all(&flood).await.unwrap();
        wr
    });
    // Read (and drop) whatever comes back, so replies never back up.
    let reader = tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while rd.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });

    let _wr = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the flood was not read within 30 s")
        .unwrap();
    probe
        .wait_for(
            "every kept handler to complete",
            Duration::from_secs(30),
            |p| p.completed() == kept,
        )
        .await;
    probe
        .wait_for("every handler to end", PROMPTLY, |p| p.running() == 0)
        .await;
    assert!(
        probe.high_water() <= CAP,
        "{} handlers ran at once on one connection; the cap is {CAP}",
        probe.high_water()
    );
    assert_eq!(probe.high_water(), CAP, "the flood never reached the cap");
    reader.abort();
    assert_serves(server.local_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_handler_cap_requests_wait_in_order_and_pings_are_answered_at_once() {
    let (server, probe) = start_probe(rpc::Server::builder().max_handlers_per_connection(2)).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    for id in 1..=3 {
        peer.send(&raw::hold(id, Duration::from_secs(60), 300u64, id as u32))
            .await;
    }
    peer.send(&raw::ping(99)).await;
    probe
        .wait_for("two handlers to start", PROMPTLY, |p| p.started() == 2)
        .await;
    // The third request waits for a slot, but the Ping behind it is read
    // and answered at once: the first thing back is the Pong.
    let first = peer.next_frame(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        (first.kind, first.call_id),
        (raw::kind::PONG, 99),
        "{first:?}"
    );
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let f = peer.next_frame(Duration::from_secs(10)).await.unwrap();
        assert_eq!(f.kind, raw::kind::RESPONSE, "{f:?}");
        ids.push(f.call_id);
    }
    assert_eq!(ids.last(), Some(&3), "the held request ran last: {ids:?}");
    assert_eq!(probe.high_water(), 2);
    assert_eq!(probe.started(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_hold_the_server_stops_reading_that_connection() {
    // Cap 2: two run, 1,024 are held, and the request after them is not
    // read, nor the Ping behind it, until a slot frees up.
    const SENT: u64 = 2 + 1024 + 1;
    let (server, probe) = start_probe(rpc::Server::builder().max_handlers_per_connection(2)).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    let mut burst = Vec::new();
    for id in 1..=SENT {
        let ms = if id <= 2 { 300u64 } else { 0 };
        burst.extend(raw::hold(id, Duration::from_secs(60), ms, id as u32));
    }
    burst.extend(raw::ping(99));
    peer.send(&burst).await;
    probe
        .wait_for("two handlers to start", PROMPTLY, |p| p.started() == 2)
        .await;
    let first = peer.next_frame(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.kind, raw::kind::RESPONSE, "{first:?}");
    let mut responses = 1;
    let mut ponged = false;
    while responses < SENT || !ponged {
        let f = peer.next_frame(Duration::from_secs(10)).await.unwrap();
        match f.kind {
            raw::kind::RESPONSE => responses += 1,
            raw::kind::PONG => ponged = true,
            _ => panic!("{f:?}"),
        }
    }
    assert_eq!(probe.high_water(), 2);
    assert_eq!(probe.started(), SENT as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_leaves_at_the_handler_cap_has_its_handlers_dropped_at_once() {
    // At the cap the server reads no more requests, yet a peer that is gone
    // must not keep its handlers (and its slot) until a write to it fails.
    let (server, probe) = start_probe(rpc::Server::builder().max_handlers_per_connection(2)).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    for id in 1..=3 {
        peer.send(&raw::hold(
            id,
            Duration::from_secs(600),
            u64::MAX,
            id as u32,
        ))
        .await;
    }
    probe
        .wait_for("two handlers to start", PROMPTLY, |p| p.started() == 2)
        .await;
    drop(peer);
    probe
        .wait_for("both handlers to be dropped", PROMPTLY, |p| {
            p.dropped() == 2
        })
        .await;
    assert_eq!(probe.started(), 2, "the request waiting for a slot ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_calls_beyond_max_in_flight_wait_for_a_slot() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let channel = rpc::Channel::builder()
        .max_in_flight(2)
        .connect(server.local_addr())
        .await
        .unwrap();
    let client = ProbeClient::new(channel);
    let calls: Vec<_> = (0..6).map(|i| tokio::spawn(client.hold(100, i))).collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u32);
    }
    assert_eq!(probe.high_water(), 2);
}

#[tokio::test]
async fn a_caller_waiting_at_the_in_flight_cap_is_not_starved_by_a_busy_one() {
    // With a cap of one and a caller that calls in a loop, a second caller
    // gets the slot when it is given back (first come, first served), not
    // after the busy caller stops.
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let channel = rpc::Channel::builder()
        .max_in_flight(1)
        .connect(server.local_addr())
        .await
        .unwrap();
    let client = ProbeClient::new(channel);
    let stop = Arc::new(AtomicBool::new(false));
    let busy = tokio::spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move {
            while !stop.load(SeqCst) {
                client.hold(0, 1).await.unwrap();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waited = client.with_timeout(Duration::from_secs(5)).hold(0, 2).await;
    stop.store(true, SeqCst);
    busy.await.unwrap();
    assert_eq!(waited.expect("the waiting caller never got the slot"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_new_connections_until_one_closes() {
    let (server, _) = start_probe(rpc::Server::builder().max_connections(2)).await;
    let addr = server.local_addr();
    let first = CalculatorClient::connect(addr).await.unwrap();
    let second = CalculatorClient::connect(addr).await.unwrap();
    assert_eq!(first.add(1, 1).await.unwrap(), 2);
    assert_eq!(second.add(1, 2).await.unwrap(), 3);

    // A third connection waits in the OS backlog: its handshake goes unanswered.
    let third = rpc::Channel::builder()
        .handshake_timeout(Duration::from_millis(300))
        .connect(addr)
        .await
        .unwrap_err();
    assert_handshake_timed_out(&third);
    assert!(server.connections() <= 2);

    drop(first);
    let third = rpc::Channel::builder()
        .handshake_timeout(Duration::from_secs(10))
        .connect(addr)
        .await
        .expect("a slot freed up");
    let third = CalculatorClient::new(third);
    assert_eq!(third.add(2, 2).await.unwrap(), 4);
    assert!(server.connections() <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_finish_the_handshake_in_time_is_closed() {
    let (server, _) =
        start_probe(rpc::Server::builder().handshake_timeout(Duration::from_millis(300))).await;
    let addr = server.local_addr();
    let started = Instant::now();
    let mut silent = RawConn::connect(addr).await;
    let mut halfway = RawConn::connect(addr).await;
    halfway.send(&raw::hello()[..10]).await;
    for peer in [&mut silent, &mut halfway] {
        let (frames, _) = peer.frames_until_closed(Duration::from_secs(10)).await;
        assert!(frames.is_empty(), "the server answered: {frames:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    eventually("the connections to be gone", PROMPTLY, || {
        server.connections() == 0
    })
    .await;
    assert_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gives_up_on_a_server_that_does_not_answer_the_handshake() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.read_to_end(&mut Vec::new()).await;
    });
    let started = Instant::now();
    let err = rpc::Channel::builder()
        .handshake_timeout(Duration::from_millis(300))
        .connect(addr)
        .await
        .unwrap_err();
    assert_handshake_timed_out(&err);
    assert!(started.elapsed() < Duration::from_secs(5));
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_trickles_in_too_slowly_closes_the_connection() {
    let (server, probe) =
        start_probe(rpc::Server::builder().frame_timeout(Duration::from_millis(300))).await;
    let addr = server.local_addr();
    let slow = RawConn::handshake(addr).await;
    let started = Instant::now();
    let frame = raw::hold(1, Duration::from_secs(60), 1u64, 1u32);
    // 50 ms per byte: the frame would take over 1.5 s to arrive.
    let (mut rd, mut wr) = slow.stream.into_split();
    let trickle = tokio::spawn(async move {
        for byte in frame {
            if wr.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let closed = tokio::spawn(async move {
        // Whatever the server sends last (a GoAway), then EOF or a reset.
        let _ = rd.read_to_end(&mut Vec::new()).await;
        started.elapsed()
    });
    // Meanwhile a well-behaved connection whose frames are far apart is
    // untouched: the limit is on one frame, not on the gaps between them.
    let mut steady = RawConn::handshake(addr).await;
    for nonce in 0..10 {
        steady.send(&raw::ping(nonce)).await;
        let pong = steady.next_frame(PROMPTLY).await.unwrap();
        assert_eq!((pong.kind, pong.call_id), (raw::kind::PONG, nonce));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed_after = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the slow connection was never closed")
        .unwrap();
    assert!(
        closed_after < Duration::from_millis(1_500),
        "closed after {closed_after:?}, when the frame was nearly complete"
    );
    assert_eq!(probe.started(), 0, "the trickled request never ran");
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_gets_goaway_idle_even_if_it_pings() {
    let (server, _) =
        start_probe(rpc::Server::builder().idle_timeout(Duration::from_millis(300))).await;
    let addr = server.local_addr();

    // A raw peer is told why.
    let mut peer = RawConn::handshake(addr).await;
    let started = Instant::now();
    let (frames, _) = peer.frames_until_closed(Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        frames
            .iter()
            .any(|f| f.kind == raw::kind::GOAWAY && f.goaway_reason() == raw::goaway::IDLE),
        "{frames:?}"
    );

    // Pings are not calls: a peer that only pings is idle too.
    let mut pinger = RawConn::handshake(addr).await;
    let started = Instant::now();
    let goaway = loop {
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
        pinger.send(&raw::ping(1)).await;
        let f = pinger.next_frame(PROMPTLY).await.unwrap();
        if f.kind == raw::kind::GOAWAY {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(goaway.goaway_reason(), raw::goaway::IDLE);
    // What a client sees (a new connection for its next call, none while a
    // call runs) is in tests/transports.rs, over every transport.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_drops_a_client_that_stops_answering_while_its_calls_run() {
    let (server, probe) = start_probe(
        rpc::Server::builder().keepalive(Duration::from_millis(250), Duration::from_millis(500)),
    )
    .await;
    // A live client answers the pings and keeps its long call.
    let live = probe_client(server.local_addr()).await;
    let long_call = tokio::spawn(live.hold(2_000, 1));

    // A peer that went silent (a dead host, a cut cable): it never reads nor
    // answers.
    let mut dead = RawConn::handshake(server.local_addr()).await;
    dead.send(&raw::hold(1, Duration::from_secs(60), u64::MAX, 2u32))
        .await;
    probe
        .wait_for(
            "the dead peer's handler to be dropped",
            Duration::from_secs(5),
            |p| p.dropped() == 1,
        )
        .await;
    let (frames, _) = dead.frames_until_closed(PROMPTLY).await;
    assert!(
        frames.iter().any(|f| f.kind == raw::kind::PING),
        "closed without pinging: {frames:?}"
    );
    assert_eq!(long_call.await.unwrap().unwrap(), 1);
    assert_eq!(probe.dropped(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_fails_calls_to_a_server_that_stops_answering() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_request, request_seen) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut conn = RawConn::accept_handshake(s).await;
        let request = conn.next_frame(Duration::from_secs(10)).await.unwrap();
        let _ = got_request.send(request.kind);
        // Then silence: nothing answered, not even pings.
        std::future::pending::<()>().await;
        drop(conn);
    });
    let channel = rpc::Channel::builder()
        .keepalive(Duration::from_millis(200), Duration::from_millis(200))
        .connect(addr)
        .await
        .unwrap();
    let client = CalculatorClient::new(channel);
    let started = Instant::now();
    let err = client.add(1, 2).await.unwrap_err();
    assert_eq!(request_seen.await.unwrap(), raw::kind::REQUEST);
    assert!(matches!(err, rpc::Error::Disconnected { .. }), "{err}");
    assert!(err.to_string().contains("keepalive"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the default 30 s deadline would have ended it, not keepalive"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_ends_that_connection_with_goaway_and_spares_the_others() {
    let (server, probe) =
        start_probe(rpc::Server::builder().abuse_limit(20, Duration::from_secs(10))).await;
    let addr = server.local_addr();
    let good = probe_client(addr).await;
    let in_flight = tokio::spawn(good.hold(500, 1));
    probe
        .wait_for("the good call to start", PROMPTLY, |p| p.started() == 1)
        .await;

    // Cancels of calls that do not exist.
    let mut canceller = RawConn::handshake(addr).await;
    for id in 1..=21 {
        canceller.send(&raw::cancel(1_000 + id)).await;
    }
    let (frames, _) = canceller.frames_until_closed(PROMPTLY).await;
    let goaway = frames.last().expect("closed without a GoAway");
    assert_eq!(goaway.goaway_reason(), raw::goaway::ABUSE, "{frames:?}");

    // Malformed requests (shorter than their head): each gets a Decode
    // error, until the budget is spent.
    let mut garbler = RawConn::handshake(addr).await;
    for id in 1..=21 {
        garbler
            .send(&raw::frame(raw::kind::REQUEST, 0, id, &[1, 2, 3]))
            .await;
    }
    let (frames, _) = garbler.frames_until_closed(PROMPTLY).await;
    let decode_errors = frames
        .iter()
        .filter(|f| f.kind == raw::kind::RESPONSE && f.status() == raw::status::DECODE)
        .count();
    assert!(decode_errors >= 20, "{frames:?}");
    assert_eq!(
        frames.last().unwrap().goaway_reason(),
        raw::goaway::ABUSE,
        "{frames:?}"
    );

    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        1,
        "the good call finished"
    );
    assert_eq!(good.hold(1, 2).await.unwrap(), 2);
    assert_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_flight_call_id_ends_that_connection_with_goaway() {
    duplicate_call_id_ends_the_connection().await;
}

/// On a current-thread runtime the server polls a handler in its driver
/// before giving it a task: the duplicate is caught before that poll.
#[tokio::test]
async fn a_duplicate_call_id_is_caught_on_a_current_thread_runtime_too() {
    duplicate_call_id_ends_the_connection().await;
}

async fn duplicate_call_id_ends_the_connection() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    let hold = raw::hold(5, Duration::from_secs(60), u64::MAX, 5u32);
    peer.send(&hold).await;
    probe
        .wait_for("the first call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    peer.send(&hold).await;
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    let goaway = frames.last().expect("closed without a GoAway");
    assert_eq!(goaway.goaway_reason(), raw::goaway::PROTOCOL, "{frames:?}");
    assert!(goaway.message().contains("already in flight"), "{frames:?}");
    probe
        .wait_for("the handler to be dropped", PROMPTLY, |p| p.dropped() == 1)
        .await;
    assert_eq!(probe.started(), 1, "the duplicate never ran");
    assert_serves(server.local_addr()).await;
}

/// Set in the child process of the EMFILE test.
const EMFILE_CHILD: &str = "RPC_TEST_EMFILE_CHILD";

/// The server half of the EMFILE test, run in a child process with a low
/// open-file limit. A no-op in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emfile_child_server() {
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return;
    }
    let (server, _) = start_probe(rpc::Server::builder()).await;
    println!("ADDR {}", server.local_addr());
    // Serve until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_such_as_emfile_do_not_stop_the_accept_loop() {
    use tokio::io::AsyncBufReadExt;
    // The server runs in a child process allowed 64 open files, so that its
    // accepts fail with EMFILE while this process (the clients) has plenty.
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "--exact",
            "emfile_child_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(EMFILE_CHILD, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the child server");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: std::net::SocketAddr = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the child server did not start")
            .unwrap()
            .expect("the child server exited");
        // libtest may have printed "test emfile_child_server ... " first.
        if let Some((_, addr)) = line.split_once("ADDR ") {
            break addr.trim().parse().unwrap();
        }
    };

    // More connections than the child has file descriptors for.
    let mut conns = Vec::new();
    for _ in 0..100 {
        let mut c = RawConn::connect(addr).await;
        c.send(&raw::hello()).await;
        conns.push(c);
    }
    let mut answered = Vec::new();
    let mut waiting = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    for mut c in conns {
        match tokio::time::timeout_at(deadline, c.next_frame(PROMPTLY)).await {
            Ok(Ok(f)) if f.kind == raw::kind::HELLO => answered.push(c),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => waiting.push(c),
        }
    }
    assert!(
        !waiting.is_empty() && !answered.is_empty(),
        "{} answered, {} waiting: the file limit was not reached",
        answered.len(),
        waiting.len()
    );

    eprintln!(
        "{} connections answered, {} waiting on accept",
        answered.len(),
        waiting.len()
    );
    // Freeing descriptors lets the accept loop go on with the waiting ones.
    drop(answered);
    for c in &mut waiting {
        let hello = c.next_frame(Duration::from_secs(10)).await.unwrap();
        assert_eq!(hello.kind, raw::kind::HELLO);
    }
    drop(waiting);
    assert_serves(addr).await;
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_spares_a_client_whose_calls_wait_at_the_handler_cap() {
    // At the cap the server does not read, so it cannot hear the client's
    // Pongs: that silence must not count against the client.
    let (server, probe) = start_probe(
        rpc::Server::builder()
            .max_handlers_per_connection(1)
            .keepalive(Duration::from_millis(100), Duration::from_millis(500)),
    )
    .await;
    // The second call waits 1.5 s for the slot, longer than keepalive's
    // 0.6 s; the client does answer every Ping, within 0.5 s.
    let client = probe_client(server.local_addr()).await;
    let first = tokio::spawn(client.hold(1_500, 1));
    let second = tokio::spawn(client.hold(1_500, 2));
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(second.await.unwrap().unwrap(), 2);
    assert_eq!((probe.high_water(), probe.dropped()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_its_replies_cannot_make_the_server_queue_them() {
    const REQUESTS: u64 = 20_000;
    const BLOB: u32 = 64 * 1024;
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let peer = RawConn::handshake(addr).await;
    let (rd, mut wr) = peer.stream.into_split();
    // 20,000 requests (600 KB) asking for 64 KiB each (1.3 GB): never read.
    let mut requests = Vec::new();
    for id in 1..=REQUESTS {
        requests.extend(raw::request(
            id,
            "Probe.blob",
            Duration::from_secs(60),
            &raw::args(&(BLOB,)),
        ));
    }
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&requests).await;
        // Keep the connection open until aborted.
        std::future::pending::<()>().await;
        drop(wr);
    });
    // Wait until the server stops making blobs (for half a second).
    let mut last = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.blobs() != last {
        assert!(Instant::now() < deadline, "the server never stopped");
        last = probe.blobs();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What the sockets hold, 1 MiB of queue and one reply per handler slot.
    assert!(
        probe.blobs() < 2_000,
        "{} of {REQUESTS} requests were served to a peer that reads nothing",
        probe.blobs()
    );
    assert_serves(addr).await;
    // When that peer goes away, its connection does too.
    writer.abort();
    drop(rd);
    eventually(
        "the stuck connection to close",
        Duration::from_secs(10),
        || server.connections() == 0,
    )
    .await;
}

#[tokio::test]
async fn cancels_that_cross_their_replies_are_not_abuse() {
    // A client that gives up on calls (timeouts, select!, hedging) sends
    // Cancels that may cross the reply on the wire: the server no longer
    // knows the id. That is normal, however often it happens.
    let (server, _) =
        start_probe(rpc::Server::builder().abuse_limit(20, Duration::from_secs(10))).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    for id in 1..=100 {
        peer.send(&raw::hold(id, Duration::from_secs(5), 0u64, 1u32))
            .await;
        let reply = peer.next_reply(PROMPTLY).await.expect("a reply");
        assert_eq!(reply.value::<u32>(), 1);
        peer.send(&raw::cancel(id)).await; // too late: the call is over
    }
    assert!(
        peer.is_silent_for(Duration::from_millis(300)).await,
        "no GoAway"
    );
    // The budget still counts cancels of ids the peer never used.
    for id in 1..=21 {
        peer.send(&raw::cancel(1_000_000 + id)).await;
    }
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    assert_eq!(frames.last().unwrap().goaway_reason(), raw::goaway::ABUSE);
}

#[tokio::test]
async fn a_client_with_short_keepalive_survives_a_server_at_its_handler_cap() {
    // Every handler slot is busy for longer than the client's keepalive, so
    // the server does not read the client's Pings; its own Pings must keep
    // the client from declaring it dead.
    let keepalive = Duration::from_millis(300);
    let (server, _) = start_probe(
        rpc::Server::builder()
            .max_handlers_per_connection(1)
            .keepalive(keepalive, keepalive),
    )
    .await;
    let channel = rpc::Channel::builder()
        .keepalive(keepalive, keepalive)
        .connect(server.local_addr())
        .await
        .unwrap();
    let client = ProbeClient::new(channel);
    let first = tokio::spawn(client.hold(1_500, 1));
    let second = tokio::spawn(client.hold(1_500, 2));
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(second.await.unwrap().unwrap(), 2);
}
