//! Review of 02c860a (requests kept in place, frames built inline, the
//! clock at a call's first poll), dfb22ff (the first connection reached
//! through a Weak) and 34900c3 (Responses taken as id and payload): the
//! paths the other tests do not reach.

#[allow(unused_imports)]
mod support;

use std::time::Duration;

use support::hand::*;
use support::raw::{self, RawConn};
use support::{ShapesClient, start_with};

// ---------------------------------------------------------------------------
// Frames built in place, on the heap, and at the limits.

/// Requests and replies of every size around the 64-byte inline frame (a
/// frame that spills to the heap in the middle of its arguments or its
/// value) arrive intact, through the real server.
#[tokio::test]
async fn requests_and_replies_across_the_inline_frame_size_arrive_intact() {
    let server = start_with(rpc::Server::builder()).await;
    let c = ShapesClient::connect(server.local_addr()).await.unwrap();
    for n in 0..=90usize {
        let data: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
        assert_eq!(
            c.echo(data.clone()).await.unwrap(),
            data,
            "echo of {n} bytes"
        );
        assert_eq!(c.make(n).await.unwrap(), vec![7; n], "make({n})");
        let s: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let reversed: String = s.chars().rev().collect();
        assert_eq!(c.string(s).await.unwrap(), reversed, "string of {n}");
    }
}

/// The frame limit, to the byte, at each of its three checks: the client's
/// own limit while encoding, the server's advertised limit when queueing,
/// and the server's limit while encoding its reply. A frame's length field
/// (kind, flags, id, payload) may be exactly the limit.
#[tokio::test]
async fn frames_of_exactly_the_limit_pass_and_one_byte_more_fails_at_every_check() {
    const LIMIT: usize = 4096;
    // echo(n bytes): 10 header + 16 request head + 3 varint + n.
    let fits = LIMIT - 29;

    // 1. The client's own limit (checked while encoding into the frame).
    let server = start_with(rpc::Server::builder()).await;
    let channel = rpc::Channel::builder()
        .max_frame(LIMIT)
        .connect(server.local_addr())
        .await
        .unwrap();
    let c = ShapesClient::new(channel);
    assert_eq!(c.echo(vec![3; fits]).await.unwrap().len(), fits);
    match c.echo(vec![3; fits + 1]).await {
        Err(rpc::Error::FrameTooLarge { what, limit, .. }) => {
            assert_eq!((what, limit), ("request", LIMIT));
        }
        other => panic!("{other:?}"),
    }

    // 2. The server's advertised limit (checked when the request is queued).
    let strict = start_with(rpc::Server::builder().max_frame(LIMIT)).await;
    let c = ShapesClient::connect(strict.local_addr()).await.unwrap();
    assert_eq!(c.echo(vec![4; fits]).await.unwrap().len(), fits);
    match c.echo(vec![4; fits + 1]).await {
        Err(rpc::Error::FrameTooLarge {
            what, size, limit, ..
        }) => {
            assert_eq!((what, size, limit), ("request", LIMIT + 1, LIMIT));
        }
        other => panic!("{other:?}"),
    }

    // 3. The server's limit on its reply: 10 header + 1 status + 3 varint + n.
    let reply_fits = LIMIT - 14;
    assert_eq!(c.make(reply_fits).await.unwrap(), vec![7; reply_fits]);
    match c.make(reply_fits + 1).await {
        Err(rpc::Error::FrameTooLarge { what, limit, .. }) => {
            assert_eq!((what, limit), ("response", LIMIT));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.make(1).await.unwrap(), vec![7], "the connection stays up");
}

// ---------------------------------------------------------------------------
// A large request sent again, more than once.

/// A large request (>= 32 KiB: shared with the writer, kept by the call as
/// bytes) refused by two draining servers in a row goes out a third time
/// whole, under a fresh id with its budget patched in each time, and is
/// answered once.
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

// ---------------------------------------------------------------------------
// The first connection, through the Weak.

/// A call made while the first connection was current (it holds that
/// connection until its first poll), and first polled after the connection
/// drained and was replaced, goes to the new one and not the old; once it
/// has, nothing holds the old connection and the client closes it.
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

/// The first connection dies, a second replaces it and dies too: calls
/// keep following the current connection (looked up under the lock once
/// the first is replaced), and a call made before any of it, polled last,
/// goes to the third.
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

// ---------------------------------------------------------------------------
// The client reader (poll_incoming) and bad Responses.

/// What a server sends after answering the first of two calls in the same
/// write, and what the second call and the next call then see.
async fn answer_one_then(bytes: &[u8], close: bool) -> (rpc::Error, u32) {
    let (client, mut peer, listener) = client_and_peer(4).await;
    let first = tokio::spawn(client.hold(0, 1));
    let a = next_request(&mut peer).await;
    let second = tokio::spawn(client.blob(1 << 20));
    let b = next_request(&mut peer).await;
    let mut out = ok(a.id, &1u32);
    // The id of `b` in the bad frame (bytes 6..14 of the header, where it
    // is long enough to have them).
    let mut bad = bytes.to_vec();
    if bad.len() >= raw::HEADER {
        bad[6..14].copy_from_slice(&b.id.to_be_bytes());
    }
    out.extend_from_slice(&bad);
    peer.send(&out).await;
    if close {
        drop(peer);
    }
    assert_eq!(within("the first call", first).await.unwrap().unwrap(), 1);
    let err = within("the second call", second)
        .await
        .unwrap()
        .unwrap_err();
    // The next call reconnects and completes.
    let next = tokio::spawn(client.hold(0, 2));
    let mut peer = accept(&listener).await;
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, &2u32)).await;
    let next = within("the next call", next).await.unwrap().unwrap();
    (err, next)
}

