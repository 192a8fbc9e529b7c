//! The client's in-flight cap (`max_in_flight`), over real TCP: a call that
//! finds every slot taken waits in line, and whatever happens to it there
//! (moved to another task, dropped, past its deadline, its server going
//! away or shutting down) it ends promptly, gives its slot back, and sends
//! the server nothing it should not. A slot that is never given back would
//! leave the connection one call short for ever.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use futures::FutureExt;
use support::hand::{PROMPTLY, client_and_peer};
use support::probe::*;
use support::raw;

/// A client of the probe at `addr` with `cap` calls in flight at most.
async fn capped_client(addr: std::net::SocketAddr, cap: usize) -> ProbeClient {
    let channel = rpc::Channel::builder()
        .max_in_flight(cap)
        .connect(addr)
        .await
        .unwrap();
    ProbeClient::new(channel)
}

// ---------------------------------------------------------------------------
// A call that waited in line, then moved to another task.

/// A call future may be polled by one task and then moved to another; only
/// the latest poll's waker may be woken. Here the second call finds the only
/// slot taken, is first polled with a no-op waker (`now_or_never`), then
/// moves to a task of its own: when the first call ends it must still be
/// granted the slot, go out, and get its reply; and it must give the slot
/// back after, so the third call runs too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_waited_in_line_and_moved_task_still_gets_its_reply() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let client = capped_client(server.local_addr(), 1).await;
    let first = tokio::spawn(client.hold(300, 1));
    probe
        .wait_for("the first call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    // The second call finds the only slot taken and waits in line; then it
    // moves to a task of its own.
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

/// The same move, with a server that never answers: the moved call must
/// still fail at its own deadline, not stay pending for ever.
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

/// The same move happens with no user trickery: on a current-thread
/// runtime the server polls a handler once in its connection's driver, then
/// moves it to a task of its own. A handler whose downstream call waits in
/// line at its client's cap during that first poll must still be woken by
/// the downstream reply, so the relay's caller gets the answer in
/// milliseconds, not DeadlineExceeded.
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
// Leaving the line.

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
/// the server is shutting down and accepts no new connection, so they hear
/// that the connection was refused, and that they did not run), long before
/// the call holding the slot ends with the grace period; none of them runs
/// on the draining server.
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
        let err = outcome.unwrap_err();
        assert!(matches!(err, rpc::Error::Io { .. }), "{err:?}");
        assert!(!err.may_have_run() && err.is_retryable(), "{err:?}");
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
/// request never went out); one that gives up in flight sends one Cancel,
/// so the server drops its handler. Played against a hand-written server to
/// see the client's frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_callers_that_gave_up_in_flight_send_a_cancel() {
    let (client, mut peer, _listener) = client_and_peer(1).await;
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
