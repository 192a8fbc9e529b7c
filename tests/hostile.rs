//! Hostile input over real TCP: every kind of bad frame or body gets a clear
//! error (a Decode reply for a bad body, a GoAway and a closed connection
//! for a bad frame or a reused call id, on a current-thread server too and
//! with handlers still running), and nothing reaches other connections or
//! the server process.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::time::{Duration, Instant};

use support::hand::watchdog;
use support::probe::*;
use support::raw::{self, RawConn, RawFrame};
use tokio::io::AsyncWriteExt;

const PROMPTLY: Duration = Duration::from_secs(3);
const BUDGET: Duration = Duration::from_secs(30);

/// Sends `args` to `method` on a fresh connection and returns the reply.
async fn reply_to(addr: std::net::SocketAddr, method: &str, args: &[u8]) -> (RawConn, RawFrame) {
    let mut peer = RawConn::handshake(addr).await;
    peer.send(&raw::request(1, method, BUDGET, args)).await;
    let reply = peer.next_reply(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.call_id, 1);
    (peer, reply)
}

/// The connection still serves calls after a bad one.
async fn assert_connection_serves(peer: &mut RawConn) {
    peer.send(&raw::request(
        2,
        "Calculator.add",
        BUDGET,
        &raw::args(&(20i64, 22i64)),
    ))
    .await;
    let reply = peer.next_reply(Duration::from_secs(10)).await.unwrap();
    assert_eq!((reply.call_id, reply.value::<i64>()), (2, 42));
}