fn disconnected_with(err: &rpc::Error, words: &str) {
    match err {
        rpc::Error::Disconnected { reason, .. } => {
            assert!(reason.contains(words), "{reason:?} lacks {words:?}")
        }
        other => panic!("{other:?}"),
    }
}

/// A Response cut off by the server closing, small or larger than the
/// 8 KiB read buffer: the call fails with Disconnected, naming the close in
/// the middle of a frame, and the next call reconnects.
#[tokio::test]
async fn a_response_cut_off_by_a_close_fails_its_call_and_the_next_reconnects() {
    for (size, cut) in [(20usize, 20usize), (20_000, 12_000)] {
        let whole = ok(0, &vec![7u8; size]);
        let (err, next) = answer_one_then(&whole[..cut], true).await;
        disconnected_with(&err, "into a frame");
        assert_eq!(next, 2);
    }
}

/// A Response with a flag set, right behind a good one: the good one is
/// delivered, the bad one is a protocol error that fails the calls left
/// (not one taken as a reply, nor a hang).
#[tokio::test]
async fn a_flagged_response_behind_a_good_one_fails_the_calls_left() {
    for size in [4usize, 20_000] {
        let mut bad = ok(0, &vec![7u8; size]);
        bad[5] = 1;
        let (err, next) = answer_one_then(&bad, false).await;
        disconnected_with(&err, "flags");
        assert_eq!(next, 2);
    }
}

/// A Response shorter than the header, or claiming more than the client
/// accepts: a protocol error at once, not a wait for bytes that never come.
#[tokio::test]
async fn a_response_too_short_or_too_long_is_a_protocol_error_at_once() {
    let mut short = 5u32.to_be_bytes().to_vec();
    short.extend_from_slice(&[raw::kind::RESPONSE, 0, 0, 0, 0]);
    let (err, _) = answer_one_then(&short, false).await;
    disconnected_with(&err, "protocol error");
    let mut long = raw::frame(raw::kind::RESPONSE, 0, 0, &[0]);
    long[..4].copy_from_slice(&(u32::MAX).to_be_bytes());
    let (err, _) = answer_one_then(&long, false).await;
    disconnected_with(&err, "protocol error");
}

// ---------------------------------------------------------------------------
// Deadlines.

/// A call whose inherited deadline passed before its first poll, on a
/// downstream connection that is draining (so it would take the general
/// path, which reconnects): DeadlineExceeded at once, and the request is
/// sent nowhere; no reconnect is started for it either.
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
