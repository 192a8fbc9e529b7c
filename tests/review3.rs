//! Review of 4fcbef4..53e54ca: client deadlines stamped per batch (one
//! clock read per batch, not per call), a call holding only its connection
//! (reaching its channel through it), and the server's thread-local handler
//! context, small requests copied out of the read buffer and its lock-free
//! duplicate-id check.
//!
//! Most client tests play the server by hand (`support::hand`). No test
//! sleeps to wait for an event that has a signal; the sleeps here are part
//! of the scenario (time that must pass between two calls).

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use support::hand::*;
use support::probe::*;
use support::raw::{self, RawConn};
use support::{ShapesClient, start_server};

// ---------------------------------------------------------------------------
// Deadlines stamped per batch.

/// A call with a short timeout made while a call with a long one is
/// pending (and stamped, so the reader's timer is armed for the long one):
/// its batch's stamp moves the timer earlier, and it fails at its own
/// deadline, not the long call's.
#[tokio::test]
async fn a_short_call_behind_a_long_one_fails_at_its_own_deadline() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let long = tokio::spawn(client.with_timeout(Duration::from_secs(20)).hold(0, 1));
    // Written, so taken and stamped: the timer is armed for 20 s from now.
    let long_req = next_request(&mut peer).await;
    let budget = Duration::from_millis(300);
    let started = Instant::now();
    fails_at_its_deadline(
        "the short call",
        client.with_timeout(budget).hold(0, 2),
        budget,
        started,
    )
    .await;
    // Its request went out, then its Cancel; not the long call's.
    let short_req = next_request(&mut peer).await;
    let cancel = peer.next_frame(PROMPTLY).await.unwrap();
    assert_eq!(
        (cancel.kind, cancel.call_id),
        (raw::kind::CANCEL, short_req.id),
        "{cancel:?}"
    );
    // The long call is still waiting, and still answered.
    peer.send(&ok(long_req.id, &1u32)).await;
    assert_eq!(within("the long call", long).await.unwrap().unwrap(), 1);
}

/// The reader's timer goes idle whenever nothing stamped is pending (it
/// fired, and the calls left had no stamp yet, or there were none); the
/// next call's stamp must arm it again. Round after round on one
/// connection, a lone call fails at its deadline, and one call made right
/// after the previous expired (no stamp pending when the timer fired) too.
#[tokio::test]
async fn lone_calls_on_an_idle_connection_each_fail_at_their_deadline() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    for round in 0..3u32 {
        let budget = Duration::from_millis(150 + 50 * u64::from(round));
        let started = Instant::now();
        let call = client.with_timeout(budget).hold(0, round);
        fails_at_its_deadline("a lone call", call, budget, started).await;
        // Its request, then its Cancel.
        let req = next_request(&mut peer).await;
        let cancel = peer.next_frame(PROMPTLY).await.unwrap();
        assert_eq!((cancel.kind, cancel.call_id), (raw::kind::CANCEL, req.id));
    }
    // Nothing left in flight: the connection still takes calls.
    let next = tokio::spawn(client.hold(0, 9));
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, &9u32)).await;
    assert_eq!(within("the next call", next).await.unwrap().unwrap(), 9);
}

