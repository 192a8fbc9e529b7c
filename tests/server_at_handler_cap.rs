//! A server connection at its handler cap (`max_handlers_per_connection`),
//! over real TCP. At the cap the server holds requests back for a slot and
//! keeps reading: a client that drops its calls there has them cancelled
//! (held ones never start) and is served again at once; a held request's
//! budget counts from its arrival, and it keeps its share of the frame
//! memory budget while it waits. Past the hold it takes no new requests
//! but reads ahead so that it can tell when the peer has gone: a peer that
//! leaves with a large backlog queued still has its handlers dropped
//! promptly, what was read is all served once a slot frees, and a
//! shutdown's GoAway still goes out at once.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use support::hand::PROMPTLY;
use support::probe::*;
use support::raw::{self, RawConn};
use tokio::io::AsyncWriteExt;

/// A peer with far more queued behind the handler cap than one read takes
/// (~160 KiB here; our own client at default limits may have up to 10,000
/// calls in flight against 256 handlers) that vanishes must have its
/// handlers dropped at once. Otherwise they run on for a peer that is gone
/// until a Ping the server sends while paused finds the socket dead:
/// keepalive_interval / 2 and more, 15 s or longer at default settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_leaves_with_160_kib_queued_at_the_cap_has_its_handlers_dropped() {
    const CAP: usize = 2;
    let (server, probe) =
        start_probe(rpc::Server::builder().max_handlers_per_connection(CAP)).await;
    let peer = RawConn::handshake(server.local_addr()).await;
    let mut burst = Vec::new();
    for id in 1..=CAP as u64 {
        burst.extend(raw::hold(id, Duration::from_secs(600), u64::MAX, id as u32));
    }
    // ~160 KiB of further requests, parked behind the cap.
    let text = "x".repeat(1024);
    for id in 100..260u64 {
        burst.extend(raw::request(
            id,
            "Probe.text",
            Duration::from_secs(600),
            &raw::args(&(text.clone(),)),
        ));
    }
    let mut stream = peer.stream;
    tokio::time::timeout(Duration::from_secs(5), stream.write_all(&burst))
        .await
        .expect("the server's socket buffers did not take 160 KiB")
        .unwrap();
    probe
        .wait_for("the handlers to start", PROMPTLY, |p| p.started() == CAP)
        .await;
    drop(stream);
    probe
        .wait_for(
            "the departed peer's handlers to be dropped",
            PROMPTLY,
            |p| p.dropped() == CAP,
        )
        .await;
}

/// A server paused at its cap keeps what it read ahead (~40 KiB here) and
/// serves all of it, once each, when a slot frees: a request read while
/// paused is neither lost nor run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_read_ahead_while_paused_are_all_served() {
    let (server, probe) = start_probe(rpc::Server::builder().max_handlers_per_connection(1)).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    let mut burst = raw::hold(1, Duration::from_secs(60), 300u64, 1u32);
    let text = "y".repeat(200);
    for id in 2..=200u64 {
        burst.extend(raw::request(
            id,
            "Probe.text",
            Duration::from_secs(60),
            &raw::args(&(text.clone(),)),
        ));
    }
    peer.send(&burst).await;
    probe
        .wait_for("the first handler to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let mut ids = Vec::new();
    while ids.len() < 200 {
        let f = peer.next_reply(Duration::from_secs(10)).await.unwrap();
        assert_eq!(f.kind, raw::kind::RESPONSE);
        if f.call_id != 1 {
            assert_eq!(f.value::<u64>(), 200);
        }
        ids.push(f.call_id);
    }
    // Replies come in any order (each handler is a task of its own).
    ids.sort();
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());
}

