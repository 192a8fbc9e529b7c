//! The hand-written call future (`rpc::client::Call`): what it sends and
//! when, what it gives back (Cancel, its slot under the in-flight cap), how
//! it survives being moved between tasks, how it follows a server that
//! refuses it while shutting down, and what forged or stray Response ids do
//! to it. Most tests play the server by hand over TCP (`support::hand`, on
//! `support::raw`) to see exactly the frames the client sends.
//!
//! Where a test must know that the client has handled everything sent to it
//! so far, it sends a Ping and waits for the Pong ([`sync`]): the client's
//! reader handles frames in order, and anything the client queued before it
//! answered is on the wire before the Pong. No test sleeps to wait for an
//! event that has a signal.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use support::hand::*;
use support::probe::*;
use support::raw::{self, RawConn, RawFrame};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Spawns `fut` and reports once the new task has polled it (so the waker
/// it left is the new task's).
fn spawn_polled<F>(mut fut: Pin<Box<F>>) -> (JoinHandle<F::Output>, oneshot::Receiver<()>)
where
    F: Future + Send + ?Sized + 'static,
    F::Output: Send,
{
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let first = futures::poll!(&mut fut);
        let _ = tx.send(());
        match first {
            Poll::Ready(v) => v,
            Poll::Pending => fut.await,
        }
    });
    (task, rx)
}

/// A new call on `client` goes out and completes: the connection is fine
/// (nothing it did before left it stuck, or its cap used up).
async fn a_next_call_completes(client: &ProbeClient, peer: &mut RawConn) {
    let next = tokio::spawn(client.hold(0, 2));
    let req = next_request(peer).await;
    peer.send(&ok(req.id, &2u32)).await;
    assert_eq!(within("the next call", next).await.unwrap().unwrap(), 2);
}

// ---------------------------------------------------------------------------
// Dropping a call.

/// A call future does nothing until polled: dropped unpolled, it sends no
/// Request (nor a Cancel) and takes no slot under the in-flight cap.
#[tokio::test]
async fn a_call_dropped_before_its_first_poll_sends_nothing_and_takes_no_slot() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(1).await;
    for tag in 0..3 {
        drop(client.hold(u64::MAX, tag));
    }
    drop(Box::pin(client.with_timeout(Duration::ZERO).hold(0, 9)));
    let call = tokio::spawn(client.hold(0, 7));
    let req = next_request(&mut peer).await;
    assert_eq!(
        req.args,
        hold_args(0, 7),
        "a dropped, unpolled call went out"
    );
    assert_eq!(req.method, rpc::protocol::method_id("Probe.hold"));
    let before = sync(&mut peer, 1).await;
    assert!(before.is_empty(), "{before:?}");
    peer.send(&ok(req.id, &7u32)).await;
    assert_eq!(within("the call", call).await.unwrap().unwrap(), 7);
}

/// A call dropped while in flight sends exactly one Cancel for its id, and
/// its slot (the only one) goes to the caller waiting in line at once.
#[tokio::test]
async fn a_call_dropped_in_flight_sends_one_cancel_and_frees_its_slot() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(1).await;
    let mut first = Box::pin(client.hold(u64::MAX, 1));
    assert!(futures::poll!(&mut first).is_pending());
    let held = next_request(&mut peer).await;
    let (second, polled) = spawn_polled(Box::pin(client.hold(0, 2)));
    polled.await.unwrap();
    let before = sync(&mut peer, 1).await;
    assert!(
        before.is_empty(),
        "a call over the cap went out: {before:?}"
    );

    drop(first);
    let cancel = peer.next_frame(PROMPTLY).await.unwrap();
    assert_eq!(
        (cancel.kind, cancel.call_id),
        (raw::kind::CANCEL, held.id),
        "{cancel:?}"
    );
    let req = next_request(&mut peer).await;
    assert_eq!(req.args, hold_args(0, 2));
    assert_ne!(req.id, held.id, "an id reused while the server may hold it");
    peer.send(&ok(req.id, &2u32)).await;
    assert_eq!(within("the second call", second).await.unwrap().unwrap(), 2);
    let after = sync(&mut peer, 2).await;
    assert!(after.is_empty(), "a second Cancel, or more: {after:?}");
}

