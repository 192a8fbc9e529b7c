//! The schema check: a client and a server built from different versions of
//! one trait (`v1` and `v2` below, both `Calc` on the wire). A method whose
//! argument, return or stream item type changed is refused with
//! `SchemaMismatch` naming both shapes, before the server decodes anything
//! (its handler never runs), and the connection stays up; what encodes the
//! same (renamed arguments, `&str` for `String`, reordered methods) stays
//! compatible; a method only the client has is `UnknownMethod`. Through a
//! balanced channel, a call refused by a server of the other version goes
//! on to one of its own. A server that does not advertise the check gets
//! requests without a fingerprint; the wire bytes are checked by hand.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rpc::discover::Static;
use support::hand::{self, PROMPTLY};
use support::raw::{self, RawConn};

/// The first version of the trait.
mod v1 {
    #[rpc::service(name = "Calc")]
    pub(crate) trait Calc {
        async fn add(&self, a: i64, b: i64) -> i64;
        async fn neg(&self, a: i64) -> i64;
        async fn greet(&self, name: String) -> String;
        async fn label(&self, id: u32) -> String;
        async fn count(&self, n: u32) -> rpc::Stream<u32>;
        async fn double(&self, x: u32) -> u32;
        async fn total(&self, items: rpc::Stream<u32>) -> u64;
    }
}

/// The second: methods reordered, one argument, one return and one stream
/// item type changed, an argument renamed, a borrow for an owned type, a
/// new method.
mod v2 {
    #[rpc::service(name = "Calc")]
    pub(crate) trait Calc {
        async fn neg(&self, a: i64) -> i64;
        async fn add(&self, a: String, b: i64) -> i64;
        async fn greet(&self, name: &str) -> std::string::String;
        async fn label(&self, id: u32) -> u64;
        async fn count(&self, n: u32) -> rpc::Stream<u64>;
        async fn double(&self, value: u32) -> u32;
        async fn total(&self, items: rpc::Stream<u64>) -> u64;
        async fn mul(&self, a: i64, b: i64) -> i64;
    }
}

/// A v1 server that counts the handlers it ran.
#[derive(Default, Clone)]
struct V1(Arc<AtomicUsize>);

