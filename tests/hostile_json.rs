//! Hostile JSON over real TCP, both ways: what `hostile.rs` sends a server
//! in bincode, sent in JSON on a connection whose Hello chose JSON (deep
//! nesting, bodies cut short, trailing garbage, wrong types, invalid UTF-8,
//! huge numbers, a huge frame, random bytes), and bad JSON from a server
//! played by hand to a real JSON client (replies and stream items), and
//! from a client into a real server's stream. Each gets a clear Decode
//! error naming the method, never a panic, and other calls and
//! connections go on.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc::{Error, Format};
use rpc_suite::feed::{FeedClient, FeedImpl, FeedServer};
use support::hand::{PROMPTLY, listen, next_request};
use support::probe::*;
use support::raw::{self, RawConn, RawFrame};
use tokio::io::AsyncWriteExt;

const BUDGET: Duration = Duration::from_secs(30);
/// The Hello features bit that chooses JSON.
const JSON: u32 = 0x10;

/// A connection past a handshake that chose JSON.
async fn json_peer(addr: SocketAddr) -> RawConn {
    let mut peer = RawConn::connect(addr).await;
    peer.send(&raw::hello_features(JSON)).await;
    let hello = peer.next_frame(PROMPTLY).await.expect("no Hello");
    assert_eq!(hello.kind, raw::kind::HELLO);
    assert_eq!(hello.payload[9] & 0x10, 0x10, "the server answers in JSON");
    peer
}

/// Sends `args` to `method` as call `id` on `peer` and returns the reply.
async fn reply(peer: &mut RawConn, id: u64, method: &str, args: &[u8]) -> RawFrame {
    peer.send(&raw::request(id, method, BUDGET, args)).await;
    let reply = peer.next_reply(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.call_id, id);
    reply
}

/// `args` to `method` get a Decode reply whose message contains `words`
/// (any of them), and the connection serves on.
async fn refused(peer: &mut RawConn, method: &str, args: &[u8], words: &[&str]) {
    let r = reply(peer, 1, method, args).await;
    let shown = String::from_utf8_lossy(&args[..args.len().min(40)]).into_owned();
    assert_eq!(r.status(), raw::status::DECODE, "{shown}: {}", r.message());
    let message = r.message();
    assert!(
        words.iter().any(|w| message.contains(w)),
        "{shown}: {message}"
    );
    serves(peer).await;
}

/// The connection still serves a good JSON call.
async fn serves(peer: &mut RawConn) {
    let r = reply(peer, 2, "Calculator.add", b"[20,22]").await;
    assert_eq!((r.status(), &r.payload[1..]), (raw::status::OK, &b"42"[..]));
}

