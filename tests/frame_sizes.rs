//! Frame sizes over real TCP: requests and replies of every size around the
//! thresholds where client and server change how they hold a frame (the
//! client's 72-byte inline frame, the server's in-place copy of a small
//! request) arrive intact, and the frame limit holds to the byte at each of
//! its checks, failing only the call that crosses it, which is told the
//! frame's real size.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use support::hand::{watchdog, within};
use support::{ShapesClient, start_server, start_with};

// ---------------------------------------------------------------------------
// Small frames.

/// Requests and replies of every size around the 72-byte inline frame (a
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

/// Requests of every size around the server's in-place copy (a payload of
/// up to 46 bytes, 24 of them the request's head and schema fingerprint),
/// sent together so that many arrive in one read: each handler gets its own
/// arguments intact.
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

// ---------------------------------------------------------------------------
// The frame limit.

/// The frame limit, to the byte, at each of its three checks: the client's
/// own limit while encoding, the server's advertised limit when queueing,
/// and the server's limit while encoding its reply. A frame's length field
/// (kind, flags, id, payload) may be exactly the limit; one byte more fails
/// that call with FrameTooLarge, and the connection stays up.
#[tokio::test]
async fn frames_of_exactly_the_limit_pass_and_one_byte_more_fails_at_every_check() {
    const LIMIT: usize = 4096;
    // echo(n bytes): 10 header + 16 request head + 8 schema fingerprint +
    // 3 varint + n.
    let fits = LIMIT - 37;

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

/// A request or reply far over the limit is reported with its real size
/// (not the limit plus one), and the error says which settings to raise, on
/// both sides. The request did not run; the reply's handler did.
#[tokio::test]
async fn a_frame_far_over_the_limit_is_reported_with_its_real_size() {
    const MIB: usize = 1 << 20;
    let server = start_with(rpc::Server::builder()).await;
    let c = ShapesClient::connect(server.local_addr()).await.unwrap();
    // 10 header + 16 request head + 8 fingerprint + 5 varint + 32 MiB.
    let err = c.echo(vec![1; 32 * MIB]).await.unwrap_err();
    match &err {
        rpc::Error::FrameTooLarge {
            what, size, limit, ..
        } => assert_eq!((*what, *size, *limit), ("request", 32 * MIB + 39, 16 * MIB)),
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&(32 * MIB + 39).to_string()), "{text}");
    for setting in [
        "Channel::builder().max_frame",
        "Server::builder().max_frame",
    ] {
        assert!(text.contains(setting), "{text}");
    }
    assert!(!err.may_have_run() && !err.is_retryable(), "{err:?}");

    // The server's reply: 10 header + 1 status + 5 varint + 32 MiB.
    let err = c.make(32 * MIB).await.unwrap_err();
    match &err {
        rpc::Error::FrameTooLarge {
            what, size, limit, ..
        } => assert_eq!(
            (*what, *size, *limit),
            ("response", 32 * MIB + 16, 16 * MIB)
        ),
        other => panic!("{other:?}"),
    }
    assert!(err.may_have_run() && !err.is_retryable(), "{err:?}");
    assert_eq!(c.make(1).await.unwrap(), vec![7], "the connection stays up");
}
