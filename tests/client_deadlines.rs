//! The client's own deadlines, against a server played by hand
//! (`support::hand`) that leaves the calls unanswered: every call fails with
//! DeadlineExceeded at its own deadline, counted from when it was made,
//! never before and not long after, whatever else is pending on the connection (a longer call, many
//! calls sent one after another, waves of callers on several threads); a call refused
//! and sent again keeps its first deadline; and a call made too late to be
//! worth sending is not sent at all.
//!
//! The client keeps one timer per connection, armed for the earliest
//! deadline it has seen since it last fired, not one per call. These tests
//! check that this never makes a call fail early or late.
//!
//! The sleeps here are part of each scenario (time that must pass between
//! two calls), not waits for an event that has a signal.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use support::hand::*;
use support::raw::{self, RawConn};

// ---------------------------------------------------------------------------
// Deadlines with one timer per connection.

/// A call with a short timeout made while a call with a long one is
/// pending (so the reader's timer is armed for the long one): the short
/// call moves the timer earlier, and it fails at its own
/// deadline, not the long call's.
#[tokio::test]
async fn a_short_call_behind_a_long_one_fails_at_its_own_deadline() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let long = tokio::spawn(client.with_timeout(Duration::from_secs(20)).hold(0, 1));
    // Written: the timer is armed for 20 s from now.
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

/// The reader's timer goes idle whenever it fires with nothing left
/// pending; the next call must arm it again. Round after round on one
/// connection, a lone call fails at its deadline, and so does one made
/// right after the previous one expired.
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

/// A call's deadline counts from when it was made, not from when an
/// earlier call was. A call made 600 ms after the previous one, with a 1 s
/// budget, must not fail before 1 s from when it was made, even when the
/// reader's timer fires for another call in the meantime (the scan that
/// would find a wrong deadline).
#[tokio::test]
async fn a_call_made_long_after_the_previous_one_counts_from_its_own_start() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let first = tokio::spawn(client.with_timeout(Duration::from_secs(20)).hold(0, 1));
    let first_req = next_request(&mut peer).await;
    // The scenario: time passes between two calls.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let budget = Duration::from_secs(1);
    let started = Instant::now();
    let second = tokio::spawn(client.with_timeout(budget).hold(0, 2));
    let second_req = next_request(&mut peer).await;
    // A short call sent alone: its expiry makes the reader scan
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

/// Many calls pending at once, each sent a little after the one before:
/// each fails at its own deadline, counted from its own start: none early,
/// none late.
#[tokio::test]
async fn eighty_calls_sent_one_after_another_each_fail_at_their_own_deadline() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(1000).await;
    let budget = Duration::from_secs(3);
    let client = client.with_timeout(budget);
    let mut calls = Vec::new();
    for i in 0..80u32 {
        let started = Instant::now();
        let call = client.hold(0, i);
        calls.push(tokio::spawn(async move {
            fails_at_its_deadline("a call sent alone", call, budget, started).await;
        }));
        // Written alone; the scenario: some time passes before the next.
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

// ---------------------------------------------------------------------------
// A refused call.

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
// A deadline inherited from a handler.

/// A call made inside a handler inherits the handler's deadline. If that
/// deadline passed before the call's first poll, on a downstream connection
/// that is draining (so the call would otherwise wait for a new
/// connection): DeadlineExceeded at once, and the request is sent nowhere;
/// no reconnect is started for it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_inherited_deadline_sends_nothing_even_by_the_general_path() {
    let (downstream, mut old, listener) = client_and_peer(8).await;
    old.send(&raw::goaway(raw::goaway::SHUTDOWN, "draining"))
        .await;
    assert!(sync(&mut old, 1).await.is_empty());
    // The downstream client may open a new connection: served by hand.
    let new = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        RawConn::accept_handshake(stream).await
    });
    relay_a_call_made_too_late(downstream).await;
    let sent = sync(&mut old, 2).await;
    assert!(sent.is_empty(), "sent on the drained connection: {sent:?}");
    assert!(
        !new.is_finished(),
        "a connection was opened for a call that was out of time"
    );
}