/// A JSON client on its own connection.
async fn json_client(addr: SocketAddr) -> rpc::Channel {
    rpc::Channel::builder()
        .format(Format::Json)
        .connect(addr)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_100_000_deep_gets_a_decode_error_not_a_stack_overflow() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let mut peer = json_peer(server.local_addr()).await;
    let deep = ["[".repeat(100_000), "]".repeat(100_000)].concat();
    let limits = ["recursion limit", "nested deeper"];
    // Refused for its type at the first level, never read further.
    refused(&mut peer, "Probe.text", deep.as_bytes(), &["invalid type"]).await;
    let nodes = format!(
        "[{}\"Leaf\"{}]",
        "{\"Node\":".repeat(100_000),
        "}".repeat(100_000)
    );
    refused(&mut peer, "Probe.depth", nodes.as_bytes(), &limits).await;
    // Unclosed, as a peer would send it to save bytes.
    let unclosed = format!("[{}", "{\"Node\":".repeat(100_000));
    refused(&mut peer, "Probe.depth", unclosed.as_bytes(), &limits).await;

    // Reasonable nesting is fine.
    let probe = ProbeClient::new(json_client(server.local_addr()).await);
    assert_eq!(probe.depth(Nest::deep(100)).await.unwrap(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_and_trailing_garbage_get_a_decode_error() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let mut peer = json_peer(server.local_addr()).await;
    for cut in [&b"[\"abc"[..], b"[\"abc\"", b"[", b"", b"[\"a\\u12"] {
        refused(&mut peer, "Probe.text", cut, &["EOF", "end of"]).await;
    }
    refused(&mut peer, "Probe.hold", b"[1,", &["EOF"]).await;
    for trailing in [
        &b"[\"hi\"] x"[..],
        b"[\"hi\"]]",
        b"[\"hi\"][\"hi\"]",
        b"[\"hi\"]\0",
    ] {
        refused(&mut peer, "Probe.text", trailing, &["trailing"]).await;
    }
    refused(&mut peer, "Probe.hold", b"[1,7]7", &["trailing"]).await;
    // Whitespace around the text is JSON's own, and fine.
    let r = reply(&mut peer, 3, "Probe.text", b" \n[\"hi\"]\t ").await;
    assert_eq!(&r.payload[1..], b"2");
    assert_eq!(probe.started(), 0, "a handler ran on bad arguments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_and_counts_get_a_decode_error() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let mut peer = json_peer(server.local_addr()).await;
    let cases: [&[u8]; 8] = [
        b"[\"two\",2]",
        b"{\"a\":1,\"b\":2}",
        b"[1]",
        b"[1,2,3]",
        b"[1.5,2]",
        b"null",
        b"[true,2]",
        b"[[1],2]",
    ];
    for args in cases {
        // serde_json names one element too many as trailing characters.
        refused(&mut peer, "Calculator.add", args, &["invalid", "trailing"]).await;
    }
    let expected = ["invalid", "unknown variant", "expected"];
    refused(
        &mut peer,
        "Probe.depth",
        b"[{\"Branch\":\"Leaf\"}]",
        &expected,
    )
    .await;
    refused(
        &mut peer,
        "Probe.depth",
        b"[{\"Node\":\"Leaf\",\"x\":1}]",
        &expected,
    )
    .await;
    refused(&mut peer, "Probe.units", b"[[null,1]]", &expected).await;
    // A wrong type from a real client's point of view: `call_json`.
    let channel = json_client(server.local_addr()).await;
    let err = channel
        .call_json("Calculator.add", serde_json::json!([1, "x"]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Calculator.add: could not decode the request on the server"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_gets_a_decode_error() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let mut peer = json_peer(server.local_addr()).await;
    let words = [
        "invalid unicode",
        "expected value",
        "control character",
        "escape",
    ];
    for args in [
        &b"[\"a\xff\"]"[..],
        b"[\"\xc3\x28\"]",
        b"[\"\xed\xa0\x80\"]",
        b"[\"\xf0\x28\x8c\xbc\"]",
        b"\xff[\"a\"]",
        b"[\"\\ud800\"]",
        b"[\"a\x01\"]",
        b"[\"\\q\"]",
    ] {
        refused(&mut peer, "Probe.text", args, &words).await;
    }
    let channel = ProbeClient::new(json_client(server.local_addr()).await);
    assert_eq!(channel.text("é\u{1F600}".into()).await.unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_numbers_get_a_decode_error_at_once() {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let mut peer = json_peer(server.local_addr()).await;
    let words = ["out of range", "invalid", "expected"];
    for args in [
        &b"[1e400,2]"[..],
        b"[99999999999999999999999999999,2]",
        b"[-9223372036854775809,2]",
        b"[1e-99999999999,2]",
        b"[0x10,2]",
        b"[NaN,2]",
        b"[Infinity,2]",
    ] {
        refused(&mut peer, "Calculator.add", args, &words).await;
    }
    // A megabyte of digits, for an integer and inside a float.
    let started = Instant::now();
    let digits = format!("[{},2]", "9".repeat(1 << 20));
    refused(&mut peer, "Calculator.add", digits.as_bytes(), &words).await;
    let float = format!("[[0.{}]]", "1".repeat(1 << 20));
    refused(&mut peer, "Probe.units", float.as_bytes(), &words).await;
    assert!(started.elapsed() < Duration::from_secs(10), "it spun");
}

/// A frame over the server's limit closes that connection at once (its
/// length is read before anything is allocated); a large JSON body under
/// it decodes; other connections go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_frame_closes_only_its_connection() {
    let builder = rpc::Server::builder().max_frame(1 << 20);
    let (server, _) = start_probe(builder).await;
    let addr = server.local_addr();
    let bystander = json_client(addr).await;
    let mut peer = json_peer(addr).await;
    let mut claim = (2u32 << 20).to_be_bytes().to_vec();
    claim.extend_from_slice(&[raw::kind::REQUEST, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    claim.extend_from_slice(&[b' '; 4096]);
    peer.send(&claim).await;
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    assert!(
        frames.iter().all(|f| f.kind == raw::kind::GOAWAY),
        "{frames:?}"
    );

    // Under the limit: 100,000 units in 500 KB of JSON.
    let mut peer = json_peer(addr).await;
    let units = format!("[[{}null]]", "null,".repeat(99_999));
    let r = reply(&mut peer, 1, "Probe.units", units.as_bytes()).await;
    assert_eq!(&r.payload[1..], b"100000");
    assert_eq!(CalculatorClient::new(bystander).add(1, 2).await.unwrap(), 3);
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

/// Random bytes, and random JSON-looking text, as the arguments of every
/// method: a Decode reply each time, no panic, and the connection and a
/// neighbour go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_arguments_get_a_decode_error_and_nothing_else_is_hurt() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let neighbour = ProbeClient::new(json_client(addr).await);
    let held = tokio::spawn({
        let neighbour = neighbour.clone();
        async move { neighbour.hold(300, 9).await }
    });
    let mut peer = json_peer(addr).await;
    let alphabet = b"[]{}\",:0123456789.eE+-truefalsnl \\u";
    let methods = [
        "Probe.text",
        "Probe.depth",
        "Probe.units",
        "Probe.hold",
        "Calculator.add",
    ];
    for seed in 0..200u64 {
        let mut args = garbage(seed, 1 + seed as usize * 7);
        if seed % 2 == 0 {
            args.iter_mut()
                .for_each(|b| *b = alphabet[*b as usize % alphabet.len()]);
        }
        let method = methods[seed as usize % methods.len()];
        let r = reply(&mut peer, 10 + seed, method, &args).await;
        assert_eq!(r.kind, raw::kind::RESPONSE);
        if r.status() != raw::status::OK {
            assert_eq!(r.status(), raw::status::DECODE, "{}", r.message());
        }
    }
    serves(&mut peer).await;
    assert_eq!(held.await.unwrap().unwrap(), 9);
    assert_eq!(probe.completed(), 1, "only the neighbour's hold ran");
    assert_serves(addr).await;
}

// ---- streams: a hostile client against a real server ----

/// Items a server's handler cannot decode end its stream with an error in
/// their place (the feed's `upload` stops counting there), and the
/// connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_items_from_a_client_reach_the_handler_as_errors() {
    let feed = FeedImpl::default();
    let server = rpc::Server::builder()
        .add_service(FeedServer::new(feed.clone()))
        .add_service(CalculatorServer::new(Calc))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let deep = "[".repeat(100_000);
    for bad in [
        &b"[1,2"[..],
        b"[1,2] x",
        b"\"\xff\"",
        deep.as_bytes(),
        b"[256]",
        b"{}",
    ] {
        let mut peer = json_peer(server.local_addr()).await;
        peer.send(&raw::request(1, "Feed.upload", BUDGET, b"null"))
            .await;
        peer.send(&raw::stream_item(1, b"[1,2,3]")).await;
        peer.send(&raw::stream_item(1, bad)).await;
        peer.send(&raw::stream_item(1, b"[4]")).await;
        peer.send(&raw::clean_end(1)).await;
        let r = loop {
            let f = peer.next_reply(PROMPTLY).await.unwrap();
            if f.kind == raw::kind::RESPONSE {
                break f;
            }
        };
        let shown = String::from_utf8_lossy(&bad[..bad.len().min(20)]).into_owned();
        assert_eq!(&r.payload[1..], b"3", "{shown}: counted up to the bad item");
        serves(&mut peer).await;
    }
}

// ---- a hostile server against a real client ----

/// A JSON client of the feed and the calculator on a server played by
/// hand that answered its Hello in JSON.
async fn client_on_raw_server() -> (rpc::Channel, RawConn) {
    let (listener, addr) = listen().await;
    let accept = async {
        let (stream, _) = listener.accept().await.unwrap();
        RawConn::accept_handshake_with(stream, &raw::hello_features(JSON)).await
    };
    let (channel, peer) = tokio::join!(json_client(addr), accept);
    (channel, peer)
}

/// An Ok Response of call `id` carrying `value` as it is.
fn ok(id: u64, value: &[u8]) -> Vec<u8> {
    raw::frame(
        raw::kind::RESPONSE,
        0,
        id,
        &[&[raw::status::OK][..], value].concat(),
    )
}

/// Bad JSON in a reply is a Decode error of the response, naming the
/// method; the connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replies_get_a_decode_error_naming_the_method() {
    let (channel, mut peer) = client_on_raw_server().await;
    let calc = CalculatorClient::new(channel.clone());
    let deep = "[".repeat(100_000);
    for bad in [
        &b"\"5\""[..],
        b"5 5",
        b"",
        b"1e999",
        b"\xff",
        deep.as_bytes(),
        b"{\"Ok\":",
    ] {
        let call = tokio::spawn({
            let calc = calc.clone();
            async move { calc.add(2, 3).await }
        });
        let req = next_request(&mut peer).await;
        assert_eq!(req.args, b"[2,3]");
        peer.send(&ok(req.id, bad)).await;
        let err = call.await.unwrap().unwrap_err();
        let Error::Decode { method, side, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*method, *side), ("Calculator.add", "response"), "{err}");
    }
    // `Result<i64, MathError>`: a variant the client does not know.
    let call = tokio::spawn({
        let calc = calc.clone();
        async move { calc.div(1, 0).await }
    });
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, b"{\"Err\":\"Overflow\"}")).await;
    let err = call.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
    // Then a good reply on the same connection.
    let call = tokio::spawn(async move { calc.add(2, 3).await });
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, b"5")).await;
    assert_eq!(call.await.unwrap().unwrap(), 5);
}

/// Bad items in a server's stream are errors in their place, and the
/// stream goes on to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_items_from_a_server_are_errors_in_their_place() {
    let (channel, mut peer) = client_on_raw_server().await;
    let feed = FeedClient::new(channel);
    let call = tokio::spawn(async move {
        let items = feed.watch(3, 1).await.unwrap();
        items.collect::<Vec<_>>().await
    });
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, b"null")).await;
    let deep = "[".repeat(100_000);
    peer.send(&raw::stream_item(req.id, br#"{"seq":0,"data":[1]}"#))
        .await;
    peer.send(&raw::stream_item(req.id, br#"{"seq":"#)).await;
    peer.send(&raw::stream_item(req.id, deep.as_bytes())).await;
    peer.send(&raw::stream_item(req.id, br#"{"seq":1,"data":[256]}"#))
        .await;
    peer.send(&raw::stream_item(req.id, br#"{"seq":2,"data":[]}"#))
        .await;
    peer.send(&raw::clean_end(req.id)).await;
    let items = tokio::time::timeout(PROMPTLY, call).await.unwrap().unwrap();
    assert_eq!(items.len(), 5, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap().seq, 0);
    for bad in &items[1..4] {
        let err = bad.as_ref().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Decode {
                    method: "Feed.watch",
                    side: "stream item",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(items[4].as_ref().unwrap().seq, 2);
    let _ = peer.stream.shutdown().await;
}
