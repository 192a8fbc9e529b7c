//! Review of the performance rework (dfb5599..): the client's in-flight cap
//! and per-entry outcome hand-over, the server's read-ahead while paused, and
//! the inline writer. Tests marked BUG fail on the code as reviewed.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use futures::FutureExt;
use support::probe::*;
use support::raw::{self, RawConn};
use tokio::io::AsyncWriteExt;

const PROMPTLY: Duration = Duration::from_secs(3);

async fn capped_client(addr: std::net::SocketAddr, cap: usize) -> ProbeClient {
    let channel = rpc::Channel::builder()
        .max_in_flight(cap)
        .connect(addr)
        .await
        .unwrap();
    ProbeClient::new(channel)
}

// ---------------------------------------------------------------------------
// Client: the waker stored with a call's entry.

/// BUG. A call that waited in line for a slot stores in its pending entry the
/// waker of its *first* poll (`Connection::call`, `waker` captured before the
/// loop), and its first poll after queueing skips the lock (`registered`).
/// If the future was first polled with another waker (here `now_or_never`,
/// i.e. a no-op waker; equally a future polled in one task and then moved to
/// another), the reply wakes that stale waker: the call never completes, not
/// even at its deadline (the reader's timer skips entries already `Done`),
/// and its slot under the cap is never given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_waited_in_line_and_moved_task_still_gets_its_reply() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let client = capped_client(server.local_addr(), 1).await;
    let first = tokio::spawn(client.hold(300, 1));
    probe
        .wait_for("the first call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    // The second call finds the only slot taken and waits in line; then it
    // moves to a task of its own (a future may be polled by any waker; only
    // the latest poll's must be woken).
    let mut second = Box::pin(client.with_timeout(Duration::from_secs(2)).hold(0, 2));
    assert!((&mut second).now_or_never().is_none(), "the slot was free");
    let second = tokio::spawn(second);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    let second = tokio::time::timeout(Duration::from_secs(10), second).await;
    // And the connection's only slot: given back, or held for ever?
    let third = tokio::time::timeout(
        Duration::from_secs(10),
        client.with_timeout(Duration::from_secs(2)).hold(0, 3),
    )
    .await;
    let (second_hung, third_hung) = (second.is_err(), third.is_err());
    let third_ok = matches!(third, Ok(Ok(3)));
    assert!(
        !second_hung && third_ok,
        "second call (2 s deadline) hung 10 s: {second_hung} (its reply woke the waker of its \
         first poll); third call: {third:?} (DeadlineExceeded: it waited in line behind the \
         hung call's slot, never given back; hung: {third_hung})"
    );
    assert_eq!(second.unwrap().unwrap().unwrap(), 2);
    assert_eq!(third.unwrap().unwrap(), 3);
}

/// BUG (same root cause): the call's deadline does not save it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_waited_in_line_and_moved_task_fails_at_its_deadline() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let client = capped_client(server.local_addr(), 1).await;
    let first = tokio::spawn(client.hold(200, 1));
    probe
        .wait_for("the first call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let mut second = Box::pin(
        client
            .with_timeout(Duration::from_secs(1))
            .hold(u64::MAX, 2),
    );
    assert!((&mut second).now_or_never().is_none(), "the slot was free");
    let second = tokio::spawn(second);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    let outcome = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("a call with a 1 s deadline was still pending after 10 s")
        .unwrap();
    assert!(
        matches!(outcome, Err(rpc::Error::DeadlineExceeded { .. })),
        "{outcome:?}"
    );
}

/// A service whose handler calls another server: a relay.
#[rpc::service]
pub trait Relay {
    /// Calls the downstream `Probe.hold(0, tag)`.
    async fn relay(&self, tag: u32) -> Result<u32, String>;
}

struct RelayImpl(ProbeClient);

impl Relay for RelayImpl {
    async fn relay(&self, tag: u32) -> Result<u32, String> {
        self.0.hold(0, tag).await.map_err(|e| e.to_string())
    }
}

