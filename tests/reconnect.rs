//! How a client follows its server from one connection to the next, against
//! a server played by hand (`support::hand`) so every frame is seen: a call
//! refused by a draining server is sent again whole on a new connection,
//! calls go to whichever connection is current when they are first polled
//! (even if made before it replaced the old one), a replaced connection is
//! closed once nothing uses it, and handles cloned after a reconnect follow
//! the server as well as the original.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use support::hand::*;
use support::raw;

/// A large request (>= 32 KiB, written from its own buffer rather than
/// copied) refused by two draining servers in a row goes out a third time
/// whole, under a fresh id with what is left of its budget each time, and
/// is answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_refused_twice_goes_out_a_third_time_whole() {
    let (client, mut peer, listener) = client_and_peer(4).await;
    let text = "z".repeat(40 << 10);
    let call = tokio::spawn(client.text(text.clone()));
    let mut last = next_request(&mut peer).await;
    assert!(last.args.len() > 40 << 10);
    let first_args = last.args.clone();
    for _ in 0..2 {
        peer.send(&raw::goaway(raw::goaway::SHUTDOWN, "draining"))
            .await;
        peer.send(&raw::refusal(
            last.id,
            raw::status::SHUTTING_DOWN,
            "draining",
        ))
        .await;
        peer = accept(&listener).await;
        let again = next_request(&mut peer).await;
        assert_eq!(again.args, first_args, "the request was not resent as is");
        assert!(
            again.budget <= last.budget && again.budget > Duration::from_secs(20),
            "{:?} after {:?}",
            again.budget,
            last.budget
        );
        last = again;
    }
    peer.send(&ok(last.id, &(text.len() as u64))).await;
    assert_eq!(
        within("the large call", call).await.unwrap().unwrap(),
        text.len() as u64
    );
    assert!(sync(&mut peer, 1).await.is_empty(), "sent again");
}

/// A call made while the first connection was current, and first polled
/// after that connection drained and was replaced, goes to the new one and
/// not the old; once it has, nothing holds the old connection and the
/// client closes it, sending nothing more on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_on_the_first_connection_and_polled_after_it_was_replaced_goes_to_the_new_one()
{
    let (client, mut old, listener) = client_and_peer(4).await;
    // Made now: it holds the first connection until its first poll.
    let early = client.hold(0, 5);
    old.send(&raw::goaway(raw::goaway::SHUTDOWN, "draining"))
        .await;
    assert!(sync(&mut old, 1).await.is_empty());
    // A call now replaces the first connection.
    let next = tokio::spawn(client.hold(0, 6));
    let mut new = accept(&listener).await;
    let req = next_request(&mut new).await;
    new.send(&ok(req.id, &6u32)).await;
    assert_eq!(within("the next call", next).await.unwrap().unwrap(), 6);
    let early = tokio::spawn(early);
    let req = next_request(&mut new).await;
    new.send(&ok(req.id, &5u32)).await;
    assert_eq!(within("the early call", early).await.unwrap().unwrap(), 5);
    let (frames, closed) = old.frames_until_closed(PROMPTLY).await;
    assert!(
        frames.iter().all(|f| f.kind == raw::kind::PONG),
        "on the replaced connection: {frames:?}"
    );
    assert!(matches!(closed, raw::Closed::Eof), "{closed:?}");
}

/// The first connection dies, a second replaces it and dies too: each time
/// the call in flight fails with Disconnected, and the calls after it go to
/// the current connection. A call made before any of it, polled last, goes
/// to the third.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_follow_the_current_connection_through_two_replacements() {
    let (client, mut peer, listener) = client_and_peer(4).await;
    let early = client.hold(0, 9);
    for round in 0..3u32 {
        if round > 0 {
            // The connection dies under a call in flight.
            let doomed = tokio::spawn(client.hold(0, 0));
            next_request(&mut peer).await;
            drop(peer);
            let outcome = within("the doomed call", doomed).await.unwrap();
            assert!(
                matches!(outcome, Err(rpc::Error::Disconnected { .. })),
                "{outcome:?}"
            );
            let call = tokio::spawn(client.hold(0, round));
            peer = accept(&listener).await;
            let req = next_request(&mut peer).await;
            peer.send(&ok(req.id, &round)).await;
            assert_eq!(within("the call", call).await.unwrap().unwrap(), round);
        }
        let call = tokio::spawn(client.hold(0, 100 + round));
        let req = next_request(&mut peer).await;
        peer.send(&ok(req.id, &(100 + round))).await;
        assert_eq!(
            within("the call", call).await.unwrap().unwrap(),
            100 + round
        );
    }
    let early = tokio::spawn(early);
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, &9u32)).await;
    assert_eq!(within("the early call", early).await.unwrap().unwrap(), 9);
}

/// A handle cloned after a reconnect (its calls start on the reconnected
/// connection) follows the server just as the original does: a call refused
/// there by a server shutting down goes on to a third connection and is
/// answered there, and so does a call made before the refusal and first
/// polled after it.
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
    // The early call, first polled now, goes there too.
    let early = tokio::spawn(early);
    let req = next_request(&mut third).await;
    third.send(&ok(req.id, &3u32)).await;
    assert_eq!(within("the early call", early).await.unwrap().unwrap(), 3);
}