/// A call whose Response has arrived but was never taken (dropped before its
/// next poll) sends no Cancel and still gives its slot back.
#[tokio::test]
async fn a_call_dropped_with_its_reply_untaken_sends_no_cancel_and_frees_its_slot() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(1).await;
    let mut first = Box::pin(client.hold(0, 1));
    assert!(futures::poll!(&mut first).is_pending());
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, &1u32)).await;
    assert!(sync(&mut peer, 1).await.is_empty());
    drop(first);
    let after = sync(&mut peer, 2).await;
    assert!(after.is_empty(), "a Cancel for an answered call: {after:?}");
    let second = tokio::spawn(client.hold(0, 2));
    let req = next_request(&mut peer).await;
    assert_eq!(req.args, hold_args(0, 2));
    peer.send(&ok(req.id, &2u32)).await;
    assert_eq!(within("the second call", second).await.unwrap().unwrap(), 2);
}

/// A call past its deadline fails with DeadlineExceeded naming the budget it
/// was given, the server is told once (by the reader's timer, not again when
/// the call is dropped), and the slot is given back.
#[tokio::test]
async fn a_call_past_its_deadline_is_cancelled_once_and_reports_its_budget() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(1).await;
    let budget = Duration::from_millis(200);
    let call = tokio::spawn(client.with_timeout(budget).hold(u64::MAX, 1));
    let req = next_request(&mut peer).await;
    assert!(req.budget <= budget && req.budget > budget / 2, "{req:?}");
    let cancel = peer.next_frame(PROMPTLY).await.unwrap();
    assert_eq!((cancel.kind, cancel.call_id), (raw::kind::CANCEL, req.id));
    match within("the expired call", call).await.unwrap() {
        Err(rpc::Error::DeadlineExceeded { method, budget: b }) => {
            assert_eq!(method, "Probe.hold");
            assert_eq!(b, budget);
        }
        other => panic!("{other:?}"),
    }
    let after = sync(&mut peer, 1).await;
    assert!(after.is_empty(), "a second Cancel: {after:?}");
    a_next_call_completes(&client, &mut peer).await;
}

/// DESIGN: "the request carries the caller's remaining time budget". A call
/// starts when it is first polled, as an `async fn`'s work does: its own
/// timeout counts from then, and the budget sent is what it has left when
/// the request goes out. Made, then awaited 400 ms later, a 1 s call goes
/// out with (nearly) its whole second, and it still has that second: a
/// reply 700 ms after it went out (1.1 s after the call was made) reaches
/// it. (Counted from when the future was made, the budget would claim time
/// the caller no longer had.)
#[tokio::test]
async fn a_call_starts_at_its_first_poll_and_sends_the_budget_it_has_then() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let late = client.with_timeout(Duration::from_millis(1_000)).hold(0, 1);
    // The scenario, not a wait for an event: the caller does something else
    // before awaiting the call.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let late = tokio::spawn(late);
    let req = next_request(&mut peer).await;
    assert!(
        req.budget > Duration::from_millis(900) && req.budget <= Duration::from_millis(1_000),
        "made 400 ms before its first poll, a 1 s call was sent with a budget of {:?}",
        req.budget
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    peer.send(&ok(req.id, &1u32)).await;
    assert_eq!(within("the late call", late).await.unwrap().unwrap(), 1);
}

/// A call made inside a handler inherits the handler's deadline. If that
/// deadline has passed by the time the call is first polled, the call fails
/// with DeadlineExceeded and is never sent: it would only start a handler
/// for a caller that has given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_inherited_deadline_passed_before_its_first_poll_is_not_sent() {
    let _watchdog = watchdog();
    let (downstream, mut peer, _listener) = client_and_peer(8).await;
    relay_a_call_made_too_late(downstream).await;
    let sent: Vec<_> = sync(&mut peer, 1).await.iter().map(parse_or_kind).collect();
    assert!(sent.is_empty(), "sent after its deadline: {sent:?}");
}

/// A frame, briefly: a Request's id and budget, or another frame's kind and id.
fn parse_or_kind(f: &RawFrame) -> String {
    if f.kind == raw::kind::REQUEST {
        let r = parse_request(f);
        format!("Request {} with a budget of {:?}", r.id, r.budget)
    } else {
        format!("kind {} id {}", f.kind, f.call_id)
    }
}

/// A call future is `Send` and `Sync`, as the `async fn` it reads like would
/// be: it can be held by reference across an await in a spawned task, or
/// kept in a `Sync` struct.
/// Checked when this file compiles.
#[tokio::test]
async fn a_call_future_is_send_and_sync() {
    fn send_and_sync<T: Send + Sync + 'static>(_: &T) {}
    let (client, _peer, _listener) = client_and_peer(1).await;
    send_and_sync(&client.hold(0, 1));
}