/// A call's deadline counts from its own batch's stamp, not from an earlier
/// batch's. A call made 600 ms after the previous batch, with a 1 s budget,
/// must not fail before 1 s from when it was made, even when the reader's
/// timer fires for another call in the meantime (the scan that would find
/// a deadline resolved from the wrong stamp).
#[tokio::test]
async fn a_call_made_long_after_the_previous_batch_gets_its_own_batchs_time() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let first = tokio::spawn(client.with_timeout(Duration::from_secs(20)).hold(0, 1));
    let first_req = next_request(&mut peer).await;
    // The scenario: time passes between two batches.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let budget = Duration::from_secs(1);
    let started = Instant::now();
    let second = tokio::spawn(client.with_timeout(budget).hold(0, 2));
    let second_req = next_request(&mut peer).await;
    // A short call in a batch of its own: its expiry makes the reader scan
    // what is pending and re-arm for the earliest deadline left.
    let short = Duration::from_millis(100);
    let short_started = Instant::now();
    fails_at_its_deadline(
        "the short call",
        client.with_timeout(short).hold(0, 3),
        short,
        short_started,
    )
    .await;
    fails_at_its_deadline(
        "the second call",
        async { second.await.unwrap() },
        budget,
        started,
    )
    .await;
    // Cancels for the short call and the second one, not the first.
    for _ in 0..3 {
        let f = peer.next_frame(PROMPTLY).await.unwrap();
        if f.kind == raw::kind::CANCEL && f.call_id == second_req.id {
            break;
        }
        assert!(
            f.kind == raw::kind::CANCEL || f.kind == raw::kind::REQUEST,
            "{f:?}"
        );
        assert_ne!(f.call_id, first_req.id, "the first call was cancelled");
    }
    peer.send(&ok(first_req.id, &1u32)).await;
    assert_eq!(within("the first call", first).await.unwrap().unwrap(), 1);
}

/// More calls pending at once, each sent in a batch of its own a little
/// after the one before, than the connection keeps batch times for (64):
/// the oldest times are folded into their calls. Each call still fails at
/// its own deadline, counted from its own batch: none early, none late.
#[tokio::test]
async fn calls_pending_across_more_batches_than_are_kept_each_fail_at_their_own_deadline() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(1000).await;
    let budget = Duration::from_secs(3);
    let client = client.with_timeout(budget);
    let mut calls = Vec::new();
    for i in 0..80u32 {
        let started = Instant::now();
        let call = client.hold(0, i);
        calls.push(tokio::spawn(async move {
            fails_at_its_deadline("a call of its own batch", call, budget, started).await;
        }));
        // Written, so taken (and stamped) alone; the scenario: some time
        // passes before the next.
        next_request(&mut peer).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let reading =
        tokio::spawn(
            async move { while peer.next_frame(Duration::from_secs(30)).await.is_ok() {} },
        );
    for call in calls {
        call.await.unwrap();
    }
    reading.abort();
}

/// Waves of concurrent callers on a multi-thread runtime (the writer on
/// another worker than most of them), each wave made a while after the
/// last, with budgets of their own; the server answers none. Every call
/// fails with DeadlineExceeded, none before its budget from when it was
/// made, none long after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_of_callers_on_a_multi_thread_runtime_each_fail_at_their_own_deadline() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(10_000).await;
    // The server reads everything and answers nothing.
    let reading =
        tokio::spawn(
            async move { while peer.next_frame(Duration::from_secs(30)).await.is_ok() {} },
        );
    let mut calls = Vec::new();
    for wave in 0..4u64 {
        for i in 0..25u64 {
            let budget = Duration::from_millis(300 + 20 * i);
            let client = client.with_timeout(budget);
            let started = Instant::now();
            calls.push(tokio::spawn(async move {
                let call = client.hold(0, (wave * 100 + i) as u32);
                fails_at_its_deadline("a call of a wave", call, budget, started).await;
            }));
        }
        // The scenario: time passes between waves (longer than the first
        // budgets, so some calls expire while the next wave is made).
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    for call in calls {
        call.await.unwrap();
    }
    reading.abort();
}

