//! Deadlines and cancellation: the server enforces the caller's budget,
//! budgets propagate through call chains, and a dropped call or a closed
//! connection drops the handler. Tests through generated clients run over
//! each transport (TCP, Unix sockets, in-memory); those that play a peer by
//! hand run over TCP.

#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::probe::*;
use support::raw::{self, RawConn};
use support::transport::{connect, over_all_transports};

/// Generous bound for things that should happen "promptly" (they take
/// milliseconds; the machine may be busy).
const PROMPTLY: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_drops_a_handler_when_its_budget_runs_out_and_replies_deadline_exceeded() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    // A raw peer that never cancels: only the server's own deadline can end it.
    let mut peer = RawConn::handshake(server.local_addr()).await;
    let sent = Instant::now();
    peer.send(&raw::hold(7, Duration::from_millis(300), u64::MAX, 1u32))
        .await;
    let reply = peer.next_reply(Duration::from_secs(10)).await.unwrap();
    let took = sent.elapsed();
    assert_eq!(reply.call_id, 7);
    assert_eq!(
        reply.status(),
        raw::status::DEADLINE_EXCEEDED,
        "{}",
        reply.message()
    );
    assert!(took >= Duration::from_millis(300), "replied after {took:?}");
    probe
        .wait_for("the handler to be dropped", PROMPTLY, |p| p.dropped() == 1)
        .await;
    assert_eq!(probe.completed(), 0);
    // The connection goes on.
    peer.send(&raw::request(
        8,
        "Calculator.add",
        Duration::from_secs(5),
        &raw::args(&(2i64, 3i64)),
    ))
    .await;
    let reply = peer.next_reply(Duration::from_secs(10)).await.unwrap();
    assert_eq!((reply.call_id, reply.value::<i64>()), (8, 5));
}

