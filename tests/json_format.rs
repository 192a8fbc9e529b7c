//! The JSON format (feature `json`): every shape of argument, return value
//! and stream round-trips over a JSON channel, as over bincode; bincode and
//! JSON clients share one server; a server that does not accept a format
//! refuses it at the handshake with an error that names both formats; a
//! balanced channel takes the format too; `Channel::call_json` calls any
//! unary method with JSON written by hand. (Hostile JSON is in
//! `hostile_json.rs`.)

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use rpc::{Error, Format};
use rpc_suite::feed::{FeedClient, FeedError, FeedImpl, FeedServer, Item};
use serde_json::json;
use support::raw::{self, RawConn};
use support::transport::{connect_with, over_all_transports};
use support::*;

const REFUSED_JSON: &str = "the client asked for the JSON format; this server accepts only bincode";

/// Borrowed arguments: the client's methods take them by reference.
#[rpc::service]
pub trait Borrowed {
    /// The parts joined with `sep`.
    async fn join(&self, parts: &[String], sep: &str) -> String;
    /// `x * y * scale`.
    async fn area(&self, corner: &Point, scale: &u32) -> i64;
    /// The bytes added up.
    async fn sum(&self, data: &[u8]) -> u64;
    /// A 1-tuple, which is an array in JSON (a bare scalar is not).
    async fn single(&self, n: u64) -> (u64,);
}

struct BorrowedImpl;

impl Borrowed for BorrowedImpl {
    async fn join(&self, parts: &[String], sep: &str) -> String {
        parts.join(sep)
    }

    async fn area(&self, corner: &Point, scale: &u32) -> i64 {
        i64::from(corner.x) * i64::from(corner.y) * i64::from(*scale)
    }

    async fn sum(&self, data: &[u8]) -> u64 {
        data.iter().map(|&b| u64::from(b)).sum()
    }

    async fn single(&self, n: u64) -> (u64,) {
        (n + 1,)
    }
}

/// The test services, the feed and `Borrowed` on `builder`.
fn services(builder: rpc::server::Builder) -> rpc::server::Builder {
    with_services(builder)
        .add_service(FeedServer::new(FeedImpl::default()))
        .add_service(BorrowedServer::new(BorrowedImpl))
}

/// A channel to `server` in `format`.
async fn channel(server: &rpc::ServerHandle, format: Format) -> rpc::Channel {
    connect_with(rpc::Channel::builder().format(format), server.address())
        .await
        .unwrap_or_else(|e| panic!("connecting in {format}: {e}"))
}

/// Every unary shape the core tests use, through `channel`.
async fn unary_shapes(channel: rpc::Channel) {
    let c = ShapesClient::new(channel.clone());
    c.unit().await.unwrap();
    assert_eq!(
        c.string("héllo \"\\ \u{1F600}".into()).await.unwrap(),
        "\u{1F600} \\\" olléh"
    );
    let p = Point {
        x: 1,
        y: -2,
        label: Some("a".into()),
    };
    let flipped = Point {
        x: -2,
        y: 1,
        label: Some("A".into()),
    };
    assert_eq!(c.structs(p).await.unwrap(), flipped);
    let origin = Point {
        x: 0,
        y: 0,
        label: None,
    };
    for s in [
        Shape::Circle {
            center: origin.clone(),
            radius: 1.5,
        },
        Shape::Polygon(vec![origin.clone(); 3]),
        Shape::Empty,
    ] {
        assert_eq!(c.enums(s.clone()).await.unwrap(), s);
    }
    assert_eq!(
        c.tuple((7, i128::MIN, true)).await.unwrap(),
        (true, i128::MIN, 7)
    );
    let some = Some(vec!["a".into(), "b".into()]);
    assert_eq!(c.option(some).await.unwrap(), Some(2));
    assert_eq!(c.option(None).await.unwrap(), None);
    let m = HashMap::from([("x".to_string(), vec![1, 2]), ("y".to_string(), vec![])]);
    let mut counted = c.map(m).await.unwrap();
    counted.sort();
    assert_eq!(counted, vec![("x".into(), 3), ("y".into(), 0)]);
    let ok = Point {
        x: 1,
        y: 2,
        label: None,
    };
    assert_eq!(c.result(false).await.unwrap(), Ok(ok));
    let err = AppError {
        code: 404,
        message: "no such point".into(),
    };
    assert_eq!(c.result(true).await.unwrap(), Err(err));
    let many = c.many(1, 2, 3, u64::MAX, 0.5, 'λ', vec![-1, 0]).await;
    assert_eq!(many.unwrap(), format!("1 2 3 {} 0.5 λ [-1, 0]", u64::MAX));
    let bytes: Vec<u8> = (0..=255).collect();
    assert_eq!(c.echo(bytes.clone()).await.unwrap(), bytes);
    assert_eq!(c.make(1000).await.unwrap().len(), 1000);

    let calc = CalculatorClient::new(channel.clone());
    assert_eq!(calc.add(2, -3).await.unwrap(), -1);
    assert_eq!(calc.div(6, 3).await.unwrap(), Ok(2));
    assert_eq!(calc.div(6, 0).await.unwrap(), Err(MathError::DivideByZero));
    calc.ping().await.unwrap();

    let b = BorrowedClient::new(channel);
    let parts = ["a".to_string(), "b".to_string()];
    assert_eq!(b.join(&parts, "+").await.unwrap(), "a+b");
    assert_eq!(b.area(&origin, &3).await.unwrap(), 0);
    assert_eq!(b.sum(&[1, 2, 255]).await.unwrap(), 258);
    assert_eq!(b.single(u64::MAX - 1).await.unwrap(), (u64::MAX,));
}