/// A call refused by a server shutting down goes to another connection
/// with the deadline it had, counted from when it was first sent: the
/// budget it carries there is what was left (its deadline there is the
/// same instant), not a whole budget from the refusal.
#[tokio::test]
async fn a_refused_call_keeps_its_deadline_on_the_next_connection() {
    let _watchdog = watchdog();
    let (client, mut old, listener) = client_and_peer(8).await;
    let budget = Duration::from_millis(1500);
    let started = Instant::now();
    let call = tokio::spawn(client.with_timeout(budget).hold(0, 1));
    let req = next_request(&mut old).await;
    assert_eq!(req.budget, budget);
    // The scenario: the server holds the request a while before refusing it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    old.send(&raw::goaway(raw::goaway::SHUTDOWN, "draining"))
        .await;
    old.send(&raw::refusal(
        req.id,
        raw::status::SHUTTING_DOWN,
        "draining",
    ))
    .await;
    let mut new = accept(&listener).await;
    let again = next_request(&mut new).await;
    assert_eq!(again.args, req.args);
    let spent = started.elapsed();
    assert!(
        again.budget <= budget.saturating_sub(Duration::from_millis(650)),
        "sent again with {:?} of a {budget:?} budget, {spent:?} after it was made",
        again.budget
    );
    // Not answered there either: it fails at its first deadline.
    fails_at_its_deadline(
        "the refused call",
        async { call.await.unwrap() },
        budget,
        started,
    )
    .await;
}

// ---------------------------------------------------------------------------
// A call that holds only its connection.

/// A connection made by a reconnect is given its channel too: a call made
/// on a handle that knows that connection (so the call holds only the
/// connection), refused there by a server shutting down, goes on to a third
/// connection through the channel, and is answered there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_a_reconnected_connection_can_still_go_elsewhere() {
    let _watchdog = watchdog();
    let (client, first, listener) = client_and_peer(8).await;
    // The first connection dies under a call; the next call reconnects.
    let mut second = a_dead_connection_and_a_reconnect(&client, first, &listener).await;
    // A clone made now knows the second connection: its calls hold only it.
    let knows_second = client.clone();
    drop(client);
    // Made before the GoAway, first polled after the call below moved on.
    let early = knows_second.hold(0, 3);
    let call = tokio::spawn(knows_second.hold(0, 2));
    let req = next_request(&mut second).await;
    second
        .send(&raw::goaway(raw::goaway::SHUTDOWN, "draining"))
        .await;
    second
        .send(&raw::refusal(
            req.id,
            raw::status::SHUTTING_DOWN,
            "draining",
        ))
        .await;
    let mut third = accept(&listener).await;
    let again = next_request(&mut third).await;
    assert_eq!(again.args, req.args);
    third.send(&ok(again.id, &2u32)).await;
    assert_eq!(within("the refused call", call).await.unwrap().unwrap(), 2);
    // The early call, first polled now, goes there too (through the channel).
    let early = tokio::spawn(early);
    let req = next_request(&mut third).await;
    third.send(&ok(req.id, &3u32)).await;
    assert_eq!(within("the early call", early).await.unwrap().unwrap(), 3);
}

// ---------------------------------------------------------------------------
// The server: handler context, small requests, duplicate ids.

#[rpc::service]
trait Ctx {
    /// Whether a task spawned by the handler (and run on this runtime,
    /// perhaps on this very thread) sees no handler context.
    async fn spawned_sees_none(&self) -> bool;
    /// The call id the context gives, after the handler waited a few times
    /// (and perhaps moved thread).
    async fn id_after_waits(&self) -> u64;
}

struct CtxImpl;

impl Ctx for CtxImpl {
    async fn spawned_sees_none(&self) -> bool {
        assert!(rpc::context::try_current().is_some());
        let seen = tokio::spawn(async { rpc::context::try_current().is_none() });
        // Give the spawned task its turn while this handler waits.
        let seen = seen.await.unwrap();
        seen && rpc::context::try_current().is_some()
    }

    async fn id_after_waits(&self) -> u64 {
        let before = rpc::context::current().call_id();
        for _ in 0..3 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = rpc::context::current().call_id();
        assert_eq!(before, after);
        after
    }
}

async fn context_stays_with_its_handler() {
    let server = rpc::Server::builder()
        .add_service(CtxServer::new(CtxImpl))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = CtxClient::connect(server.local_addr()).await.unwrap();
    for _ in 0..5 {
        assert!(
            within("spawned_sees_none", client.spawned_sees_none())
                .await
                .unwrap(),
            "a task spawned by a handler saw the handler's context"
        );
    }
    let calls: Vec<_> = (0..8).map(|_| client.id_after_waits()).collect();
    let ids = within("id_after_waits", futures::future::join_all(calls)).await;
    let mut ids: Vec<u64> = ids.into_iter().map(Result::unwrap).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "handlers saw each other's call ids");
    // And outside any handler, nothing.
    assert!(rpc::context::try_current().is_none());
    server.shutdown().await;
}