/// BUG, with no user trickery: on a current-thread runtime the server polls
/// a handler once with the *driver's* waker, then moves it to a task of its
/// own. A handler whose outgoing call waits in line at its client's
/// in-flight cap during that first poll stores the driver's waker in the
/// call's entry once granted: the downstream reply wakes the driver, the
/// handler task sleeps until its own deadline, and the relay's caller gets
/// DeadlineExceeded although the downstream answered in milliseconds.
#[tokio::test]
async fn a_relaying_handler_on_a_current_thread_server_gets_its_downstream_reply() {
    let (downstream, probe) = start_probe(rpc::Server::builder()).await;
    let to_downstream = capped_client(downstream.local_addr(), 1).await;
    let relay = rpc::Server::builder()
        .add_service(RelayServer::new(RelayImpl(to_downstream.clone())))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = RelayClient::connect(relay.local_addr()).await.unwrap();
    // Take the relay's only downstream slot for 300 ms.
    let holder = tokio::spawn(to_downstream.hold(300, 1));
    probe
        .wait_for("the holder to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let started = std::time::Instant::now();
    let relayed = tokio::time::timeout(
        Duration::from_secs(10),
        client.with_timeout(Duration::from_secs(4)).relay(2),
    )
    .await
    .expect("the relay call hung");
    assert_eq!(holder.await.unwrap().unwrap(), 1);
    assert!(
        matches!(relayed, Ok(Ok(2))),
        "after {:?}: {relayed:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Client: the in-flight cap (coverage of risky paths; these pass).

/// Callers dropped at every await point (in line, just granted, in flight,
/// done but not yet taken) give their slot back: after the chaos, the full
/// cap is usable again. A leaked slot would leave `cap - 1` running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_dropped_anywhere_give_their_slots_back() {
    const CAP: usize = 4;
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let client = capped_client(server.local_addr(), CAP).await;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let hold_ms = next() % 15;
        let give_up_us = next() % 20_000;
        let call = client.hold(hold_ms, i);
        tasks.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_micros(give_up_us), call).await;
        }));
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    probe
        .wait_for("every handler to end", Duration::from_secs(10), |p| {
            p.running() == 0
        })
        .await;
    let held: Vec<_> = (0..CAP as u32)
        .map(|i| tokio::spawn(client.hold(500, 1000 + i)))
        .collect();
    probe
        .wait_for("the whole cap to be in use again", PROMPTLY, |p| {
            p.running() == CAP
        })
        .await;
    for h in held {
        h.await.unwrap().unwrap();
    }
}

/// A caller waiting in line fails at its own deadline (not the one of the
/// call holding the slot), and leaves the line: the next one gets the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waiting_in_line_fails_at_its_deadline_and_leaves_the_line() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let client = capped_client(server.local_addr(), 1).await;
    let holder = tokio::spawn(client.hold(1_500, 1));
    probe
        .wait_for("the holder to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let started = std::time::Instant::now();
    let late = client
        .with_timeout(Duration::from_millis(300))
        .hold(0, 2)
        .await;
    assert!(
        matches!(late, Err(rpc::Error::DeadlineExceeded { .. })),
        "{late:?}"
    );
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    let next = tokio::spawn(client.hold(0, 3));
    assert_eq!(holder.await.unwrap().unwrap(), 1);
    assert_eq!(
        tokio::time::timeout(PROMPTLY, next)
            .await
            .expect("the next in line never got the slot")
            .unwrap()
            .unwrap(),
        3
    );
}

type Call = tokio::task::JoinHandle<Result<u32, rpc::Error>>;