/// Every streaming shape, through `channel`.
async fn stream_shapes(channel: rpc::Channel) {
    let feed = FeedClient::new(channel);
    // Server streaming, more items than one window (the client's 2 MiB)
    // holds: in JSON each byte of an item's data is a number of 4 bytes.
    let items: Vec<Item> = feed
        .watch(2_000, 300)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items.len(), 2_000);
    assert!(items.iter().enumerate().all(|(i, it)| it.seq == i as u64));
    assert!(items.iter().all(|it| it.data == vec![0xA5; 300]));
    // An application error in place of the stream, and the stream.
    let keys: Vec<String> = feed
        .lookup("k/".into())
        .await
        .unwrap()
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(keys, ["k/a", "k/b", "k/c"]);
    assert!(matches!(
        feed.lookup(String::new()).await,
        Ok(Err(FeedError::EmptyPrefix))
    ));
    // Client streaming.
    let chunks = rpc::Stream::iter((0..20).map(|i| vec![i as u8; 10_000]));
    assert_eq!(feed.upload(chunks).await.unwrap(), 200_000);
    // Both ways.
    let (tx, inbox) = rpc::stream::channel();
    let mut replies = feed.chat(inbox).await.unwrap();
    for word in ["a", "b"] {
        tx.send(word.to_string()).await.unwrap();
        assert_eq!(
            replies.next().await.unwrap().unwrap(),
            format!("echo: {word}")
        );
    }
    drop(tx);
    assert_eq!(replies.next().await.unwrap().unwrap(), "done: 2");
    assert!(replies.next().await.is_none());
}

