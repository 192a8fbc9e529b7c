//! How a client follows its server from one connection to the next, against
//! a server played by hand (`support::hand`) so every frame is seen: a call
//! refused by a draining server is sent again whole on a new connection,
//! calls go to whichever connection is current when they are first polled
//! (even if made before it replaced the old one), a replaced connection is
//! closed once nothing uses it, handles cloned after a reconnect follow
//! the server as well as the original, and a call goes to a new connection
//! a bounded number of times.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use support::hand::*;
use support::probe::ProbeClient;
use support::raw::{self, RawConn};
use tokio::net::TcpListener;

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

/// How the hand-played server below turns every connection away.
#[derive(Debug, Clone, Copy)]
enum TurnAway {
    /// A GoAway with this reason (not shutdown) right behind its Hello, in
    /// the same write; a request that arrives anyway closes the connection
    /// unanswered (for all the client knows, it ran).
    AtOnce(u8),
    /// For each request, GoAway(shutdown) and a ShuttingDown refusal: the
    /// call did not run.
    Refusing,
}

/// What the hand-played server saw.
#[derive(Debug, Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// Accepts every connection on `listener` and turns it away as `how` says.
async fn turn_away(listener: TcpListener, how: TurnAway, seen: Arc<Seen>) {
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        seen.connections.fetch_add(1, SeqCst);
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut conn = RawConn::from_stream(stream);
            let hello = conn.next_frame(PROMPTLY).await.expect("no Hello");
            assert_eq!(hello.kind, raw::kind::HELLO);
            match how {
                TurnAway::AtOnce(reason) => {
                    conn.send(&[raw::hello(), raw::goaway(reason, "go away")].concat())
                        .await
                }
                TurnAway::Refusing => conn.send(&raw::hello()).await,
            }
            // Until the client closes the connection, or a request ends it.
            while let Ok(f) = conn.next_reply(Duration::from_secs(60)).await {
                if f.kind != raw::kind::REQUEST {
                    continue;
                }
                seen.requests.fetch_add(1, SeqCst);
                match how {
                    TurnAway::AtOnce(_) => return,
                    TurnAway::Refusing => {
                        let goaway = raw::goaway(raw::goaway::SHUTDOWN, "draining");
                        let refusal =
                            raw::refusal(f.call_id, raw::status::SHUTTING_DOWN, "draining");
                        let _ = conn.try_send(&[goaway, refusal].concat()).await;
                    }
                }
            }
        });
    }
}

/// A client of a server that turns every connection away as `how` says:
/// one call's outcome, and what the server saw.
async fn one_call_turned_away(how: TurnAway) -> (Result<u32, rpc::Error>, Arc<Seen>) {
    let (listener, addr) = listen().await;
    let seen = Arc::new(Seen::default());
    tokio::spawn(turn_away(listener, how, seen.clone()));
    let client = ProbeClient::new(rpc::Channel::builder().connect(addr).await.unwrap());
    // Spawned, so the connection's reader takes the GoAway behind the
    // Hello before the call first looks at the connection.
    let outcome = within("the call", tokio::spawn(client.hold(0, 1)))
        .await
        .unwrap();
    (outcome, seen)
}

/// Every connection is drained at once for a reason other than shutdown
/// (abuse, a protocol error), before the call's request goes out or closing
/// once it arrives: the call moves from connection to connection a bounded
/// number of times (at most four connections), then fails with
/// Disconnected. Not ShuttingDown: that promises the call did not run and a
/// retry is safe, and no server here said it was shutting down.
#[tokio::test]
async fn a_call_turned_away_by_every_connection_for_another_reason_is_disconnected() {
    let _watchdog = watchdog();
    for reason in [raw::goaway::ABUSE, raw::goaway::PROTOCOL] {
        let (outcome, seen) = one_call_turned_away(TurnAway::AtOnce(reason)).await;
        assert!(
            matches!(outcome, Err(rpc::Error::Disconnected { .. })),
            "GoAway reason {reason}: {outcome:?}"
        );
        let connections = seen.connections.load(SeqCst);
        assert!(
            (1..=4).contains(&connections),
            "GoAway reason {reason}: {connections} connections"
        );
    }
}

/// Every server the call reaches refuses it while shutting down: it goes
/// out on four connections (the first and three moves), then fails with
/// ShuttingDown (it never ran, a retry is safe).
#[tokio::test]
async fn a_call_refused_by_every_connection_is_sent_four_times_then_is_shutting_down() {
    let _watchdog = watchdog();
    let (outcome, seen) = one_call_turned_away(TurnAway::Refusing).await;
    assert!(
        matches!(outcome, Err(rpc::Error::ShuttingDown { .. })),
        "{outcome:?}"
    );
    assert_eq!(seen.requests.load(SeqCst), 4, "requests the servers saw");
    assert_eq!(seen.connections.load(SeqCst), 4);
}
