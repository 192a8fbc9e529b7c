//! A connection against a server the test plays by hand, on an in-memory
//! pipe (the clock may be paused).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::{Connection, Encoded, Failure, Tried};
use crate::client::Config;
use crate::protocol::{FrameBuf, FrameCodec, Hello, Kind, Payload, RequestHead};
use crate::transport::{FrameReader, Link, Peer};

/// A connection to a scripted server: what the client sent, and where to
/// write the server's frames.
async fn scripted_server() -> (
    Arc<Connection>,
    FrameReader<ReadHalf<DuplexStream>>,
    WriteHalf<DuplexStream>,
) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (sr, mut sw) = tokio::io::split(theirs);
    let mut server = FrameReader::new(sr, FrameCodec::new(1 << 16));
    sw.write_all(&Hello::ours(16 << 20, crate::stream::DEFAULT_WINDOW).encode())
        .await
        .unwrap();
    let conn = Connection::start(Link::new(ours, Peer::Memory), &Config::default())
        .await
        .unwrap();
    assert_eq!(server.next().await.unwrap().unwrap().kind, Kind::Hello);
    (conn, server, sw)
}

/// A connection to a server that reads requests and never answers.
async fn silent_server() -> (Arc<Connection>, FrameReader<ReadHalf<DuplexStream>>) {
    let (conn, server, sw) = scripted_server().await;
    // Keep the write half open for the test's length.
    tokio::spawn(async move {
        let _sw = sw;
        std::future::pending::<()>().await
    });
    (conn, server)
}

fn request() -> FrameBuf {
    let mut frame = FrameBuf::new(Kind::Request, 0, 16);
    RequestHead {
        method_id: 1,
        budget: Duration::ZERO,
    }
    .write(&mut frame);
    frame
}

fn response(call_id: u64, payload: &[u8]) -> Bytes {
    let mut frame = FrameBuf::new(Kind::Response, call_id, payload.len());
    frame.payload_mut().extend_from_slice(payload);
    frame.finish()
}

/// One call on `conn` until its outcome.
async fn call(conn: Arc<Connection>, deadline: Instant) -> Result<Payload, Failure> {
    let mut request = Encoded::Buf(request());
    let budget = deadline.saturating_duration_since(Instant::now());
    let mut in_flight = None;
    std::future::poll_fn(|cx| {
        let call = match &mut in_flight {
            Some(call) => call,
            None => {
                let tried =
                    conn.clone()
                        .try_send(&mut request, deadline, budget, false, None, cx.waker());
                match tried {
                    Tried::Sent(call) => in_flight.insert(call),
                    _ => panic!("the request was not queued"),
                }
            }
        };
        call.poll(cx)
    })
    .await
}

/// Each Response reaches its own caller, whatever the order; a second
/// Response for a call already answered, or one for an id never sent,
/// changes nothing, and every entry is gone once its caller has its reply.
#[tokio::test]
async fn responses_reach_their_callers_and_stray_ones_change_nothing() {
    let (conn, mut server, mut sw) = scripted_server().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let spawn_call = || {
        let conn = conn.clone();
        tokio::spawn(async move { call(conn, deadline).await.expect("the call failed") })
    };
    let a = spawn_call();
    let id_a = server.next().await.unwrap().unwrap().call_id;
    let b = spawn_call();
    let id_b = server.next().await.unwrap().unwrap().call_id;
    assert_ne!(id_a, id_b);
    for frame in [
        response(id_b, b"bee"),
        response(id_b, b"second bee"),
        response(id_b + id_a + 100, b"nobody's"),
        response(id_a, b"ay"),
    ] {
        sw.write_all(&frame).await.unwrap();
    }
    assert_eq!(&b.await.unwrap()[..], b"bee");
    assert_eq!(&a.await.unwrap()[..], b"ay");
    assert!(!conn.shared.lock().any_waiting());
    // The connection goes on.
    let c = spawn_call();
    let id_c = server.next().await.unwrap().unwrap().call_id;
    sw.write_all(&response(id_c, b"sea")).await.unwrap();
    assert_eq!(&c.await.unwrap()[..], b"sea");
    assert_eq!(conn.shared.lock().calls.iter().count(), 0);
}