impl V1 {
    fn ran(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn run(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl v1::Calc for V1 {
    async fn add(&self, a: i64, b: i64) -> i64 {
        self.run();
        a + b
    }
    async fn neg(&self, a: i64) -> i64 {
        self.run();
        -a
    }
    async fn greet(&self, name: String) -> String {
        self.run();
        format!("hello {name}")
    }
    async fn label(&self, id: u32) -> String {
        self.run();
        id.to_string()
    }
    async fn count(&self, n: u32) -> rpc::Stream<u32> {
        self.run();
        rpc::Stream::iter(0..n)
    }
    async fn double(&self, x: u32) -> u32 {
        self.run();
        x * 2
    }
    async fn total(&self, items: rpc::Stream<u32>) -> u64 {
        self.run();
        items
            .map(|i| u64::from(i.unwrap_or(0)))
            .fold(0, |a, b| async move { a + b })
            .await
    }
}

/// A v2 server.
struct V2;

impl v2::Calc for V2 {
    async fn neg(&self, a: i64) -> i64 {
        -a
    }
    async fn add(&self, a: String, b: i64) -> i64 {
        a.len() as i64 + b
    }
    async fn greet(&self, name: &str) -> String {
        format!("hi {name}")
    }
    async fn label(&self, id: u32) -> u64 {
        id.into()
    }
    async fn count(&self, n: u32) -> rpc::Stream<u64> {
        rpc::Stream::iter(0..u64::from(n))
    }
    async fn double(&self, value: u32) -> u32 {
        value * 2
    }
    async fn total(&self, items: rpc::Stream<u64>) -> u64 {
        items
            .map(|i| i.unwrap_or(0))
            .fold(0, |a, b| async move { a + b })
            .await
    }
    async fn mul(&self, a: i64, b: i64) -> i64 {
        a * b
    }
}

async fn v1_server() -> (rpc::ServerHandle, V1) {
    let service = V1::default();
    let server = rpc::Server::builder()
        .add_service(v1::CalcServer::new(service.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    (server, service)
}

async fn v2_server() -> rpc::ServerHandle {
    rpc::Server::builder()
        .add_service(v2::CalcServer::new(V2))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// `e` is a schema mismatch of `method` between these two shapes, which
/// did not run and will not succeed when retried.
fn assert_mismatch(e: &rpc::Error, method: &str, client: &str, server: &str) {
    let rpc::Error::SchemaMismatch {
        method: m,
        client: c,
        server: s,
    } = e
    else {
        panic!("expected SchemaMismatch, got {e:?}")
    };
    assert_eq!((*m, c.as_str(), s.as_str()), (method, client, server));
    let text = e.to_string();
    assert!(text.starts_with(&format!("{method}: ")), "{text}");
    assert!(text.contains(client) && text.contains(server), "{text}");
    assert!(text.contains("different versions of the trait"), "{text}");
    assert!(!e.may_have_run() && !e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn a_changed_argument_type_is_refused_before_the_handler_runs() {
    let (server, v1) = v1_server().await;
    let calc = v2::CalcClient::connect(server.local_addr()).await.unwrap();
    let e = calc.add("two".into(), 3).await.unwrap_err();
    assert_mismatch(
        &e,
        "Calc.add",
        "add(String, i64) -> i64",
        "add(i64, i64) -> i64",
    );
    assert_eq!(v1.ran(), 0, "the handler must not run");
    // The next call runs (that it goes out on the same connection is
    // checked on the wire, below).
    assert_eq!(calc.neg(5).await.unwrap(), -5);
    assert_eq!(v1.ran(), 1);
}

#[tokio::test]
async fn a_changed_return_type_is_refused() {
    let (server, v1) = v1_server().await;
    let calc = v2::CalcClient::connect(server.local_addr()).await.unwrap();
    let e = calc.label(7).await.unwrap_err();
    assert_mismatch(
        &e,
        "Calc.label",
        "label(u32) -> u64",
        "label(u32) -> String",
    );
    assert_eq!(v1.ran(), 0);
}

#[tokio::test]
async fn a_changed_stream_item_type_is_refused_and_the_stream_never_opens() {
    let (server, v1) = v1_server().await;
    let calc = v2::CalcClient::connect(server.local_addr()).await.unwrap();
    let e = calc.count(3).await.unwrap_err();
    assert_mismatch(
        &e,
        "Calc.count",
        "count(u32) -> Stream<u64>",
        "count(u32) -> Stream<u32>",
    );
    assert_eq!(v1.ran(), 0);
    // The same method from a client of the server's version streams.
    let same = v1::CalcClient::connect(server.local_addr()).await.unwrap();
    let items: Vec<u32> = same
        .count(3)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, [0, 1, 2]);
}

/// A client stream's changed item type: refused before the handler runs,
/// its items (sent as soon as the request went) dropped by the server as
/// for any failed call, and the connection kept.
#[tokio::test]
async fn a_changed_client_stream_item_type_is_refused_and_its_items_dropped() {
    let (server, v1) = v1_server().await;
    let calc = v2::CalcClient::connect(server.local_addr()).await.unwrap();
    let items = rpc::Stream::iter((0..1000u64).collect::<Vec<_>>());
    let e = calc.total(items).await.unwrap_err();
    assert_mismatch(
        &e,
        "Calc.total",
        "total(Stream<u64>) -> u64",
        "total(Stream<u32>) -> u64",
    );
    assert_eq!(v1.ran(), 0);
    assert_eq!(calc.neg(9).await.unwrap(), -9);
    let same = v1::CalcClient::connect(server.local_addr()).await.unwrap();
    assert_eq!(same.total(rpc::Stream::iter(1..=4u32)).await.unwrap(), 10);
}

#[tokio::test]
async fn what_encodes_the_same_stays_compatible() {
    let (server, v1) = v1_server().await;
    let calc = v2::CalcClient::connect(server.local_addr()).await.unwrap();
    // Reordered in the trait, renamed argument, `&str` for `String` (and
    // a full path for `String`).
    assert_eq!(calc.neg(2).await.unwrap(), -2);
    assert_eq!(calc.double(21).await.unwrap(), 42);
    assert_eq!(calc.greet("ann").await.unwrap(), "hello ann");
    assert_eq!(v1.ran(), 3);
}

#[tokio::test]
async fn a_method_only_the_client_has_is_unknown_and_old_ones_keep_working() {
    let (server, v1) = v1_server().await;
    let calc = v2::CalcClient::connect(server.local_addr()).await.unwrap();
    let e = calc.mul(6, 7).await.unwrap_err();
    assert!(
        matches!(e, rpc::Error::UnknownMethod { method: "Calc.mul" }),
        "{e:?}"
    );
    assert_eq!(calc.neg(1).await.unwrap(), -1);
    // And an old client against the new server: its unchanged methods work.
    let new = v2_server().await;
    let old = v1::CalcClient::connect(new.local_addr()).await.unwrap();
    assert_eq!(old.double(4).await.unwrap(), 8);
    assert_eq!(old.greet("bo".into()).await.unwrap(), "hi bo");
    let e = old.add(1, 2).await.unwrap_err();
    assert_mismatch(
        &e,
        "Calc.add",
        "add(i64, i64) -> i64",
        "add(String, i64) -> i64",
    );
    assert_eq!(v1.ran(), 1);
}

/// During a rolling deploy: a call refused by a server of the other version
/// goes on to a server of its own, within the call (it did not run).
#[tokio::test]
async fn a_balanced_channel_takes_a_refused_call_to_a_server_of_its_version() {
    let (old, v1) = v1_server().await;
    let new = v2_server().await;
    let channel = rpc::Channel::balanced(Static::new([old.local_addr(), new.local_addr()]))
        .connect()
        .await
        .unwrap();
    let calc = v2::CalcClient::new(channel);
    for i in 0..8 {
        assert_eq!(calc.add("abc".into(), i).await.unwrap(), 3 + i);
    }
    assert_eq!(v1.ran(), 0);
    // Unchanged methods run on either.
    for _ in 0..8 {
        assert_eq!(calc.neg(3).await.unwrap(), -3);
    }
}

#[tokio::test]
async fn a_balanced_channel_of_servers_of_the_other_version_reports_the_mismatch() {
    let (a, ran_a) = v1_server().await;
    let (b, ran_b) = v1_server().await;
    let channel = rpc::Channel::balanced(Static::new([a.local_addr(), b.local_addr()]))
        .connect()
        .await
        .unwrap();
    let calc = v2::CalcClient::new(channel);
    let e = calc.label(1).await.unwrap_err();
    assert_mismatch(
        &e,
        "Calc.label",
        "label(u32) -> u64",
        "label(u32) -> String",
    );
    assert_eq!(ran_a.ran() + ran_b.ran(), 0);
    assert_eq!(calc.neg(1).await.unwrap(), -1);
}

/// A Request as a client of this build sends it to a server that checks:
/// flagged, with the fingerprint after the head.
fn flagged_request(call_id: u64, method: &str, fingerprint: u64, args: &[u8]) -> Vec<u8> {
    let mut p = rpc::protocol::method_id(method).to_be_bytes().to_vec();
    p.extend_from_slice(&5_000_000u64.to_be_bytes());
    p.extend_from_slice(&fingerprint.to_be_bytes());
    p.extend_from_slice(args);
    raw::frame(raw::kind::REQUEST, 0x04, call_id, &p)
}

/// On the wire: the server advertises the check (Hello feature bit 3), a
/// wrong fingerprint gets status 12 with the server's shape, and the same
/// connection then serves a right one and an unflagged one.
#[tokio::test]
async fn the_server_answers_a_wrong_fingerprint_with_its_shape_on_the_same_connection() {
    let (server, v1) = v1_server().await;
    let mut conn = RawConn::connect(server.local_addr()).await;
    conn.send(&raw::hello()).await;
    let hello = conn.next_frame(PROMPTLY).await.unwrap();
    let features = u32::from_be_bytes(hello.payload[6..10].try_into().unwrap());
    assert_ne!(features & 0x08, 0, "the server advertises SCHEMA");

    let args = raw::args(&(1i64, 2i64));
    conn.send(&flagged_request(1, "Calc.add", 0xDEAD, &args))
        .await;
    let reply = conn.next_reply(PROMPTLY).await.unwrap();
    assert_eq!((reply.call_id, reply.status()), (1, 12));
    assert_eq!(reply.message(), "add(i64, i64) -> i64");
    assert_eq!(v1.ran(), 0);

    let right = fnv1a("add(i64, i64) -> i64");
    conn.send(&flagged_request(2, "Calc.add", right, &args))
        .await;
    assert_eq!(conn.next_reply(PROMPTLY).await.unwrap().value::<i64>(), 3);
    let unflagged = raw::request(3, "Calc.add", Duration::from_secs(5), &args);
    conn.send(&unflagged).await;
    assert_eq!(conn.next_reply(PROMPTLY).await.unwrap().value::<i64>(), 3);
    assert_eq!(v1.ran(), 2);

    // Flagged, but cut off inside the fingerprint: a Decode reply, and the
    // connection still serves.
    let full = flagged_request(4, "Calc.add", right, &[]);
    let mut short = full[..full.len() - 3].to_vec();
    let len = short.len() as u32 - 4;
    short[..4].copy_from_slice(&len.to_be_bytes());
    conn.send(&short).await;
    let reply = conn.next_reply(PROMPTLY).await.unwrap();
    assert_eq!((reply.call_id, reply.status()), (4, raw::status::DECODE));
    conn.send(&flagged_request(5, "Calc.add", right, &args))
        .await;
    assert_eq!(conn.next_reply(PROMPTLY).await.unwrap().value::<i64>(), 3);
    assert_eq!(v1.ran(), 3);
}

/// A client sends the fingerprint only to a server that advertised the
/// check: an older server (features 0) gets the request without it.
#[tokio::test]
async fn a_server_that_does_not_check_gets_requests_without_a_fingerprint() {
    for (features, flagged) in [(0u32, false), (0x08, true)] {
        let (listener, addr) = hand::listen().await;
        let connect = v1::CalcClient::connect(addr);
        let accept = async {
            let (stream, _) = listener.accept().await.unwrap();
            RawConn::accept_handshake_with(stream, &hello_with_features(features)).await
        };
        let (calc, mut peer) = tokio::join!(connect, accept);
        let calc = calc.unwrap();
        let call = tokio::spawn(async move { calc.add(1, 2).await });
        let frame = peer.next_frame(PROMPTLY).await.unwrap();
        let args = raw::args(&(1i64, 2i64));
        if flagged {
            assert_eq!(frame.flags, 0x04);
            assert_eq!(frame.payload.len(), 24 + args.len());
            let sent = u64::from_be_bytes(frame.payload[16..24].try_into().unwrap());
            assert_eq!(sent, fnv1a("add(i64, i64) -> i64"));
        } else {
            assert_eq!(frame.flags, 0);
            assert_eq!(frame.payload.len(), 16 + args.len());
        }
        assert!(frame.payload.ends_with(&args));
        peer.send(&hand::ok(frame.call_id, &3i64)).await;
        assert_eq!(call.await.unwrap().unwrap(), 3);
    }
}

/// A whole Hello (version 1) advertising `features`.
fn hello_with_features(features: u32) -> Vec<u8> {
    let mut p = b"ZRPC".to_vec();
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&features.to_be_bytes());
    p.extend_from_slice(&(16u32 << 20).to_be_bytes());
    p.extend_from_slice(&(256u32 << 10).to_be_bytes());
    raw::frame(raw::kind::HELLO, 0, 0, &p)
}

/// The fingerprint of a shape: 64-bit FNV-1a, as method ids.
fn fnv1a(shape: &str) -> u64 {
    rpc::protocol::method_id(shape)
}