over_all_transports!(
    a_caller_past_its_deadline_gets_deadline_exceeded_not_a_disconnect_or_a_hang,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_caller_past_its_deadline_gets_deadline_exceeded_not_a_disconnect_or_a_hang(
    transport: Transport,
) {
    let (server, probe) = start_probe_over(transport, rpc::Server::builder()).await;
    let client = probe_client_at(server.address()).await;
    let quick = client.with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), quick.hold(u64::MAX, 1))
        .await
        .expect("the call hung past its deadline")
        .unwrap_err();
    assert!(
        matches!(
            err,
            rpc::Error::DeadlineExceeded {
                method: "Probe.hold",
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    probe
        .wait_for("the handler to be dropped", PROMPTLY, |p| p.dropped() == 1)
        .await;
    assert_eq!(
        client.hold(1, 9).await.unwrap(),
        9,
        "the connection is still fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_clamps_a_budget_to_its_maximum() {
    let (server, _) = start_probe(rpc::Server::builder().max_budget(Duration::from_secs(2))).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    // u64::MAX µs: half a million years.
    peer.send(&raw::request(
        1,
        "Probe.seen",
        Duration::MAX,
        &raw::args(&()),
    ))
    .await;
    let seen: Seen = peer
        .next_reply(Duration::from_secs(10))
        .await
        .unwrap()
        .value();
    // Clamped to the 2 s maximum, not refused or cut to nothing.
    assert!(
        seen.remaining_us <= 2_000_000 && seen.remaining_us > 1_000_000,
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_gives_the_handler_its_deadline_peer_and_call_id() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    let local = peer.stream.local_addr().unwrap();
    peer.send(&raw::request(
        4242,
        "Probe.seen",
        Duration::from_secs(5),
        &raw::args(&()),
    ))
    .await;
    let seen: Seen = peer
        .next_reply(Duration::from_secs(10))
        .await
        .unwrap()
        .value();
    assert_eq!(seen.call_id, 4242);
    assert_eq!(seen.peer, Some(local));
    assert_eq!(seen.method, "Probe.seen");
    assert!(
        seen.remaining_us > 2_500_000 && seen.remaining_us <= 5_000_000,
        "{seen:?}"
    );

    // Through a generated client, the budget is the handle's timeout.
    let client = probe_client(server.local_addr()).await;
    let seen = client
        .with_timeout(Duration::from_secs(5))
        .seen()
        .await
        .unwrap();
    assert!(
        seen.remaining_us > 0 && seen.remaining_us <= 5_000_000,
        "not the default 30 s: {seen:?}"
    );
    assert_eq!(seen.peer.map(|p| p.ip()), Some(local.ip()));
}

/// One hop of a call chain: A calls B calls C.
#[rpc::service]
trait Hop {
    /// The budget (µs) each server on the chain saw, this one first.
    async fn budgets(&self) -> Vec<u64>;
    /// Never returns at the end of the chain; a hop passes on what the next
    /// one failed with.
    async fn stall(&self) -> Result<u32, String>;
}

struct HopImpl {
    next: Option<HopClient>,
    stalled: Arc<ProbeState>,
}

impl Hop for HopImpl {
    async fn budgets(&self) -> Vec<u64> {
        let mine = rpc::context::current().remaining().as_micros() as u64;
        let mut all = vec![mine];
        if let Some(next) = &self.next {
            all.extend(next.budgets().await.expect("the next hop failed"));
        }
        all
    }

    async fn stall(&self) -> Result<u32, String> {
        match &self.next {
            Some(next) => next.stall().await.map_err(|e| e.to_string())?,
            // The end of the chain holds a probe handler until dropped.
            None => Ok(ProbeImpl(self.stalled.clone()).hold(u64::MAX, 0).await),
        }
    }
}

over_all_transports!(
    a_budget_propagates_from_a_through_b_to_c,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_budget_propagates_from_a_through_b_to_c(transport: Transport) {
    let stalled = Arc::new(ProbeState::default());
    let mut next = None;
    let mut servers = Vec::new();
    for _ in 0..3 {
        let server = transport
            .serve(rpc::Server::builder().add_service(HopServer::new(HopImpl {
                next: next.take(),
                stalled: stalled.clone(),
            })))
            .await;
        // The hop clients keep the default 30 s timeout: only inheritance can
        // bring their budget under 300 ms.
        next = Some(HopClient::new(connect(server.address()).await));
        servers.push(server);
    }
    let a = next.unwrap().with_timeout(Duration::from_millis(300));

    let seen = a.budgets().await.unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0] <= 300_000, "A saw {seen:?}");
    assert!(
        seen[0] >= seen[1] && seen[1] >= seen[2] && seen[2] > 0,
        "each hop sees at most what is left: {seen:?}"
    );

    // When the budget runs out, the caller hears so at once (from its own
    // deadline, or a hop's failure passed up the chain, whichever is first)
    // and the whole chain lets go, down to C.
    let started = Instant::now();
    let outcome = a.stall().await;
    let took = started.elapsed();
    match outcome {
        Err(rpc::Error::DeadlineExceeded { .. }) => {}
        Ok(Err(inner)) => assert!(inner.contains("deadline exceeded"), "{inner}"),
        other => panic!("{other:?}"),
    }
    assert!(
        took < Duration::from_secs(5),
        "300 ms budget, failed after {took:?}"
    );
    stalled
        .wait_for("C's handler to be dropped", PROMPTLY, |p| {
            p.started() == 1 && p.dropped() == 1
        })
        .await;
}

over_all_transports!(
    dropping_a_call_future_drops_the_handler_promptly,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn dropping_a_call_future_drops_the_handler_promptly(transport: Transport) {
    let (server, probe) = start_probe_over(transport, rpc::Server::builder()).await;
    let client = probe_client_at(server.address()).await;
    // The default 30 s deadline is far away: only Cancel can stop the handler.
    let call = tokio::spawn(client.hold(u64::MAX, 1));
    probe
        .wait_for("the handler to start", PROMPTLY, |p| p.started() == 1)
        .await;
    call.abort();
    probe
        .wait_for("the handler to be dropped", PROMPTLY, |p| p.dropped() == 1)
        .await;

    // A future dropped by a timeout of the caller's own is cancelled too.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), client.hold(u64::MAX, 2)).await;
    assert!(gave_up.is_err());
    probe
        .wait_for("the second handler to be dropped", PROMPTLY, |p| {
            p.dropped() == 2
        })
        .await;
    assert_eq!(probe.completed(), 0);
    assert_eq!(
        client.hold(1, 3).await.unwrap(),
        3,
        "the connection is fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_connection_drops_all_of_its_handlers() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    for id in 1..=5 {
        peer.send(&raw::hold(id, Duration::from_secs(60), u64::MAX, id as u32))
            .await;
    }
    probe
        .wait_for("five handlers to start", PROMPTLY, |p| p.started() == 5)
        .await;
    // Another connection's handler must survive.
    let other = probe_client(server.local_addr()).await;
    let survivor = tokio::spawn(other.hold(1_000, 6));
    probe
        .wait_for("the other handler to start", PROMPTLY, |p| p.started() == 6)
        .await;
    drop(peer);
    probe
        .wait_for("the five handlers to be dropped", PROMPTLY, |p| {
            p.dropped() == 5
        })
        .await;
    assert_eq!(survivor.await.unwrap().unwrap(), 6);
    assert_eq!(probe.dropped(), 5);
}

over_all_transports!(
    a_timeout_of_duration_max_means_no_deadline_not_a_panic,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_timeout_of_duration_max_means_no_deadline_not_a_panic(transport: Transport) {
    let (server, _) = start_probe_over(transport, rpc::Server::builder()).await;
    let forever = probe_client_at(server.address())
        .await
        .with_timeout(Duration::MAX);
    assert_eq!(forever.hold(1, 1).await.unwrap(), 1);
    // The server clamps the budget it honours (10 min by default).
    let seen = forever.seen().await.unwrap();
    assert!(
        seen.remaining_us > 590_000_000 && seen.remaining_us <= 600_000_000,
        "{seen:?}"
    );
}