over_all_transports!(
    every_shape_round_trips_over_json,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn every_shape_round_trips_over_json(transport: Transport) {
    let server = transport.serve(services(rpc::Server::builder())).await;
    let json = channel(&server, Format::Json).await;
    unary_shapes(json.clone()).await;
    stream_shapes(json).await;
}

/// The values really are JSON text on the wire, both ways, and the
/// server's Hello says it answers in JSON.
#[tokio::test]
async fn a_json_connection_carries_json_text_both_ways() {
    let server = Transport::Tcp.serve(services(rpc::Server::builder())).await;
    let addr = server.local_addr();
    let mut peer = RawConn::connect(addr).await;
    peer.send(&raw::hello_features(0x10)).await;
    let hello = peer.next_frame(Duration::from_secs(10)).await.unwrap();
    let features = u32::from_be_bytes(hello.payload[6..10].try_into().unwrap());
    assert_eq!(features & 0x10, 0x10, "the server answers in JSON");
    let budget = Duration::from_secs(10);
    peer.send(&raw::request(1, "Calculator.add", budget, b"[2, 40]"))
        .await;
    let reply = peer.next_reply(budget).await.unwrap();
    assert_eq!(
        (reply.status(), &reply.payload[1..]),
        (raw::status::OK, &b"42"[..])
    );
    peer.send(&raw::request(2, "Calculator.div", budget, b"[1,0]"))
        .await;
    let reply = peer.next_reply(budget).await.unwrap();
    assert_eq!(&reply.payload[1..], br#"{"Err":"DivideByZero"}"#);
    peer.send(&raw::request(3, "Shapes.unit", budget, b"null"))
        .await;
    let reply = peer.next_reply(budget).await.unwrap();
    assert_eq!(&reply.payload[1..], b"null");
}

/// One server, clients of both formats at once: each connection is
/// answered in its own client's format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bincode_and_json_clients_share_a_server() {
    let server = Transport::Tcp.serve(services(rpc::Server::builder())).await;
    let bincode = channel(&server, Format::Bincode).await;
    let json = channel(&server, Format::Json).await;
    let rounds = |channel: rpc::Channel| async move {
        for _ in 0..3 {
            unary_shapes(channel.clone()).await;
            stream_shapes(channel.clone()).await;
        }
    };
    tokio::join!(rounds(bincode), rounds(json));
}

/// A server restricted to bincode refuses a JSON client at the handshake:
/// connecting fails with an error naming both formats, and bincode clients
/// are served as before. A JSON-only server refuses bincode clients alike.
#[tokio::test]
async fn a_server_refuses_a_format_it_does_not_accept_with_a_clear_error() {
    let builder = rpc::Server::builder().accept_formats([Format::Bincode]);
    let server = Transport::Tcp.serve(services(builder)).await;
    let json = rpc::Channel::builder()
        .format(Format::Json)
        .connect(server.local_addr())
        .await;
    let err = json.expect_err("a bincode-only server took a JSON client");
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains(REFUSED_JSON), "{err}");
    let calc = CalculatorClient::new(channel(&server, Format::Bincode).await);
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);

    let builder = rpc::Server::builder().accept_formats([Format::Json]);
    let server = Transport::Tcp.serve(services(builder)).await;
    let err = rpc::Channel::connect(server.local_addr())
        .await
        .unwrap_err();
    let expected = "the client asked for the bincode format; this server accepts only JSON";
    assert!(err.to_string().contains(expected), "{err}");
    let calc = CalculatorClient::new(channel(&server, Format::Json).await);
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);

    let none = rpc::Server::builder()
        .accept_formats([])
        .bind("127.0.0.1:0")
        .await;
    assert!(matches!(none, Err(Error::Config(_))), "{none:?}");
}

/// The server's side of a refusal says the same: it sends its Hello,
/// which names the format it accepts, and closes the connection.
#[tokio::test]
async fn a_refusing_server_names_its_format_in_its_hello_and_closes() {
    let builder = rpc::Server::builder().accept_formats([Format::Bincode]);
    let server = Transport::Tcp.serve(services(builder)).await;
    let mut peer = RawConn::connect(server.local_addr()).await;
    peer.send(&raw::hello_features(0x10)).await;
    let (frames, _) = peer.frames_until_closed(Duration::from_secs(10)).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let features = u32::from_be_bytes(frames[0].payload[6..10].try_into().unwrap());
    assert_eq!(features & 0x10, 0, "the Hello names bincode");
}

/// A balanced channel speaks the format to every server it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balanced_channel_takes_the_format() {
    let a = Transport::Tcp.serve(services(rpc::Server::builder())).await;
    let b = Transport::Tcp.serve(services(rpc::Server::builder())).await;
    let discover = rpc::discover::Static::new([a.local_addr(), b.local_addr()]);
    let channel = rpc::Channel::balanced(discover)
        .format(Format::Json)
        .connect()
        .await
        .unwrap();
    unary_shapes(channel.clone()).await;
    stream_shapes(channel).await;

    let only_bincode = rpc::Server::builder().accept_formats([Format::Bincode]);
    let c = Transport::Tcp.serve(services(only_bincode)).await;
    let discover = rpc::discover::Static::new([c.local_addr()]);
    let balanced = rpc::Channel::balanced(discover).format(Format::Json);
    let refused = tokio::time::timeout(Duration::from_secs(30), balanced.connect()).await;
    assert!(matches!(refused, Ok(Err(_))), "{refused:?}");
}