/// A caller that gives up before its Response takes its entry with it
/// and tells the server; the late Response is dropped.
#[tokio::test]
async fn a_caller_that_gives_up_cancels_and_its_late_response_is_dropped() {
    let (conn, mut server, mut sw) = scripted_server().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let gave_up =
        tokio::time::timeout(Duration::from_millis(50), call(conn.clone(), deadline)).await;
    assert!(gave_up.is_err(), "nobody answered, yet the call returned");
    let id = server.next().await.unwrap().unwrap().call_id;
    let cancel = server.next().await.unwrap().unwrap();
    assert_eq!((cancel.kind, cancel.call_id), (Kind::Cancel, id));
    assert_eq!(conn.shared.lock().calls.iter().count(), 0);
    sw.write_all(&response(id, b"late")).await.unwrap();
    let next = tokio::spawn(call(conn.clone(), deadline));
    let id_next = server.next().await.unwrap().unwrap().call_id;
    assert_ne!(id, id_next);
    sw.write_all(&response(id_next, b"on time")).await.unwrap();
    assert_eq!(&next.await.unwrap().unwrap()[..], b"on time");
    assert_eq!(conn.shared.lock().calls.iter().count(), 0);
}

/// One timer serves every call of the connection: a call with an earlier
/// deadline than the one the timer is armed for moves it earlier, each
/// call fails at its own deadline, and the server is told to drop each.
#[tokio::test(start_paused = true)]
async fn each_call_fails_at_its_own_deadline_and_its_handler_is_cancelled() {
    let (conn, mut server) = silent_server().await;
    let start = Instant::now();
    let spawn_call = |secs| {
        let conn = conn.clone();
        tokio::spawn(async move {
            let outcome = call(conn, start + Duration::from_secs(secs)).await;
            assert!(
                matches!(outcome, Err(Failure::Deadline)),
                "the {secs} s call did not fail at its deadline"
            );
            start.elapsed()
        })
    };
    let long = spawn_call(10);
    assert_eq!(server.next().await.unwrap().unwrap().kind, Kind::Request);
    let short = spawn_call(1);
    assert_eq!(server.next().await.unwrap().unwrap().kind, Kind::Request);
    let short_at = short.await.unwrap();
    assert!(
        short_at >= Duration::from_secs(1) && short_at < Duration::from_millis(1_100),
        "the 1 s call ended after {short_at:?}"
    );
    let cancel = server.next().await.unwrap().unwrap();
    assert_eq!((cancel.kind, cancel.call_id), (Kind::Cancel, 2));
    let long_at = long.await.unwrap();
    assert!(
        long_at >= Duration::from_secs(10) && long_at < Duration::from_millis(10_100),
        "the 10 s call ended after {long_at:?}"
    );
    let cancel = server.next().await.unwrap().unwrap();
    assert_eq!((cancel.kind, cancel.call_id), (Kind::Cancel, 1));
    assert_eq!(conn.shared.lock().calls.iter().count(), 0);
}

/// The default keepalive, with the clock paused: a server that stops
/// answering is pinged after 30 s of silence and given up 20 s later (each
/// to the 10 s tick), failing the call in flight.
#[tokio::test(start_paused = true)]
async fn keepalive_pings_a_silent_server_after_30_s_and_gives_up_20_s_later() {
    let (conn, mut server) = silent_server().await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let pending = tokio::spawn(call(conn, deadline));
    assert_eq!(server.next().await.unwrap().unwrap().kind, Kind::Request);
    let ping = server.next().await.unwrap().unwrap();
    let pinged = started.elapsed();
    assert_eq!(ping.kind, Kind::Ping);
    assert!(
        pinged >= Duration::from_secs(30) && pinged <= Duration::from_secs(40),
        "pinged after {pinged:?}"
    );
    let Err(Failure::Closed(reason)) = pending.await.unwrap() else {
        panic!("the call did not fail");
    };
    let gave_up = started.elapsed() - pinged;
    assert!(reason.contains("keepalive"), "{reason}");
    assert!(
        gave_up >= Duration::from_secs(20) && gave_up <= Duration::from_secs(30),
        "gave up {gave_up:?} after the ping"
    );
}

/// A connection whose writer has ended takes no more calls: the request
/// comes back unsent, to go elsewhere.
#[tokio::test]
async fn a_closed_connection_hands_the_request_back() {
    let (conn, server, sw) = scripted_server().await;
    drop((server, sw));
    // The reader sees the end and closes the connection.
    tokio::time::timeout(Duration::from_secs(5), async {
        while conn.takes_calls() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the connection never noticed the server leave");
    let mut request = Encoded::Buf(request());
    let deadline = Instant::now() + Duration::from_secs(5);
    let waker = futures::task::noop_waker();
    let tried = conn.try_send(
        &mut request,
        deadline,
        Duration::from_secs(5),
        false,
        None,
        &waker,
    );
    assert!(matches!(tried, Tried::NotSent));
}