// ---------------------------------------------------------------------------
// Moving a call between tasks.

/// In flight, polled first with a no-op waker, then moved to a task of its
/// own: the Response must wake the new task, not the waker of the first
/// poll (the call has no timer of its own that would save it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_moved_to_another_task_completes() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(4).await;
    let mut call = Box::pin(client.hold(0, 1));
    assert!((&mut call).now_or_never().is_none());
    let req = next_request(&mut peer).await;
    let (task, polled) = spawn_polled(call);
    polled.await.unwrap();
    peer.send(&ok(req.id, &1u32)).await;
    assert_eq!(within("the moved call", task).await.unwrap().unwrap(), 1);

    // The same, with the Response already in when it moves.
    let mut call = Box::pin(client.hold(0, 2));
    assert!(futures::poll!(&mut call).is_pending());
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, &2u32)).await;
    assert!(sync(&mut peer, 1).await.is_empty());
    let task = tokio::spawn(call);
    assert_eq!(within("the moved call", task).await.unwrap().unwrap(), 2);
}

/// Waiting in line (the general path), polled first with a no-op waker,
/// then moved: it is woken when the slot is free, goes out, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_in_line_moved_to_another_task_completes() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(1).await;
    let mut holder = Box::pin(client.hold(0, 1));
    assert!(futures::poll!(&mut holder).is_pending());
    let held = next_request(&mut peer).await;
    let mut waiting = Box::pin(client.hold(0, 2));
    assert!((&mut waiting).now_or_never().is_none());
    let (task, polled) = spawn_polled(waiting);
    polled.await.unwrap();
    peer.send(&ok(held.id, &1u32)).await;
    assert_eq!(within("the holder", holder).await.unwrap(), 1);
    let req = next_request(&mut peer).await;
    assert_eq!(req.args, hold_args(0, 2));
    peer.send(&ok(req.id, &2u32)).await;
    assert_eq!(within("the moved call", task).await.unwrap().unwrap(), 2);
}

// ---------------------------------------------------------------------------
// A server shutting down.

/// Two calls in flight on a connection (the cap) and a third in line; the
/// server sends GoAway, then refuses both with ShuttingDown, as a draining
/// server does when requests cross its GoAway. All three go to a new
/// connection, each once, with a fresh id there and its own arguments (one
/// request is large, shared with the writer rather than copied), and each
/// caller gets its own answer. The drained connection gets no Cancel for the
/// refused calls, and the client closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_after_goaway_sends_the_calls_to_another_connection() {
    let _watchdog = watchdog();
    let (client, mut old, listener) = client_and_peer(2).await;
    let text = "x".repeat(40 << 10);
    let small = tokio::spawn(client.hold(0, 1));
    let large = tokio::spawn(client.text(text.clone()));
    let first = [next_request(&mut old).await, next_request(&mut old).await];
    let (in_line, polled) = spawn_polled(Box::pin(client.hold(0, 3)));
    polled.await.unwrap();
    assert!(sync(&mut old, 1).await.is_empty(), "over the cap");

    old.send(&raw::goaway(raw::goaway::SHUTDOWN, "draining"))
        .await;
    for req in &first {
        old.send(&raw::refusal(
            req.id,
            raw::status::SHUTTING_DOWN,
            "draining",
        ))
        .await;
    }
    let mut new = accept(&listener).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let req = next_request(&mut new).await;
        ids.push(req.id);
        if req.args == hold_args(0, 1) || req.args == hold_args(0, 3) {
            let tag: u32 = if req.args == hold_args(0, 1) { 1 } else { 3 };
            new.send(&ok(req.id, &tag)).await;
        } else {
            let was = first
                .iter()
                .find(|r| r.args.len() > 1000)
                .expect("the large request went out first");
            assert_eq!(req.args, was.args, "the large request was not resent as is");
            assert!(
                req.budget <= was.budget,
                "{:?} > {:?}",
                req.budget,
                was.budget
            );
            new.send(&ok(req.id, &(text.len() as u64))).await;
        }
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "duplicate ids on the new connection");
    assert_eq!(within("the small call", small).await.unwrap().unwrap(), 1);
    assert_eq!(
        within("the large call", large).await.unwrap().unwrap(),
        text.len() as u64
    );
    assert_eq!(
        within("the call in line", in_line).await.unwrap().unwrap(),
        3
    );
    let after = sync(&mut new, 2).await;
    assert!(after.is_empty(), "sent twice: {after:?}");

    let (frames, closed) = old.frames_until_closed(PROMPTLY).await;
    assert!(
        frames.iter().all(|f| f.kind == raw::kind::PONG),
        "on the drained connection after the refusals: {frames:?}"
    );
    assert!(matches!(closed, raw::Closed::Eof), "{closed:?}");
}

