//! A server that sends the client malformed Responses, played by hand
//! (`support::hand`): a Response cut off by a close, one with a flag set,
//! one shorter than a header or claiming more than the client accepts.
//! Whatever came before it is still delivered; the calls still waiting on
//! that connection fail at once with Disconnected, naming the fault (never
//! a reply taken from bad bytes, never a hang until the deadline); the
//! client closes the connection it gave up; and the next call reconnects
//! and completes.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use support::hand::*;
use support::raw;

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

/// Asserts that `err` is Disconnected with a reason that mentions `words`.
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

/// After `bad`, a frame no server may send: the client declares the
/// connection dead, the call waiting on it fails with Disconnected, and the
/// client closes its side at once, with no other call to make it notice;
/// the next call opens a new connection.
async fn declared_dead_after(bad: &[u8]) {
    let _watchdog = watchdog();
    let (client, mut peer, listener) = client_and_peer(4).await;
    let call = tokio::spawn(client.hold(0, 1));
    next_request(&mut peer).await;
    peer.send(bad).await;
    let err = within("the call", call).await.unwrap().unwrap_err();
    disconnected_with(&err, "protocol error");
    let (frames, closed) = peer.frames_until_closed(PROMPTLY).await;
    assert!(
        frames.iter().all(|f| f.kind != raw::kind::REQUEST),
        "sent on the dead connection: {frames:?}"
    );
    assert!(matches!(closed, raw::Closed::Eof), "{closed:?}");

    let next = tokio::spawn(client.hold(0, 2));
    let mut peer = accept(&listener).await;
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, &2u32)).await;
    assert_eq!(within("the next call", next).await.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn after_a_second_hello_the_client_closes_the_connection_at_once() {
    declared_dead_after(&raw::hello()).await;
}

#[tokio::test]
async fn after_a_frame_of_an_unknown_kind_the_client_closes_the_connection_at_once() {
    declared_dead_after(&raw::frame(99, 0, 0, &[])).await;
}