#[tokio::test]
async fn call_json_calls_any_unary_method_with_hand_written_json() {
    let server = Transport::Tcp.serve(services(rpc::Server::builder())).await;
    let channel = channel(&server, Format::Json).await;
    assert_eq!(
        channel
            .call_json("Calculator.add", json!([2, 3]))
            .await
            .unwrap(),
        json!(5)
    );
    assert_eq!(
        channel
            .call_json("Calculator.div", json!([1, 0]))
            .await
            .unwrap(),
        json!({"Err": "DivideByZero"})
    );
    assert_eq!(
        channel
            .call_json("Calculator.ping", json!([]))
            .await
            .unwrap(),
        json!(null)
    );
    let point = json!({"x": 1, "y": -2, "label": "a"});
    let flipped = json!({"x": -2, "y": 1, "label": "A"});
    assert_eq!(
        channel
            .call_json("Shapes.structs", json!([point]))
            .await
            .unwrap(),
        flipped
    );
    let err = json!({"Err": {"code": 404, "message": "no such point"}});
    assert_eq!(
        channel
            .call_json("Shapes.result", json!([true]))
            .await
            .unwrap(),
        err
    );
    assert_eq!(
        channel
            .call_json("Shapes.echo", json!([[1, 2, 255]]))
            .await
            .unwrap(),
        json!([1, 2, 255])
    );
    assert_eq!(
        channel
            .call_json("Borrowed.single", json!([1]))
            .await
            .unwrap(),
        json!([2])
    );
    assert_eq!(
        channel
            .call_json("Borrowed.join", json!([["a", "b"], "-"]))
            .await
            .unwrap(),
        json!("a-b")
    );

    // Arguments of the wrong type: the server's Decode error, naming the method.
    let err = channel
        .call_json("Calculator.add", json!(["two", 3]))
        .await
        .unwrap_err();
    let Error::Decode {
        method,
        side,
        message,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*method, *side),
        ("Calculator.add", "request on the server")
    );
    assert!(message.contains("invalid type"), "{message}");
    assert!(
        err.to_string()
            .starts_with("Calculator.add: could not decode the request on the server"),
        "{err}"
    );
    assert!(!err.may_have_run());
    // Too few, too many.
    let err = channel
        .call_json("Calculator.add", json!([1]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    let err = channel
        .call_json("Calculator.add", json!([1, 2, 3]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    // Not an array: refused before sending.
    let err = channel
        .call_json("Calculator.add", json!({"a": 1}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err:?}");
    // An unknown method.
    let err = channel
        .call_json("Calculator.nope", json!([]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnknownMethod {
                method: "Calculator.nope",
                ..
            }
        ),
        "{err:?}"
    );
    // The connection is fine after all that.
    assert_eq!(
        channel
            .call_json("Calculator.add", json!([20, 22]))
            .await
            .unwrap(),
        json!(42)
    );
}

#[tokio::test]
async fn call_json_on_a_bincode_channel_says_to_build_it_with_json() {
    let server = Transport::Tcp.serve(services(rpc::Server::builder())).await;
    let channel = channel(&server, Format::Bincode).await;
    let err = channel
        .call_json("Calculator.add", json!([2, 3]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains("format(rpc::Format::Json)"),
        "{err}"
    );
}

/// What a tool gets for a streaming method (which it cannot tell from a
/// unary one): the stream's head, `null`, for a method that returns a
/// stream; the deadline for one that waits for the client's stream.
#[tokio::test]
async fn call_json_of_a_streaming_method_gets_the_head_or_the_deadline() {
    let server = Transport::Tcp.serve(services(rpc::Server::builder())).await;
    let channel = channel(&server, Format::Json).await;
    assert_eq!(
        channel
            .call_json("Feed.watch", json!([3, 1]))
            .await
            .unwrap(),
        json!(null)
    );
    let short = channel.with_timeout(Duration::from_millis(300));
    let err = short.call_json("Feed.upload", json!([])).await.unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded { .. }), "{err:?}");
    // The connection serves on.
    assert_eq!(
        channel
            .call_json("Calculator.add", json!([1, 1]))
            .await
            .unwrap(),
        json!(2)
    );
}