/// A ShuttingDown reply on a connection that had no GoAway (so still takes
/// calls) is the caller's error: not sent again.
#[tokio::test]
async fn a_shutting_down_reply_without_goaway_is_the_callers_error() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(4).await;
    let call = tokio::spawn(client.hold(0, 1));
    let req = next_request(&mut peer).await;
    peer.send(&raw::refusal(req.id, raw::status::SHUTTING_DOWN, "no"))
        .await;
    let outcome = within("the refused call", call).await.unwrap();
    assert!(
        matches!(
            outcome,
            Err(rpc::Error::ShuttingDown {
                method: "Probe.hold",
                mid_stream: false,
            })
        ),
        "{outcome:?}"
    );
    assert!(sync(&mut peer, 1).await.is_empty(), "sent again");
    a_next_call_completes(&client, &mut peer).await;
}

/// Refused after GoAway with no server left to go to: ShuttingDown (it did
/// not run, retrying is safe), not Disconnected; whatever the GoAway's
/// reason (a server draining an idle connection refuses a request that
/// crossed its GoAway the same way).
#[tokio::test]
async fn a_refused_call_with_nowhere_to_go_fails_with_shutting_down() {
    let _watchdog = watchdog();
    for reason in [raw::goaway::SHUTDOWN, raw::goaway::IDLE] {
        let (client, mut peer, listener) = client_and_peer(4).await;
        let call = tokio::spawn(client.hold(0, 1));
        let req = next_request(&mut peer).await;
        drop(listener);
        peer.send(&raw::goaway(reason, "draining")).await;
        peer.send(&raw::refusal(
            req.id,
            raw::status::SHUTTING_DOWN,
            "draining",
        ))
        .await;
        let outcome = within("the refused call", call).await.unwrap();
        assert!(
            matches!(outcome, Err(rpc::Error::ShuttingDown { .. })),
            "GoAway reason {reason}: {outcome:?}"
        );
    }
}

/// The connection dying under a call in flight: Disconnected (it may have
/// run), and the next call reconnects.
#[tokio::test]
async fn a_call_in_flight_on_a_dead_connection_fails_with_disconnected() {
    let _watchdog = watchdog();
    let (client, peer, listener) = client_and_peer(4).await;
    a_dead_connection_and_a_reconnect(&client, peer, &listener).await;
}

/// A request larger than the server accepts fails alone with FrameTooLarge,
/// is never sent, and takes no slot under the cap (of one).
#[tokio::test]
async fn a_request_over_the_servers_limit_fails_alone_and_keeps_no_slot() {
    let _watchdog = watchdog();
    let (listener, addr) = listen().await;
    let server = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut peer = RawConn::from_stream(stream);
        let hello = peer.next_frame(PROMPTLY).await.unwrap();
        assert_eq!(hello.kind, raw::kind::HELLO);
        let mut p = b"ZRPC".to_vec();
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&4096u32.to_be_bytes());
        peer.send(&raw::frame(raw::kind::HELLO, 0, 0, &p)).await;
        peer
    };
    let builder = rpc::Channel::builder().max_in_flight(1);
    let (channel, mut peer) = tokio::join!(builder.connect(addr), server);
    let client = ProbeClient::new(channel.unwrap());
    for _ in 0..3 {
        match within("the large call", client.text("y".repeat(5000))).await {
            Err(rpc::Error::FrameTooLarge { what, limit, .. }) => {
                assert_eq!((what, limit), ("request", 4096));
            }
            other => panic!("{other:?}"),
        }
    }
    let call = tokio::spawn(client.hold(0, 1));
    let req = next_request(&mut peer).await;
    assert_eq!(req.args, hold_args(0, 1), "the large request went out");
    peer.send(&ok(req.id, &1u32)).await;
    assert_eq!(within("the small call", call).await.unwrap().unwrap(), 1);
}

// ---------------------------------------------------------------------------
// Ids.