/// With a cap of one, a call that holds its slot until dropped, and three
/// callers waiting in line behind it.
async fn one_holding_three_in_line(
    addr: std::net::SocketAddr,
    probe: &ProbeState,
) -> (Call, Vec<Call>) {
    let client = capped_client(addr, 1).await;
    let holder = tokio::spawn(client.hold(u64::MAX, 1));
    probe
        .wait_for("the holder to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let waiting = (0..3)
        .map(|i| tokio::spawn(client.hold(0, 10 + i)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    (holder, waiting)
}

/// GoAway sends everyone waiting in line elsewhere at once (here nowhere:
/// the server is shutting down, so they hear ShuttingDown), long before the
/// call holding the slot ends with the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_sends_callers_waiting_in_line_elsewhere_at_once() {
    let (server, probe) =
        start_probe(rpc::Server::builder().shutdown_grace(Duration::from_secs(20))).await;
    let (holder, waiting) = one_holding_three_in_line(server.local_addr(), &probe).await;
    let shutdown = tokio::spawn(server.shutdown());
    for w in waiting {
        let outcome = tokio::time::timeout(PROMPTLY, w)
            .await
            .expect("a caller in line was not told of the GoAway")
            .unwrap();
        assert!(
            matches!(outcome, Err(rpc::Error::ShuttingDown { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(
        probe.started(),
        1,
        "a call in line ran on a draining server"
    );
    holder.abort();
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown hung after the holder was cancelled")
        .unwrap();
}

/// The connection dying wakes the callers in line as well as those in
/// flight: none hangs until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_in_line_learn_at_once_that_the_connection_died() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let (holder, waiting) = one_holding_three_in_line(server.local_addr(), &probe).await;
    server.abort().await;
    let holder = tokio::time::timeout(PROMPTLY, holder)
        .await
        .expect("the call in flight hung")
        .unwrap();
    assert!(holder.is_err(), "{holder:?}");
    for w in waiting {
        let outcome = tokio::time::timeout(PROMPTLY, w)
            .await
            .expect("a caller in line hung after the connection died")
            .unwrap();
        assert!(outcome.is_err(), "{outcome:?}");
    }
}

/// Cancel frames: a caller that gives up while in line sends nothing (its
/// request never went out); one that gives up in flight sends one Cancel.
/// Played against a hand-written server to see the client's frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_callers_that_gave_up_in_flight_send_a_cancel() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        RawConn::accept_handshake(stream).await
    });
    let client = capped_client(addr, 1).await;
    let mut peer = server.await.unwrap();
    let in_flight = tokio::spawn(client.hold(u64::MAX, 1));
    let request = peer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!(request.kind, raw::kind::REQUEST);
    let in_line = tokio::spawn(client.hold(0, 2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    in_line.abort();
    let _ = in_line.await;
    assert!(peer.is_silent_for(Duration::from_millis(300)).await);
    in_flight.abort();
    let _ = in_flight.await;
    let cancel = peer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!(
        (cancel.kind, cancel.call_id),
        (raw::kind::CANCEL, request.call_id)
    );
    assert!(
        peer.is_silent_for(Duration::from_millis(300)).await,
        "more than one Cancel, or the abandoned caller's request went out"
    );
    // The slot is free again: the next call goes out.
    let next = tokio::spawn(client.hold(0, 3));
    let request = peer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!(request.kind, raw::kind::REQUEST);
    next.abort();
}

// ---------------------------------------------------------------------------
// Server: reading ahead while paused.

/// RISK (fails). The read-ahead that lets a paused server see its peer leave
/// stops at 64 KiB (`READ_AHEAD_WHILE_PAUSED`). A peer with more than that
/// queued behind the handler cap (our own client at default limits: up to
/// 10,000 calls in flight against 256 handlers) that vanishes keeps its
/// handlers running until a reassurance Ping to the dead socket fails
/// (keepalive_interval / 2 and more: 15-30 s by default), the very case
/// 317507a set out to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_more_than_64k_queued_at_the_cap_that_leaves_has_its_handlers_dropped() {
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
/// serves all of it, once each, when a slot frees: nothing read ahead is
/// lost. Passes.
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

// ---------------------------------------------------------------------------
// Server on a current-thread runtime: the inline writer.

/// A GoAway queued while the driver is paused at its handler cap (so it reads
/// nothing, and the drain Pong stays unread) still goes out at once: the
/// inline writer is polled in every wait of the loop. Passes.
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

/// A protocol error from a peer with a handler still running on a
/// current-thread server: the GoAway queued after the driver ended is
/// written by `serve`'s final wait on the inline writer. Passes.
#[tokio::test]
async fn a_current_thread_server_sends_goaway_after_a_protocol_error_with_handlers_running() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    peer.send(&raw::hold(1, Duration::from_secs(60), u64::MAX, 1u32))
        .await;
    probe
        .wait_for("the handler to start", PROMPTLY, |p| p.started() == 1)
        .await;
    peer.send(&raw::frame(raw::kind::RESPONSE, 0, 1, &[0]))
        .await;
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    assert!(
        frames
            .iter()
            .any(|f| f.kind == raw::kind::GOAWAY && f.goaway_reason() == raw::goaway::PROTOCOL),
        "{frames:?}"
    );
    probe
        .wait_for("the handler to be dropped", PROMPTLY, |p| p.dropped() == 1)
        .await;
    assert_serves(server.local_addr()).await;
}