/// On a current-thread runtime the server polls a handler first in its
/// driver, then in a task of its own: the context is set for each poll
/// and gone between them, so a task the handler spawns (run on the same
/// thread) does not see it, and a handler sees its own call after waiting.
#[tokio::test]
async fn the_handler_context_stays_with_its_handler_on_a_current_thread_runtime() {
    let _watchdog = watchdog();
    context_stays_with_its_handler().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_context_stays_with_its_handler_on_a_multi_thread_runtime() {
    let _watchdog = watchdog();
    context_stays_with_its_handler().await;
}

/// Requests of every size around the server's in-place copy (a payload of
/// up to 38 bytes, 16 of them the request's head), sent together so that
/// many arrive in one read: each handler gets its own arguments intact.
async fn small_requests_arrive_intact() {
    let server = start_server().await;
    let client = ShapesClient::connect(server.local_addr()).await.unwrap();
    let data = |n: usize| (0..n).map(|i| (i * 7 + n) as u8).collect::<Vec<u8>>();
    for _ in 0..3 {
        let calls: Vec<_> = (0..=64).map(|n| client.echo(data(n))).collect();
        let replies = within("the echoes", futures::future::join_all(calls)).await;
        for (n, reply) in replies.into_iter().enumerate() {
            assert_eq!(reply.unwrap(), data(n), "{n} bytes");
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn small_requests_arrive_intact_on_a_current_thread_server() {
    let _watchdog = watchdog();
    small_requests_arrive_intact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_requests_arrive_intact_on_a_multi_thread_server() {
    let _watchdog = watchdog();
    small_requests_arrive_intact().await;
}

/// A duplicate of an in-flight call id whose handler would finish in its
/// first poll (on a current-thread server, run in the driver before any
/// entry is made for it) is caught before it runs: a protocol error, and
/// no Response for it.
#[tokio::test]
async fn a_duplicate_id_of_a_quick_call_is_caught_before_it_runs() {
    let _watchdog = watchdog();
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    peer.send(&raw::hold(5, Duration::from_secs(60), u64::MAX, 5u32))
        .await;
    probe
        .wait_for("the held call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    // Answered at once (its first poll): a quick call of another id is fine.
    let add = |id| {
        raw::request(
            id,
            "Calculator.add",
            Duration::from_secs(5),
            &raw::args(&(2i64, 3i64)),
        )
    };
    peer.send(&add(6)).await;
    let reply = peer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!((reply.call_id, reply.value::<i64>()), (6, 5));
    // The same, with the held call's id.
    peer.send(&add(5)).await;
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    assert!(
        frames.iter().all(|f| f.kind != raw::kind::RESPONSE),
        "the duplicate ran: {frames:?}"
    );
    let goaway = frames.last().expect("closed without a GoAway");
    assert_eq!(goaway.goaway_reason(), raw::goaway::PROTOCOL, "{frames:?}");
    assert!(goaway.message().contains("already in flight"), "{frames:?}");
    probe
        .wait_for("the held call to be dropped", PROMPTLY, |p| {
            p.dropped() == 1
        })
        .await;
    // Once the in-flight calls are gone, the id is free again (the count
    // that lets the check skip its lock went back to zero with them).
    let mut peer = RawConn::handshake(server.local_addr()).await;
    for round in 0..3 {
        peer.send(&add(5)).await;
        let reply = peer.next_reply(PROMPTLY).await.unwrap();
        assert_eq!(
            (reply.call_id, reply.value::<i64>()),
            (5, 5),
            "round {round}"
        );
    }
    server.shutdown().await;
}