/// Responses for ids the client is not waiting for change nothing and break
/// nothing: stray ids, zero, the id of a call already answered (a duplicate),
/// the id of a call that gave up, and forged ids that name a live call's
/// slot (same low 32 bits) with other high bits. Sent back to back, so most
/// are taken from the read buffer in one go (small ones copied out, large
/// ones not). The live call stays pending until its own Response comes.
#[tokio::test]
async fn stray_duplicate_and_forged_response_ids_change_nothing() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    // A call that gives up, then one answered, then the live one.
    let mut gave_up = Box::pin(client.hold(u64::MAX, 0));
    assert!(futures::poll!(&mut gave_up).is_pending());
    let gave_up_id = next_request(&mut peer).await.id;
    drop(gave_up);
    assert_eq!(
        peer.next_frame(PROMPTLY).await.unwrap().kind,
        raw::kind::CANCEL
    );
    let answered = tokio::spawn(client.hold(0, 1));
    let answered_id = next_request(&mut peer).await.id;
    peer.send(&ok(answered_id, &1u32)).await;
    assert_eq!(
        within("the answered call", answered)
            .await
            .unwrap()
            .unwrap(),
        1
    );

    let mut live = Box::pin(client.hold(0, 2));
    assert!(futures::poll!(&mut live).is_pending());
    let live_id = next_request(&mut peer).await.id;
    let forged = [
        live_id ^ (1 << 32),
        live_id.wrapping_add(1 << 32),
        live_id.wrapping_sub(1 << 32),
        live_id | 0xFFFF_FFFF_0000_0000,
        live_id & 0xFFFF_FFFF_0000_0000,
        (live_id & 0xFFFF_FFFF_0000_0000) | 0xFFFF_FFFF,
        live_id + 1,
        0,
        u64::MAX - 1,
        gave_up_id,
        answered_id,
    ];
    let mut bytes = Vec::new();
    for (i, &id) in forged.iter().enumerate() {
        if id == live_id {
            continue;
        }
        // Small and large values, well-formed and not.
        bytes.extend_from_slice(&ok(id, &(100 + i as u32)));
        bytes.extend_from_slice(&ok(id, &vec![7u8; 100]));
        bytes.extend_from_slice(&raw::frame(raw::kind::RESPONSE, 0, id, &[]));
        bytes.extend_from_slice(&raw::refusal(id, raw::status::SHUTTING_DOWN, "forged"));
    }
    peer.send(&bytes).await;
    let before = sync(&mut peer, 1).await;
    assert!(before.is_empty(), "{before:?}");
    assert!(
        futures::poll!(&mut live).is_pending(),
        "a forged Response completed the live call"
    );
    peer.send(&ok(live_id, &2u32)).await;
    // And a duplicate right behind the real one.
    peer.send(&ok(live_id, &99u32)).await;
    assert_eq!(within("the live call", live).await.unwrap(), 2);

    // The connection is fine, and a call that may reuse the live call's slot
    // does not take the stale Response for it.
    let mut next = Box::pin(client.hold(0, 3));
    assert!(futures::poll!(&mut next).is_pending());
    let next_id = next_request(&mut peer).await.id;
    assert_ne!(next_id, live_id);
    peer.send(&ok(live_id, &98u32)).await;
    peer.send(&ok(next_id ^ (1 << 33), &97u32)).await;
    assert!(sync(&mut peer, 2).await.is_empty());
    assert!(
        futures::poll!(&mut next).is_pending(),
        "a stale id completed a new call"
    );
    peer.send(&ok(next_id, &3u32)).await;
    assert_eq!(within("the next call", next).await.unwrap(), 3);
}

/// Ids stay unique among the calls in flight however slots are taken and
/// freed: 64 calls in flight at once, freed in a scrambled order and taken
/// again, never show the server an id it holds.
#[tokio::test]
async fn ids_are_unique_among_calls_in_flight_as_slots_are_reused() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(64).await;
    let mut in_flight: std::collections::HashMap<u64, (u32, JoinHandle<_>)> = Default::default();
    let mut tag = 0u32;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut seen = std::collections::HashSet::new();
    for round in 0..6 {
        while in_flight.len() < 64 {
            tag += 1;
            let call = tokio::spawn(client.hold(0, tag));
            let req = next_request(&mut peer).await;
            let (_, t): (u64, u32) =
                bincode::serde::decode_from_slice(&req.args, bincode::config::standard())
                    .map(|(v, _)| v)
                    .unwrap();
            assert!(seen.insert(req.id), "id {:#x} issued twice", req.id);
            assert!(
                in_flight.insert(req.id, (t, call)).is_none(),
                "round {round}: id {:#x} in flight twice",
                req.id
            );
        }
        // Answer about half, in a scrambled order.
        let mut ids: Vec<(u64, u64)> = in_flight.keys().map(|&id| (next(), id)).collect();
        ids.sort_unstable();
        let take = 32 + (next() % 8) as usize;
        for (_, id) in ids.into_iter().take(take) {
            let (t, call) = in_flight.remove(&id).unwrap();
            peer.send(&ok(id, &t)).await;
            assert_eq!(within("a call", call).await.unwrap().unwrap(), t);
        }
    }
    for (id, (t, call)) in in_flight {
        peer.send(&ok(id, &t)).await;
        assert_eq!(within("a call", call).await.unwrap().unwrap(), t);
    }
}