/// A bincode length prefix claiming `n` (the u64 form of the varint).
fn claims(n: u64) -> Vec<u8> {
    let mut b = vec![253];
    b.extend_from_slice(&n.to_le_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_bomb_gets_a_decode_error_and_the_server_lives_on() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    // A String claiming 2^40 bytes, in 9 bytes of arguments.
    let bomb = claims(1 << 40);
    assert_eq!(bomb.len(), 9);
    let (mut peer, reply) = reply_to(server.local_addr(), "Probe.text", &bomb).await;
    assert_eq!(reply.status(), raw::status::DECODE, "{}", reply.message());
    assert_connection_serves(&mut peer).await;
    assert_serves(server.local_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_200_000_deep_gets_a_decode_error_not_a_stack_overflow() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    // `Nest::Node` is variant 1, one byte per level, then a `Leaf`: ~200 KB.
    let mut bomb = vec![1u8; 200_000];
    bomb.push(0);
    let (mut peer, reply) = reply_to(server.local_addr(), "Probe.depth", &bomb).await;
    assert_eq!(reply.status(), raw::status::DECODE, "{}", reply.message());
    assert!(
        reply.message().contains("nested deeper"),
        "{}",
        reply.message()
    );
    assert_connection_serves(&mut peer).await;

    // Reasonable nesting is fine.
    let client = probe_client(server.local_addr()).await;
    assert_eq!(client.depth(Nest::deep(100)).await.unwrap(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vec_of_units_claiming_2_pow_63_elements_gets_a_decode_error_at_once() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let started = Instant::now();
    let (mut peer, reply) = reply_to(server.local_addr(), "Probe.units", &claims(1 << 63)).await;
    assert_eq!(reply.status(), raw::status::DECODE, "{}", reply.message());
    assert!(started.elapsed() < Duration::from_secs(5), "it spun");
    assert_connection_serves(&mut peer).await;
    let client = probe_client(server.local_addr()).await;
    assert_eq!(client.units(vec![(); 1000]).await.unwrap(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_bytes_after_the_arguments_get_a_decode_error() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let mut args = raw::args(&("hi",));
    args.push(0);
    let (mut peer, reply) = reply_to(server.local_addr(), "Probe.text", &args).await;
    assert_eq!(reply.status(), raw::status::DECODE, "{}", reply.message());
    assert!(reply.message().contains("trailing"), "{}", reply.message());
    assert_connection_serves(&mut peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_get_a_decode_error_and_truncated_frames_close_the_connection() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    // A body cut short: the string claims 10 bytes, 3 follow.
    let (mut peer, reply) = reply_to(addr, "Probe.text", &[10, b'a', b'b', b'c']).await;
    assert_eq!(reply.status(), raw::status::DECODE, "{}", reply.message());
    // A request shorter than its 16-byte head.
    peer.send(&raw::frame(raw::kind::REQUEST, 0, 3, &[0; 15]))
        .await;
    let reply = peer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!((reply.call_id, reply.status()), (3, raw::status::DECODE));
    assert_connection_serves(&mut peer).await;

    // A frame cut short, then the peer leaves: the server says so and closes.
    let frame = raw::hold(1, BUDGET, 1u64, 1u32);
    let mut cut = RawConn::handshake(addr).await;
    cut.send(&frame[..frame.len() - 3]).await;
    cut.stream.shutdown().await.unwrap();
    let (frames, _) = cut.frames_until_closed(PROMPTLY).await;
    assert!(
        frames
            .iter()
            .all(|f| f.kind == raw::kind::GOAWAY && f.goaway_reason() == raw::goaway::PROTOCOL),
        "{frames:?}"
    );
    assert_eq!(probe.started(), 0);
    assert_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_magic_is_closed_without_an_answer() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let mut peer = RawConn::connect(addr).await;
    peer.send(&raw::hello_with(b"ZRPX", 1)).await;
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    assert!(
        frames.is_empty(),
        "a non-RPC peer learns nothing: {frames:?}"
    );

    // Another protocol altogether: "GET " read as a length is over 1 GB.
    let mut http = RawConn::connect(addr).await;
    http.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (frames, _) = http.frames_until_closed(PROMPTLY).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_version_gets_the_servers_hello_then_a_close() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::connect(server.local_addr()).await;
    peer.send(&raw::hello_with(b"ZRPC", 2)).await;
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].kind, raw::kind::HELLO);
    assert_eq!(
        &frames[0].payload[..6],
        b"ZRPC\x00\x01",
        "so the client can name both versions"
    );
    assert_serves(server.local_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kinds_flags_and_misplaced_frames_close_only_that_connection() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let bystander = probe_client(addr).await;
    let in_flight = tokio::spawn(bystander.hold(500, 7));
    probe
        .wait_for("the bystander's call to start", PROMPTLY, |p| {
            p.started() == 1
        })
        .await;

    let bad_frames = [
        ("an unknown kind", raw::frame(99, 0, 0, &[])),
        (
            "a flag v1 does not allow",
            raw::frame(raw::kind::PING, 0b01, 1, &[]),
        ),
        (
            "a response from a client",
            raw::frame(raw::kind::RESPONSE, 0, 1, &[0]),
        ),
        ("a second hello", raw::hello()),
        ("a length under the header's", vec![0, 0, 0, 3, 1, 2, 3]),
        (
            "a length over the frame limit",
            vec![0x7F, 0xFF, 0xFF, 0xFF, 2],
        ),
    ];
    for (what, frame) in bad_frames {
        let mut peer = RawConn::handshake(addr).await;
        peer.send(&frame).await;
        let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
        let last = frames
            .last()
            .unwrap_or_else(|| panic!("{what}: closed without a GoAway"));
        assert_eq!(
            last.goaway_reason(),
            raw::goaway::PROTOCOL,
            "{what}: {frames:?}"
        );
    }
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        7,
        "the bystander's call finished"
    );
    assert_eq!(bystander.hold(1, 8).await.unwrap(), 8);
}

/// xorshift64: reproducible garbage without a dependency.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_or_after_the_handshake_closes_only_that_connection() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    for seed in 1..=20u64 {
        let bytes = garbage(seed, 64 + (seed as usize * 97) % 4096);
        let mut peer = if seed % 2 == 0 {
            RawConn::handshake(addr).await
        } else {
            RawConn::connect(addr).await
        };
        let _ = peer.try_send(&bytes).await;
        let _ = peer.stream.shutdown().await;
        // Closed by the server (bad frame) or after our FIN: never left hanging.
        peer.frames_until_closed(Duration::from_secs(10)).await;
    }
    assert_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_own_call_only() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let client = probe_client(server.local_addr()).await;
    let neighbours: Vec<_> = (0..10).map(|i| tokio::spawn(client.hold(100, i))).collect();
    let err = client.explode("kaboom".into()).await.unwrap_err();
    assert!(
        matches!(&err, rpc::Error::Panicked { method: "Probe.explode", message } if message == "kaboom"),
        "{err}"
    );
    for (i, call) in neighbours.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u32);
    }
    assert_eq!(server.connections(), 1, "the same connection goes on");
    assert_eq!(client.hold(1, 99).await.unwrap(), 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_garbage_senders_do_not_slow_a_good_client() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let client = CalculatorClient::connect(addr).await.unwrap();
    let calls = |n: i64| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            for i in 0..n {
                assert_eq!(client.add(i, 1).await.unwrap(), i + 1);
            }
            started.elapsed()
        }
    };
    let quiet = calls(200).await;

    // 200 idle connections, half of them past the handshake, half not.
    let mut idle = Vec::new();
    for i in 0..200 {
        idle.push(if i % 2 == 0 {
            RawConn::handshake(addr).await
        } else {
            RawConn::connect(addr).await
        });
    }
    // Garbage senders: connect, spray, get closed, again.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..4u64)
        .map(|s| {
            let (stop, sent) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                for round in 0..10_000u64 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let mut peer = RawConn::handshake(addr).await;
                    let _ = peer.try_send(&garbage(s * 100_000 + round, 2048)).await;
                    let _ = peer.stream.shutdown().await;
                    peer.frames_until_closed(Duration::from_secs(10)).await;
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();

    let busy = calls(200).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    eprintln!(
        "200 calls: {quiet:?} alone, {busy:?} beside 200 idle connections and {} garbage connections",
        sent.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // Generous: the point is that nothing stalls the good client, not speed.
    assert!(
        busy < quiet * 20 + Duration::from_secs(2),
        "{quiet:?} alone, {busy:?} under attack"
    );
    drop(idle);
}

/// A method whose arguments are all primitive scalars (`hold(u64, u32)`) is
/// decoded without the guard against deep or huge input, which such values
/// cannot be, but not without checks: trailing bytes, a value cut short, a
/// varint marker whose bytes are missing and one too wide for its type each
/// get a Decode error, and the connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scalar_arguments_get_a_decode_error_too() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let good = raw::args(&(0u64, 7u32));
    let mut trailing = good.clone();
    trailing.push(0);
    let cut = good[..good.len() - 1].to_vec();
    // 251: a u16 follows, but nothing does.
    let missing = vec![251];
    // 253 (a u64 follows) for the u32 tag: wider than the type.
    let mut too_wide = raw::args(&(0u64,));
    too_wide.push(253);
    too_wide.extend_from_slice(&u64::MAX.to_le_bytes());
    for (what, args) in [
        ("trailing", trailing),
        ("cut", cut),
        ("missing", missing),
        ("too wide", too_wide),
    ] {
        let (mut peer, reply) = reply_to(server.local_addr(), "Probe.hold", &args).await;
        assert_eq!(
            reply.status(),
            raw::status::DECODE,
            "{what}: {}",
            reply.message()
        );
        assert_connection_serves(&mut peer).await;
    }
    assert_eq!(probe.started(), 0, "a handler ran on bad arguments");
    let (_, reply) = reply_to(server.local_addr(), "Probe.hold", &good).await;
    assert_eq!(reply.value::<u32>(), 7);
}

// ---------------------------------------------------------------------------
// Protocol errors on a current-thread server.

/// A protocol error from a peer with a handler still running, on a
/// current-thread server: the connection's driver ends at once, and its
/// GoAway, queued after the driver ended, must still be written before the
/// close, so the peer learns why. The handler is dropped and the server
/// serves on.
#[tokio::test]
async fn a_current_thread_server_sends_goaway_after_a_protocol_error_with_handlers_running() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    peer.send(&raw::hold(1, Duration::from_secs(60), u64::MAX, 1u32))
        .await;
    probe
        .wait_for("the handler to start", PROMPTLY, |p| p.started() == 1)
        .await;
    peer.send(&raw::frame(raw::kind::RESPONSE, 0, 1, &[0]))
        .await;
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    assert!(
        frames
            .iter()
            .any(|f| f.kind == raw::kind::GOAWAY && f.goaway_reason() == raw::goaway::PROTOCOL),
        "{frames:?}"
    );
    probe
        .wait_for("the handler to be dropped", PROMPTLY, |p| p.dropped() == 1)
        .await;
    assert_serves(server.local_addr()).await;
}

/// A duplicate of an in-flight call id whose handler would finish in its
/// first poll (on a current-thread server, run in the driver before any
/// entry is made for it) is caught before it runs: a protocol error, and
/// no Response for it. Once the connection's calls are gone, the same id is
/// free again on a new connection.
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
    // Once the in-flight calls are gone, the id is free again.
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

/// Before the handshake, a frame may be only as long as a Hello can be: a
/// stranger's claim of a large frame is refused at once, not buffered while
/// the handshake timeout runs.
#[tokio::test]
async fn a_large_frame_before_the_handshake_is_refused_at_once() {
    let (server, _probe) = start_probe(rpc::Server::builder()).await;
    let mut conn = RawConn::connect(server.local_addr()).await;
    let hello_claiming_a_mib = raw::frame(raw::kind::HELLO, 0, 0, &vec![0u8; 1 << 20]);
    conn.send(&hello_claiming_a_mib[..64 * 1024]).await;
    // Refused: the server closes without reading the rest (10 s before the
    // handshake timeout would close it).
    match conn.next_frame(Duration::from_secs(5)).await {
        Err(_) => {}
        Ok(frame) => panic!("the server answered {frame:?}"),
    }
    server.shutdown().await;
}