/// On a current-thread runtime a connection's writer is polled by its
/// driver. A GoAway queued while that driver is paused at its handler cap
/// (so it reads nothing, and the peer's answer to the drain Ping stays
/// unread) must still go out at once, so the peer stops sending; then both
/// calls, the parked one too (it was read before the GoAway), are answered
/// before the server closes.
#[tokio::test]
async fn a_current_thread_server_paused_at_its_cap_still_sends_goaway_on_shutdown() {
    let (server, probe) = start_probe(
        rpc::Server::builder()
            .max_handlers_per_connection(1)
            .shutdown_grace(Duration::from_secs(20)),
    )
    .await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    for id in 1..=2u64 {
        peer.send(&raw::hold(id, Duration::from_secs(60), 1_000u64, id as u32))
            .await;
    }
    probe
        .wait_for("the first handler to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let shutdown = tokio::spawn(server.shutdown());
    let started = std::time::Instant::now();
    let goaway = loop {
        let f = peer.next_frame(PROMPTLY).await.unwrap();
        if f.kind == raw::kind::GOAWAY {
            break f;
        }
    };
    assert_eq!(goaway.goaway_reason(), raw::goaway::SHUTDOWN);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Both calls (the parked one too: it was read before the GoAway) are
    // answered, then the server closes.
    let (frames, _) = peer.frames_until_closed(Duration::from_secs(15)).await;
    let mut answered: Vec<u64> = frames
        .iter()
        .filter(|f| f.kind == raw::kind::RESPONSE)
        .map(|f| f.call_id)
        .collect();
    answered.sort();
    assert_eq!(answered, vec![1, 2], "{frames:?}");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap()
        .unwrap();
}

/// 256 handlers that never return fill the connection, 200 more calls wait
/// behind them, and the client drops every one. The server reads the
/// Cancels though it is at its cap: the waiting requests never start, the
/// running handlers are dropped, and the next call on the same connection
/// is served at once (not after the 30 s deadlines of all of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_its_calls_at_the_cap_is_served_again_at_once() {
    const CAP: usize = 256;
    const WAITING: usize = 200;
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let client = probe_client(server.local_addr()).await;
    type Call = Pin<Box<dyn Future<Output = Result<u32, rpc::Error>> + Send>>;
    let mut calls: Vec<Call> = (0..(CAP + WAITING) as u32)
        .map(|i| Box::pin(client.hold(u64::MAX, i)) as Call)
        .collect();
    // One poll each sends the request.
    for call in &mut calls {
        assert!(futures::poll!(call.as_mut()).is_pending());
    }
    probe
        .wait_for("the cap to fill", PROMPTLY, |p| p.started() == CAP)
        .await;
    // Let the waiting requests arrive (they are held, not started).
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Dropped last-first, so the Cancels of the waiting calls come first:
    // none of them may start, even though slots free up right after.
    while let Some(call) = calls.pop() {
        drop(call);
    }
    let dropped_at = Instant::now();
    let served = tokio::time::timeout(Duration::from_secs(1), client.text("next".into())).await;
    assert_eq!(
        served
            .expect("the next call was not served within 1 s")
            .unwrap(),
        4
    );
    assert!(dropped_at.elapsed() < Duration::from_secs(1));
    probe
        .wait_for("every handler to be dropped", PROMPTLY, |p| {
            p.dropped() == CAP
        })
        .await;
    assert_eq!(probe.started(), CAP, "a cancelled waiting request started");
}

/// A request waiting for a slot has its budget counted from when it
/// arrived: one that has waited past its budget is answered
/// DeadlineExceeded and never runs, though a slot frees up later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_s_budget_counts_from_its_arrival() {
    let (server, probe) = start_probe(rpc::Server::builder().max_handlers_per_connection(1)).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    // One runs for a second; two wait behind it, the second with a budget
    // of 300 ms.
    let mut burst = raw::hold(1, Duration::from_secs(60), 1_000u64, 1u32);
    burst.extend(raw::hold(2, Duration::from_secs(60), 0u64, 2u32));
    burst.extend(raw::hold(3, Duration::from_millis(300), 0u64, 3u32));
    peer.send(&burst).await;
    let mut replies = Vec::new();
    while replies.len() < 3 {
        let f = peer.next_reply(Duration::from_secs(10)).await.unwrap();
        replies.push((f.call_id, f.status()));
    }
    replies.sort();
    let expected = vec![
        (1, raw::status::OK),
        (2, raw::status::OK),
        (3, raw::status::DEADLINE_EXCEEDED),
    ];
    assert_eq!(replies, expected);
    assert_eq!(probe.started(), 2, "the expired request ran");
}

/// The budget is held (here by a 1 MiB request waiting behind a handler that
/// never ends, which keeps its grant while it waits): another client's
/// large call waits for it no longer than the frame timeout, and then fails
/// with a message that says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_waits_too_long_for_the_budget_is_refused_with_the_reason() {
    let (server, probe) = start_probe(
        rpc::Server::builder()
            .max_frame((1 << 20) + 1024)
            .frame_memory_budget(1 << 20)
            .frame_timeout(Duration::from_millis(500))
            .max_handlers_per_connection(1),
    )
    .await;
    let addr = server.local_addr();
    let mut holder = RawConn::handshake(addr).await;
    holder
        .send(&raw::hold(1, Duration::from_secs(60), u64::MAX, 1))
        .await;
    let big = raw::args(&("h".repeat(1 << 20),));
    holder
        .send(&raw::request(
            2,
            "Probe.text",
            Duration::from_secs(60),
            &big,
        ))
        .await;
    probe
        .wait_for("the holder's handler to start", PROMPTLY, |p| {
            p.started() == 1
        })
        .await;
    let other = probe_client(addr).await;
    let refused = tokio::time::timeout(Duration::from_secs(10), other.text("o".repeat(512 * 1024)))
        .await
        .expect("the waiting frame was never refused")
        .unwrap_err();
    let message = refused.to_string();
    assert!(message.contains("memory budget"), "{message}");
    // The holder's connection is unharmed: its Ping is answered.
    holder.send(&raw::ping(5)).await;
    let pong = holder.next_frame(Duration::from_secs(5)).await.unwrap();
    assert_eq!((pong.kind, pong.call_id), (raw::kind::PONG, 5));
}