// ---------------------------------------------------------------------------
// Many calls, against the real server.

/// One task's worth of calls: small and large, checked.
async fn calls_from(client: ProbeClient, caller: u32, n: u32, text: Arc<String>) {
    for i in 0..n {
        let tag = caller * 10_000 + i;
        if i % 7 == 3 {
            let len = client.text(String::clone(&text)).await.unwrap();
            assert_eq!(len, text.len() as u64);
        } else {
            assert_eq!(client.hold(1, tag).await.unwrap(), tag, "caller {caller}");
        }
    }
}

/// Many calls over a cap of 4 on a current-thread runtime (server, client
/// and callers on one thread): from one task with `join_all` and from many
/// spawned tasks. All complete, and the server never runs more than the cap.
#[tokio::test]
async fn many_calls_on_a_current_thread_runtime_with_a_small_cap_all_complete() {
    let _watchdog = watchdog();
    const CAP: usize = 4;
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let channel = rpc::Channel::builder()
        .max_in_flight(CAP)
        .connect(server.local_addr())
        .await
        .unwrap();
    let client = ProbeClient::new(channel);
    let text = Arc::new("z".repeat(40 << 10));
    let all = async {
        let joined = futures::future::join_all((0..200).map(|i| client.hold(0, i)));
        let spawned: Vec<_> = (0..16)
            .map(|c| tokio::spawn(calls_from(client.clone(), 1 + c, 30, text.clone())))
            .collect();
        for (i, r) in joined.await.into_iter().enumerate() {
            assert_eq!(r.unwrap(), i as u32);
        }
        for s in spawned {
            s.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .expect("calls hung");
    assert!(probe.high_water() <= CAP, "{} > {CAP}", probe.high_water());
    server.shutdown().await;
}

/// A multi-thread runtime, more callers than the cap of 3: first only
/// calls that complete (the server never runs more than 3 at once, and does
/// run 3), then chaos: callers that give up at random points, deadlines that
/// pass in flight and in line (Cancels, the reader's timer and new requests
/// all racing on the connection's one lock), large requests. Nothing hangs,
/// and afterwards the whole cap is usable again and a call dropped in flight
/// still has its handler dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_callers_on_a_multi_thread_runtime_with_a_small_cap_all_complete() {
    let _watchdog = watchdog();
    const CAP: usize = 3;
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let channel = rpc::Channel::builder()
        .max_in_flight(CAP)
        .connect(server.local_addr())
        .await
        .unwrap();
    let client = ProbeClient::new(channel);
    let text = Arc::new("w".repeat(40 << 10));

    let callers: Vec<_> = (0..24)
        .map(|c| tokio::spawn(calls_from(client.clone(), c, 20, text.clone())))
        .collect();
    tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::try_join_all(callers),
    )
    .await
    .expect("calls hung")
    .unwrap();
    assert!(probe.high_water() <= CAP, "{} > {CAP}", probe.high_water());
    assert_eq!(probe.high_water(), CAP, "the cap was never reached");

    let outcomes = Arc::new(AtomicUsize::new(0));
    let chaos: Vec<_> = (0..24u64)
        .map(|c| {
            let (client, text, outcomes) = (client.clone(), text.clone(), outcomes.clone());
            tokio::spawn(async move {
                let mut seed = 0x2545_f491_4f6c_dd1du64 ^ (c << 17);
                for i in 0..30u32 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let tag = (c as u32) * 1000 + i;
                    match seed % 5 {
                        0 => {
                            let give_up = Duration::from_micros(seed % 3000);
                            let _ = tokio::time::timeout(give_up, client.hold(seed % 4, tag)).await;
                        }
                        1 => {
                            let short = client.with_timeout(Duration::from_millis(1 + seed % 3));
                            match short.hold(2, tag).await {
                                Ok(t) => assert_eq!(t, tag),
                                Err(rpc::Error::DeadlineExceeded { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        2 => {
                            let len = client.text(String::clone(&text)).await.unwrap();
                            assert_eq!(len, text.len() as u64);
                        }
                        _ => assert_eq!(client.hold(0, tag).await.unwrap(), tag),
                    }
                    outcomes.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::try_join_all(chaos),
    )
    .await
    .unwrap_or_else(|_| panic!("hung after {} calls", outcomes.load(SeqCst)))
    .unwrap();
    probe
        .wait_for("every handler to end", PROMPTLY, |p| p.running() == 0)
        .await;

    let held: Vec<_> = (0..CAP as u32)
        .map(|i| tokio::spawn(client.hold(u64::MAX, 5000 + i)))
        .collect();
    probe
        .wait_for("the whole cap to be in use again", PROMPTLY, |p| {
            p.running() == CAP
        })
        .await;
    let dropped = probe.dropped();
    for h in held {
        h.abort();
    }
    probe
        .wait_for("the aborted calls' handlers to be dropped", PROMPTLY, |p| {
            p.dropped() == dropped + CAP
        })
        .await;
    assert_eq!(client.hold(0, 7).await.unwrap(), 7);
    server.shutdown().await;
}

/// A call's deadline does not wait for its request to be written. Here
/// the writer is stuck: the server reads nothing, and a 12 MiB request
/// fills the socket. A call made meanwhile still fails at its own deadline,
/// not once the write goes through.
#[tokio::test]
async fn a_call_behind_a_stuck_writer_still_fails_at_its_deadline() {
    let _watchdog = watchdog();
    let (client, _peer, _listener) = client_and_peer(8).await;
    let big = tokio::spawn(
        client
            .with_timeout(Duration::from_secs(60))
            .text("x".repeat(12 << 20)),
    );
    // The scenario, not a wait for an event (none is visible from outside):
    // by now the writer is deep in the big write, blocked on a full socket.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let budget = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let call = client.with_timeout(budget).hold(0, 1);
    fails_at_its_deadline("the call behind the stuck writer", call, budget, started).await;
    big.abort();
}

/// A call's deadline holds however many other calls come and go while it
/// waits: a call given 1 s, outlasting a hundred one-at-a-time calls, fails
/// with DeadlineExceeded when its time is up.
#[tokio::test]
async fn a_call_outlasting_a_hundred_others_still_fails_at_its_deadline() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let budget = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let slow = tokio::spawn(client.with_timeout(budget).hold(u64::MAX, 0));
    let held = next_request(&mut peer).await;
    for i in 1..=100u32 {
        let serve = async {
            let req = next_request(&mut peer).await;
            assert_ne!(req.id, held.id);
            peer.send(&ok(req.id, &i)).await;
        };
        let (reply, ()) = tokio::join!(client.hold(0, i), serve);
        assert_eq!(reply.unwrap(), i);
    }
    let held_call = async { slow.await.unwrap() };
    fails_at_its_deadline("the held call", held_call, budget, started).await;
    let cancel = peer.next_frame(PROMPTLY).await.unwrap();
    assert_eq!((cancel.kind, cancel.call_id), (raw::kind::CANCEL, held.id));
}

/// A call outliving every handle to its channel still completes: made, then
/// the last handle dropped, then awaited, it goes out and gets its reply.
#[tokio::test]
async fn a_call_outliving_its_channel_still_completes() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let call = client.hold(0, 5);
    drop(client);
    let call = tokio::spawn(call);
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, &5u32)).await;
    assert_eq!(within("the call", call).await.unwrap().unwrap(), 5);
}

/// Over the in-flight cap, a call whose channel is gone waits for a slot on
/// its connection, and goes out when the call ahead of it ends.
#[tokio::test]
async fn a_call_outliving_its_channel_waits_for_a_slot_on_its_connection() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(1).await;
    let ahead = tokio::spawn(client.hold(u64::MAX, 1));
    let first = next_request(&mut peer).await;
    let behind = client.hold(0, 2);
    drop(client);
    let (behind, polled) = spawn_polled(Box::pin(behind));
    polled.await.unwrap();
    assert!(sync(&mut peer, 1).await.is_empty(), "over the cap");
    peer.send(&ok(first.id, &1u32)).await;
    assert_eq!(within("the call ahead", ahead).await.unwrap().unwrap(), 1);
    let second = next_request(&mut peer).await;
    assert_eq!(second.args, hold_args(0, 2));
    peer.send(&ok(second.id, &2u32)).await;
    assert_eq!(within("the call behind", behind).await.unwrap().unwrap(), 2);
}

/// A call refused by a server shutting down after every handle to its
/// channel was dropped, and the connection it is sent again on: returns the
/// call, that connection, and the request as sent again.
async fn refused_and_sent_again() -> (
    tokio::task::JoinHandle<Result<u32, rpc::Error>>,
    RawConn,
    Req,
) {
    let (client, mut peer, listener) = client_and_peer(8).await;
    let call = tokio::spawn(client.hold(0, 1));
    let req = next_request(&mut peer).await;
    drop(client);
    peer.send(&raw::goaway(raw::goaway::SHUTDOWN, "draining"))
        .await;
    peer.send(&raw::refusal(
        req.id,
        raw::status::SHUTTING_DOWN,
        "draining",
    ))
    .await;
    let mut next = within("the reconnect", accept(&listener)).await;
    let again = next_request(&mut next).await;
    assert_eq!(again.args, req.args, "the same request, sent again");
    (call, next, again)
}

/// The call future is whole on its own: with every handle to its channel
/// gone, a call refused by a server shutting down still reconnects, is sent
/// again there, and completes.
#[tokio::test]
async fn a_refused_call_outliving_its_channel_still_goes_elsewhere() {
    let _watchdog = watchdog();
    let (call, mut next, again) = refused_and_sent_again().await;
    next.send(&ok(again.id, &1u32)).await;
    assert_eq!(within("the refused call", call).await.unwrap().unwrap(), 1);
}

/// A refused call did not run, but once sent again it may: if the second
/// connection is then lost, the call fails with Disconnected (it may have
/// run there), not ShuttingDown (which tells the caller a retry is safe).
#[tokio::test]
async fn a_refused_call_lost_after_it_was_sent_again_is_disconnected() {
    let _watchdog = watchdog();
    let (call, next, _) = refused_and_sent_again().await;
    drop(next);
    match within("the call", call).await.unwrap() {
        Err(rpc::Error::Disconnected { method, .. }) => assert_eq!(method, "Probe.hold"),
        other => panic!("{other:?}"),
    }
}

/// A reply of a primitive scalar (`hold` returns `u32`) is decoded without
/// the guard, but checked all the same: trailing bytes, a missing value and
/// a varint too wide for the type are Decode errors for that call only.
#[tokio::test]
async fn a_bad_scalar_reply_is_a_decode_error_for_its_call() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let too_wide = {
        let mut v = vec![253];
        v.extend_from_slice(&u64::MAX.to_le_bytes());
        v
    };
    for body in [vec![7, 0], Vec::new(), too_wide] {
        let call = tokio::spawn(client.hold(0, 7));
        let req = next_request(&mut peer).await;
        let mut payload = vec![raw::status::OK];
        payload.extend_from_slice(&body);
        peer.send(&raw::frame(raw::kind::RESPONSE, 0, req.id, &payload))
            .await;
        match within("the call", call).await.unwrap() {
            Err(rpc::Error::Decode { method, side, .. }) => {
                assert_eq!((method, side), ("Probe.hold", "response"), "{body:?}");
            }
            other => panic!("{body:?}: {other:?}"),
        }
    }
    a_next_call_completes(&client, &mut peer).await;
}

/// A call's timeout counts from its first poll, not from when its request
/// is written: polled, then its thread blocked past its deadline, a call whose
/// server answers at once still fails with DeadlineExceeded.
#[tokio::test]
async fn a_call_counts_its_timeout_from_its_first_poll_even_if_its_thread_then_blocks() {
    let _watchdog = watchdog();
    let (client, mut peer, _listener) = client_and_peer(8).await;
    let budget = Duration::from_millis(200);
    let mut call = Box::pin(client.with_timeout(budget).hold(0, 1));
    assert!(futures::poll!(&mut call).is_pending());
    // The scenario: the runtime's only thread is busy elsewhere, past the
    // call's deadline, before the request is even written.
    std::thread::sleep(Duration::from_millis(600));
    let serve = async {
        let req = next_request(&mut peer).await;
        peer.send(&ok(req.id, &1u32)).await;
    };
    let (outcome, ()) = tokio::join!(within("the call", call), serve);
    match outcome {
        Err(rpc::Error::DeadlineExceeded { budget: b, .. }) => assert_eq!(b, budget),
        other => panic!("{other:?}"),
    }
}
