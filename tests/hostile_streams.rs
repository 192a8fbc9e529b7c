//! Hostile peers against streaming, over real TCP, on both sides: a client
//! played by hand against a real server of the feed, and a server played by
//! hand against a real client. Bad stream frames get a clear error (a
//! GoAway and a closed connection, or a stream that ends with an error),
//! frames for calls that are not open are dropped, and nothing a peer says
//! makes this side panic, buffer without bound, leave a task or a stream
//! behind, or harm another connection.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc::Error;
use rpc_suite::feed::{FeedClient, FeedError, FeedImpl, FeedServer, Item};
use support::hand::{self, PROMPTLY, listen, next_request, ok, sync, watchdog, within};
use support::raw::{self, RawConn, RawFrame};
use support::{Calc, CalculatorClient, CalculatorServer};
use tokio::net::TcpListener;

const BUDGET: Duration = Duration::from_secs(30);
/// The smallest stream window either side may set: 4 KiB.
const SMALL_WINDOW: usize = 4096;

/// Reports how each stream it is given went, for tests to read.
#[rpc::service]
pub trait Sink {
    /// Every item of `items` as it came ("item N", or "error: ..."), then
    /// "end".
    async fn collect(&self, items: rpc::Stream<u32>) -> Vec<String>;
    /// Holds `items` unread until the call is dropped.
    async fn stall(&self, items: rpc::Stream<Vec<u8>>) -> u32;
}

struct SinkImpl;

impl Sink for SinkImpl {
    async fn collect(&self, mut items: rpc::Stream<u32>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(item) = items.next().await {
            seen.push(match item {
                Ok(n) => format!("item {n}"),
                Err(e) => format!("error: {e}"),
            });
        }
        seen.push("end".into());
        seen
    }

    async fn stall(&self, items: rpc::Stream<Vec<u8>>) -> u32 {
        let _unread = items;
        std::future::pending().await
    }
}

/// A server of the feed, the sink and the calculator on 127.0.0.1:0, and
/// the feed's counters.
async fn serve(builder: rpc::server::Builder) -> (rpc::ServerHandle, FeedImpl) {
    let feed = FeedImpl::default();
    let server = builder
        .add_service(FeedServer::new(feed.clone()))
        .add_service(SinkServer::new(SinkImpl))
        .add_service(CalculatorServer::new(Calc))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    (server, feed)
}

/// The next frame for call `id` that is not a StreamCredit (Pings are
/// answered; frames of other calls are skipped).
async fn answer_to(peer: &mut RawConn, id: u64) -> RawFrame {
    loop {
        let f = peer
            .next_reply(PROMPTLY)
            .await
            .expect("the connection closed");
        if f.call_id == id && f.kind != raw::kind::STREAM_CREDIT {
            return f;
        }
    }
}

/// The connection still serves calls: `Calculator.add` as call `id`.
async fn still_serves(peer: &mut RawConn, id: u64) {
    let args = raw::args(&(20i64, 22i64));
    peer.send(&raw::request(id, "Calculator.add", BUDGET, &args))
        .await;
    let reply = answer_to(peer, id).await;
    assert_eq!(reply.value::<i64>(), 42, "the connection serves");
}

/// Reads until the server closes; its last frame must be a protocol
/// GoAway whose message contains `words`.
async fn closed_with_protocol_goaway(peer: &mut RawConn, words: &str) {
    let (frames, _) = peer.frames_until_closed(PROMPTLY).await;
    let last = frames.last().expect("closed without a GoAway");
    assert_eq!(last.goaway_reason(), raw::goaway::PROTOCOL, "{frames:?}");
    assert!(
        last.message().contains(words),
        "{:?} lacks {words:?}",
        last.message()
    );
}

/// A stream read by another connection of the same server: it reads all
/// of it, while the test does its worst elsewhere.
fn bystander(server: &rpc::ServerHandle) -> tokio::task::JoinHandle<(u64, i64)> {
    let addr = server.local_addr();
    tokio::spawn(async move {
        let channel = rpc::Channel::connect(addr).await.unwrap();
        let feed = FeedClient::new(channel.clone());
        let mut items = feed.watch(2_000, 512).await.unwrap();
        let mut n = 0;
        while let Some(item) = items.next().await {
            assert_eq!(item.unwrap().seq, n);
            n += 1;
            // Slowly, so that the stream is open while the attack runs.
            if n % 200 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let sum = CalculatorClient::new(channel).add(40, 2).await.unwrap();
        (n, sum)
    })
}

async fn bystander_done(bystander: tokio::task::JoinHandle<(u64, i64)>) {
    let done = tokio::time::timeout(Duration::from_secs(30), bystander)
        .await
        .expect("the other connection's stream was held up")
        .unwrap();
    assert_eq!(done, (2_000, 42), "the other connection was unaffected");
}

/// An encoded `Vec<u8>` of `len` bytes, as a stream item.
fn chunk(len: usize) -> Vec<u8> {
    raw::args(&vec![0u8; len])
}

// ---- a hostile client against a real server ----

/// A client sending past the window it was granted: its connection closes
/// with a GoAway naming the window, and another connection's stream and
/// calls go on. Up to the window (the last item starting below it), the
/// same items are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_past_the_window_gets_a_goaway_naming_it() {
    let _watchdog = watchdog();
    let (server, _) = serve(rpc::Server::builder().stream_window(SMALL_WINDOW)).await;
    let addr = server.local_addr();
    let other = bystander(&server);
    // Items of 1,017 bytes a frame: four end at 4,068, under the window, so
    // a fifth may go; a sixth may not.
    let item = chunk(1000);
    assert_eq!(item.len() + raw::HEADER, 1017);

    let mut fine = RawConn::handshake(addr).await;
    fine.send(&raw::request(1, "Sink.stall", BUDGET, &[])).await;
    for _ in 0..5 {
        fine.send(&raw::stream_item(1, &item)).await;
    }
    still_serves(&mut fine, 2).await;

    let mut over = RawConn::handshake(addr).await;
    over.send(&raw::request(1, "Sink.stall", BUDGET, &[])).await;
    for _ in 0..6 {
        let _ = over.try_send(&raw::stream_item(1, &item)).await;
    }
    closed_with_protocol_goaway(&mut over, "4096-byte window").await;

    still_serves(&mut fine, 3).await;
    bystander_done(other).await;
}

/// Items, ends and credits for calls that are not open (never opened, a
/// unary call that is over, a stream that is over) are dropped: the
/// connection stays up, and megabytes of them are not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_frames_for_calls_that_are_not_open_are_dropped() {
    let _watchdog = watchdog();
    let (server, _) = serve(rpc::Server::builder().stream_window(SMALL_WINDOW)).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    // Call 1: a unary call, over.
    still_serves(&mut peer, 1).await;
    // Call 2: a stream, over.
    peer.send(&raw::request(2, "Sink.collect", BUDGET, &[]))
        .await;
    peer.send(&raw::stream_item(2, &raw::args(&7u32))).await;
    peer.send(&raw::clean_end(2)).await;
    let reply = answer_to(&mut peer, 2).await;
    assert_eq!(reply.value::<Vec<String>>(), ["item 7", "end"]);

    let item = chunk(1000);
    for id in [1u64, 2, 99, u64::MAX] {
        // Far past any window: none of it may count.
        for _ in 0..64 {
            peer.send(&raw::stream_item(id, &item)).await;
        }
        peer.send(&raw::clean_end(id)).await;
        peer.send(&raw::stream_end(id, &[])).await;
        peer.send(&raw::stream_end(id, &[200, b'x'])).await;
        peer.send(&raw::credit(id, u32::MAX)).await;
        // Even of the wrong length: there is no call to judge it for.
        peer.send(&raw::frame(raw::kind::STREAM_CREDIT, 0, id, &[1, 2, 3]))
            .await;
    }
    still_serves(&mut peer, 3).await;
    // Reusing id 2 for a new stream after all that: a fresh window.
    peer.send(&raw::request(2, "Sink.collect", BUDGET, &[]))
        .await;
    for n in 0..3u32 {
        peer.send(&raw::stream_item(2, &raw::args(&n))).await;
    }
    peer.send(&raw::clean_end(2)).await;
    let reply = answer_to(&mut peer, 2).await;
    assert_eq!(
        reply.value::<Vec<String>>(),
        ["item 0", "item 1", "item 2", "end"]
    );
}

/// Items from a client for a call whose method takes no stream (one that
/// only returns a stream) are dropped as they come, however many: no
/// window fills up, and the call and the connection go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_for_a_call_that_takes_no_stream_are_dropped() {
    let _watchdog = watchdog();
    let (server, _) = serve(rpc::Server::builder().stream_window(SMALL_WINDOW)).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    peer.send(&raw::request(
        1,
        "Feed.watch",
        BUDGET,
        &raw::args(&(3u64, 8u32)),
    ))
    .await;
    // Sixteen times the window, and an end.
    let item = chunk(4000);
    for _ in 0..16 {
        peer.send(&raw::stream_item(1, &item)).await;
    }
    peer.send(&raw::clean_end(1)).await;
    assert_eq!(answer_to(&mut peer, 1).await.status(), raw::status::OK);
    for seq in 0..3u64 {
        let f = answer_to(&mut peer, 1).await;
        assert_eq!(f.kind, raw::kind::STREAM_ITEM);
        let (item, _): (Item, usize) =
            bincode::serde::decode_from_slice(&f.payload, bincode::config::standard()).unwrap();
        assert_eq!(item.seq, seq);
    }
    let end = answer_to(&mut peer, 1).await;
    assert_eq!(
        (end.kind, &end.payload[..]),
        (raw::kind::STREAM_END, &[0][..])
    );
    still_serves(&mut peer, 2).await;
}

/// A streaming request that reuses the id of a stream still open is a
/// protocol error at once, even when it would wait for a handler slot
/// (and could run out of time there): it never takes the open stream's
/// place, which would cut that stream off from its credits and its end,
/// and let it escape the connection's stream cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reusing_an_open_streams_id_is_refused_at_once() {
    let _watchdog = watchdog();
    let (server, _) = serve(rpc::Server::builder().max_handlers_per_connection(1)).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    // Call 1: a stream whose handler returned (its stream is being sent).
    let endless = |budget| raw::request(1, "Feed.endless", budget, &raw::args(&(1_000u64,)));
    peer.send(&endless(BUDGET)).await;
    assert_eq!(answer_to(&mut peer, 1).await.status(), raw::status::OK);
    // Call 2 takes the only handler slot, so that the next request waits.
    peer.send(&raw::request(2, "Sink.stall", BUDGET, &[])).await;
    // Id 1 again, with a budget that runs out while it waits.
    peer.send(&endless(Duration::from_micros(1))).await;
    closed_with_protocol_goaway(&mut peer, "call id 1 is already in flight").await;
}

/// A StreamCredit for an open stream must be 4 bytes: any other length
/// closes the connection with a GoAway that says so; nothing else is hurt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_of_the_wrong_length_closes_the_connection() {
    let _watchdog = watchdog();
    let (server, _) = serve(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let other = bystander(&server);
    for bad in [&[][..], &[0, 0, 1][..], &[0, 0, 0, 1, 0][..]] {
        let mut peer = RawConn::handshake(addr).await;
        peer.send(&raw::request(
            1,
            "Feed.endless",
            BUDGET,
            &raw::args(&(5u64,)),
        ))
        .await;
        assert_eq!(answer_to(&mut peer, 1).await.status(), raw::status::OK);
        peer.send(&raw::frame(raw::kind::STREAM_CREDIT, 0, 1, bad))
            .await;
        closed_with_protocol_goaway(&mut peer, &format!("StreamCredit of {} bytes", bad.len()))
            .await;
    }
    bystander_done(other).await;
}

/// Sends call `id` a credit of `u32::MAX` every millisecond (while the
/// peer takes them), reading nothing, until `count` stops moving for a
/// second or reaches `all`; returns where it stopped.
async fn credit_until_settled(
    peer: &mut RawConn,
    id: u64,
    count: impl Fn() -> u64,
    all: u64,
) -> u64 {
    let start = Instant::now();
    let (mut last, mut still_since) = (count(), Instant::now());
    let mut crediting = true;
    loop {
        if crediting {
            let credit = raw::credit(id, u32::MAX);
            let sent = tokio::time::timeout(Duration::from_millis(100), peer.try_send(&credit));
            // A write cut short by the timeout leaves half a frame: stop.
            crediting = matches!(sent.await, Ok(Ok(())));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = count();
        if now != last {
            (last, still_since) = (now, Instant::now());
        }
        if now >= all || still_since.elapsed() >= Duration::from_secs(1) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "still producing after 25 s"
        );
    }
}

/// Items of the feed's `watch` in a test that does not read them.
const BIG_ITEM: u32 = 16 << 10;
/// Items that `watch` would make: 128 MiB.
const BIG_ITEMS: u64 = 8 << 10;
/// What a producer may run ahead of a peer that reads nothing: the window,
/// what the writer queues, and the sockets' buffers, with room to spare.
/// Far less than the 128 MiB it would make if nothing held it back.
const HELD_BACK: u64 = 32 << 20;

/// A client that grants huge credits (`u32::MAX`, again and again) or a
/// window of 4 GiB, and reads nothing: no counter overflows, the server
/// stays up, and its producer is still held back: credit that the peer
/// never consumes must not make the server queue without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_credits_or_windows_from_a_client_that_reads_nothing_do_not_unbound_the_server() {
    huge_credits_or_windows_against_the_server().await;
}

/// The same on a current-thread runtime, where the server's driver writes
/// its connection itself (the producer waits on that writer).
#[tokio::test]
async fn huge_credits_or_windows_do_not_unbound_a_current_thread_server() {
    huge_credits_or_windows_against_the_server().await;
}

async fn huge_credits_or_windows_against_the_server() {
    let _watchdog = watchdog();
    for huge_window in [false, true] {
        let (server, feed) = serve(rpc::Server::builder()).await;
        let addr = server.local_addr();
        let hello = if huge_window {
            raw::hello_granting(16 << 20, u32::MAX)
        } else {
            raw::hello()
        };
        let mut peer = RawConn::handshake_with(addr, &hello).await;
        peer.send(&raw::request(
            1,
            "Feed.watch",
            BUDGET,
            &raw::args(&(BIG_ITEMS, BIG_ITEM)),
        ))
        .await;
        let counters = feed.counters.clone();
        let produced = credit_until_settled(
            &mut peer,
            1,
            || counters.produced.load(Ordering::SeqCst),
            BIG_ITEMS,
        )
        .await;
        assert!(
            produced * u64::from(BIG_ITEM) <= HELD_BACK,
            "huge window {huge_window}: the server produced {produced} items of {BIG_ITEM} \
             bytes for a peer that read none"
        );
        // The server is fine, and so are its other connections.
        let calc = CalculatorClient::new(rpc::Channel::connect(addr).await.unwrap());
        assert_eq!(calc.add(1, 2).await.unwrap(), 3);
        drop(peer);
        within("the producer's drop once the peer left", async {
            while counters.dropped.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

/// A StreamEnd with a status this version does not know, an empty one, or
/// a failure whose body is malformed: the handler's stream ends with an
/// error that says so, after the items before it (never a clean end it
/// did not get, nor a panic), and the connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_stream_end_ends_the_handlers_stream_with_an_error() {
    let _watchdog = watchdog();
    let (server, _) = serve(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    let cases: [(&[u8], &str); 4] = [
        (&[200, b'x'], "unknown status 200"),
        (&[], "status"),
        (&[raw::status::FRAME_TOO_LARGE, 1, 2, 3], "FrameTooLarge"),
        (&[raw::status::ABORTED, 0xFF, b'!'], "aborted: \u{FFFD}!"),
    ];
    for (id, (end, words)) in (1u64..).zip(cases) {
        peer.send(&raw::request(id, "Sink.collect", BUDGET, &[]))
            .await;
        peer.send(&raw::stream_item(id, &raw::args(&1u32))).await;
        peer.send(&raw::stream_end(id, end)).await;
        let seen: Vec<String> = answer_to(&mut peer, id).await.value();
        assert_eq!(seen.len(), 3, "{end:?}: {seen:?}");
        assert_eq!(seen[0], "item 1");
        assert!(
            seen[1].starts_with("error: ") && seen[1].contains(words),
            "{end:?}: {seen:?} lacks {words:?}"
        );
        assert_eq!(seen[2], "end");
    }
    // A second end, and items after the end, change nothing.
    peer.send(&raw::request(9, "Sink.collect", BUDGET, &[]))
        .await;
    peer.send(&raw::stream_item(9, &raw::args(&1u32))).await;
    peer.send(&raw::clean_end(9)).await;
    peer.send(&raw::stream_item(9, &raw::args(&2u32))).await;
    peer.send(&raw::stream_end(9, &[200])).await;
    let seen: Vec<String> = answer_to(&mut peer, 9).await.value();
    assert_eq!(seen, ["item 1", "end"]);
    still_serves(&mut peer, 10).await;
}

/// A client that vanishes mid-stream, whether its stream was flowing or
/// waiting for credit: the server drops the producer promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_stream_drops_the_producer() {
    let _watchdog = watchdog();
    let (server, feed) = serve(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let counters = feed.counters.clone();
    let requests = [
        raw::request(1, "Feed.endless", BUDGET, &raw::args(&(1u64,))),
        raw::request(
            1,
            "Feed.watch",
            BUDGET,
            &raw::args(&(1_000_000u64, 1024u32)),
        ),
    ];
    for (i, request) in requests.iter().enumerate() {
        let mut peer = RawConn::handshake(addr).await;
        peer.send(request).await;
        assert_eq!(answer_to(&mut peer, 1).await.status(), raw::status::OK);
        for _ in 0..3 {
            assert_eq!(answer_to(&mut peer, 1).await.kind, raw::kind::STREAM_ITEM);
        }
        drop(peer);
        within("the producer's drop", async {
            while counters.dropped.load(Ordering::SeqCst) <= i as u64 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
    }
}

// ---- a hostile server against a real client ----

/// A client of the feed, with `builder`'s settings, on a server played by
/// hand that sends `hello`; the listener, for reconnects.
async fn client_on_raw_server(
    builder: rpc::client::Builder,
    hello: &[u8],
) -> (FeedClient, RawConn, TcpListener) {
    let (listener, addr) = listen().await;
    let accept = async {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn::accept_handshake_with(stream, hello).await
    };
    let (channel, peer) = tokio::join!(builder.connect(addr), accept);
    (FeedClient::new(channel.unwrap()), peer, listener)
}

/// The next Request, skipping the client's stream frames.
async fn next_call(peer: &mut RawConn) -> hand::Req {
    loop {
        let f = peer
            .next_reply(PROMPTLY)
            .await
            .expect("the connection closed");
        if f.kind == raw::kind::REQUEST {
            return hand::parse_request(&f);
        }
    }
}

/// An encoded feed item, as the server's stream carries it.
fn feed_item(seq: u64, len: usize) -> Vec<u8> {
    raw::args(&Item {
        seq,
        data: vec![0x5A; len],
    })
}

/// The Ok Response that opens a stream.
fn opens(id: u64) -> Vec<u8> {
    ok(id, &())
}

/// The client's connection still works: a unary call on it is answered.
async fn client_still_served(feed: &FeedClient, peer: &mut RawConn) {
    let call = tokio::spawn({
        let feed = feed.clone();
        async move { feed.produced().await }
    });
    let req = next_call(peer).await;
    peer.send(&ok(req.id, &77u64)).await;
    let answer = within("a unary call on the same connection", call).await;
    assert_eq!(answer.unwrap().unwrap(), 77);
}

fn disconnected_naming(e: &Error, words: &str) {
    match e {
        Error::Disconnected { reason, .. } => {
            assert!(reason.contains(words), "{reason:?} lacks {words:?}")
        }
        other => panic!("not Disconnected: {other:?}"),
    }
}

/// A server sending past the client's window: the connection fails with a
/// protocol error naming the window, and every stream on it (the one
/// overrun, another one, and an upload) ends with that error, not
/// silently; the client closes the connection and the next call
/// reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_past_the_window_fails_every_stream_on_the_connection() {
    let _watchdog = watchdog();
    let builder = rpc::Channel::builder().stream_window(SMALL_WINDOW);
    let (feed, mut peer, listener) = client_on_raw_server(builder, &raw::hello()).await;
    let a = tokio::spawn({
        let feed = feed.clone();
        async move { feed.watch(100, 1000).await }
    });
    let a_req = next_call(&mut peer).await;
    let b = tokio::spawn({
        let feed = feed.clone();
        async move { feed.watch(100, 1000).await }
    });
    let b_req = next_call(&mut peer).await;
    let (tx, chunks) = rpc::stream::channel::<Vec<u8>>();
    let upload = tokio::spawn({
        let feed = feed.clone();
        async move { feed.upload(chunks).await }
    });
    next_call(&mut peer).await;
    tx.send(vec![1; 10]).await.unwrap();
    peer.send(&[opens(a_req.id), opens(b_req.id)].concat())
        .await;
    let mut a = within("a", a).await.unwrap().unwrap();
    let mut b = within("b", b).await.unwrap().unwrap();
    // Six items of 1,000 bytes (and more) on `a`, which reads none: the
    // sixth starts past the 4 KiB window.
    let items: Vec<u8> = (0..8)
        .flat_map(|seq| raw::stream_item(a_req.id, &feed_item(seq, 1000)))
        .collect();
    let _ = peer.try_send(&items).await;

    let mut a_seen = 0;
    let a_end = loop {
        match within("a's end", a.next()).await {
            Some(Ok(item)) => {
                assert_eq!(item.seq, a_seen);
                a_seen += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("a ended silently"),
        }
    };
    assert!(a_seen <= 5, "{a_seen} items read past the window");
    disconnected_naming(&a_end, "window");
    assert!(within("a after its end", a.next()).await.is_none());
    let b_end = within("b's end", b.next()).await;
    disconnected_naming(&b_end.expect("b ended silently").unwrap_err(), "window");
    let uploaded = within("the upload", upload).await.unwrap();
    disconnected_naming(&uploaded.unwrap_err(), "window");
    within("the upload's stream dropped", tx.closed()).await;

    // The client gave that connection up, and the next call reconnects.
    let (_, closed) = peer.frames_until_closed(PROMPTLY).await;
    assert!(matches!(closed, raw::Closed::Eof), "{closed:?}");
    let call = tokio::spawn({
        let feed = feed.clone();
        async move { feed.produced().await }
    });
    let mut fresh = hand::accept(&listener).await;
    let req = next_call(&mut fresh).await;
    fresh.send(&ok(req.id, &1u64)).await;
    assert_eq!(within("the next call", call).await.unwrap().unwrap(), 1);
}

/// Stream frames from a server for calls that do not stream back: a unary
/// call in flight, an upload that is over (whose credits the client had
/// just read), a stream that ended, and a stream refused with an error.
/// Each is dropped however much of it comes, and the connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_items_for_calls_that_take_none_is_ignored() {
    let _watchdog = watchdog();
    let builder = rpc::Channel::builder().stream_window(SMALL_WINDOW);
    let (feed, mut peer, _listener) = client_on_raw_server(builder, &raw::hello()).await;
    // Far past the client's 4 KiB window, if any of it counted.
    let flood = |id: u64| -> Vec<u8> {
        let mut f: Vec<u8> = (0..16)
            .flat_map(|seq| raw::stream_item(id, &feed_item(seq, 1000)))
            .collect();
        f.extend(raw::clean_end(id));
        f.extend(raw::credit(id, u32::MAX));
        f
    };

    // A unary call in flight.
    let call = tokio::spawn({
        let feed = feed.clone();
        async move { feed.produced().await }
    });
    let req = next_call(&mut peer).await;
    peer.send(&flood(req.id)).await;
    peer.send(&ok(req.id, &5u64)).await;
    assert_eq!(within("the unary call", call).await.unwrap().unwrap(), 5);
    client_still_served(&feed, &mut peer).await;

    // An upload, over: its credit came just before its Response.
    let upload = tokio::spawn({
        let feed = feed.clone();
        async move { feed.upload(rpc::Stream::iter([vec![1u8, 2, 3]])).await }
    });
    let req = next_call(&mut peer).await;
    peer.send(&raw::credit(req.id, 100)).await;
    peer.send(&ok(req.id, &3u64)).await;
    assert_eq!(within("the upload", upload).await.unwrap().unwrap(), 3);
    peer.send(&flood(req.id)).await;
    client_still_served(&feed, &mut peer).await;

    // A stream that ended.
    let watch = tokio::spawn({
        let feed = feed.clone();
        async move {
            let items = feed.watch(1, 10).await?;
            Ok::<_, Error>(items.collect::<Vec<_>>().await)
        }
    });
    let req = next_call(&mut peer).await;
    let mut answer = opens(req.id);
    answer.extend(raw::stream_item(req.id, &feed_item(0, 10)));
    answer.extend(raw::clean_end(req.id));
    peer.send(&answer).await;
    let items = within("the stream", watch).await.unwrap().unwrap();
    assert_eq!(items.len(), 1);
    peer.send(&flood(req.id)).await;
    client_still_served(&feed, &mut peer).await;

    // A stream refused: its Response was an error.
    let refused = tokio::spawn({
        let feed = feed.clone();
        async move { feed.watch(1, 10).await.map(drop) }
    });
    let req = next_call(&mut peer).await;
    peer.send(&raw::refusal(req.id, raw::status::PANICKED, "no"))
        .await;
    let refused = within("the refused stream", refused).await.unwrap();
    assert!(
        matches!(refused, Err(Error::Panicked { .. })),
        "{refused:?}"
    );
    peer.send(&flood(req.id)).await;
    client_still_served(&feed, &mut peer).await;
}

/// A server that answers a stream call and then neither sends more nor
/// ends it: the client dropping its stream sends a Cancel. A stream that
/// ended (cleanly, or with an application error in place of the stream)
/// sends none: the server ended the call itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_open_stream_cancels_it_and_an_ended_one_does_not() {
    let _watchdog = watchdog();
    let (feed, mut peer, _listener) =
        client_on_raw_server(rpc::Channel::builder(), &raw::hello()).await;
    let cancels = |frames: &[RawFrame]| {
        frames
            .iter()
            .filter(|f| f.kind == raw::kind::CANCEL)
            .map(|f| f.call_id)
            .collect::<Vec<_>>()
    };

    let watch = tokio::spawn({
        let feed = feed.clone();
        async move {
            let mut items = feed.watch(10, 10).await.unwrap();
            let first = items.next().await;
            drop(items);
            first
        }
    });
    let req = next_call(&mut peer).await;
    let mut answer = opens(req.id);
    answer.extend(raw::stream_item(req.id, &feed_item(0, 10)));
    peer.send(&answer).await;
    let first = within("the first item", watch).await.unwrap();
    assert_eq!(first.unwrap().unwrap().seq, 0);
    assert_eq!(cancels(&sync(&mut peer, 1).await), [req.id]);

    // Ended cleanly, every item read.
    let watch = tokio::spawn({
        let feed = feed.clone();
        async move { feed.watch(1, 10).await.unwrap().collect::<Vec<_>>().await }
    });
    let req = next_call(&mut peer).await;
    let mut answer = opens(req.id);
    answer.extend(raw::stream_item(req.id, &feed_item(0, 10)));
    answer.extend(raw::clean_end(req.id));
    peer.send(&answer).await;
    assert_eq!(within("the stream", watch).await.unwrap().len(), 1);
    assert_eq!(cancels(&sync(&mut peer, 2).await), Vec::<u64>::new());

    // An application error in place of the stream: the call is over.
    let lookup = tokio::spawn({
        let feed = feed.clone();
        async move { feed.lookup(String::new()).await.map(|r| r.map(drop)) }
    });
    let req = next_call(&mut peer).await;
    peer.send(&ok(req.id, &Err::<(), _>(FeedError::EmptyPrefix)))
        .await;
    let looked_up = within("the lookup", lookup).await.unwrap();
    assert!(
        matches!(looked_up, Ok(Err(FeedError::EmptyPrefix))),
        "{looked_up:?}"
    );
    assert_eq!(
        cancels(&sync(&mut peer, 3).await),
        Vec::<u64>::new(),
        "a Cancel for a call the server had ended"
    );
}

/// The task that sends a client's stream ends with the call, even while
/// the application's stream yields nothing: when the Response comes (after
/// a credit), when the deadline passes, and when the connection is lost.
/// Its stream is dropped, which a `Sender` sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_stream_task_ends_with_the_call_though_its_stream_never_yields() {
    let _watchdog = watchdog();
    let (feed, mut peer, listener) =
        client_on_raw_server(rpc::Channel::builder(), &raw::hello()).await;

    // The Response comes, after a credit.
    let (tx, chunks) = rpc::stream::channel::<Vec<u8>>();
    let upload = tokio::spawn({
        let feed = feed.clone();
        async move { feed.upload(chunks).await }
    });
    let req = next_call(&mut peer).await;
    peer.send(&raw::credit(req.id, 1000)).await;
    sync(&mut peer, 1).await;
    peer.send(&ok(req.id, &0u64)).await;
    assert_eq!(within("the upload", upload).await.unwrap().unwrap(), 0);
    within("the stream's drop after the Response", tx.closed()).await;

    // The deadline passes.
    let (tx, chunks) = rpc::stream::channel::<Vec<u8>>();
    let upload = tokio::spawn({
        let feed = feed.with_timeout(Duration::from_millis(200));
        async move { feed.upload(chunks).await }
    });
    next_call(&mut peer).await;
    let late = within("the upload", upload).await.unwrap();
    assert!(
        matches!(late, Err(Error::DeadlineExceeded { .. })),
        "{late:?}"
    );
    within("the stream's drop at the deadline", tx.closed()).await;

    // The connection is lost.
    let (tx, chunks) = rpc::stream::channel::<Vec<u8>>();
    let upload = tokio::spawn({
        let feed = feed.clone();
        async move { feed.upload(chunks).await }
    });
    next_call(&mut peer).await;
    drop(peer);
    let lost = within("the upload", upload).await.unwrap();
    assert!(matches!(lost, Err(Error::Disconnected { .. })), "{lost:?}");
    within("the stream's drop with the connection", tx.closed()).await;
    drop(listener);
}

/// The server's StreamEnd ends a call both ways: a client still sending
/// on it (and not reading the server's stream just now) finds its stream
/// gone, rather than waiting for ever for credit the server will never
/// send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_end_stops_the_clients_stream_though_it_is_not_read() {
    let _watchdog = watchdog();
    let (feed, mut peer, _listener) =
        client_on_raw_server(rpc::Channel::builder(), &raw::hello()).await;
    let (tx, inbox) = rpc::stream::channel::<String>();
    let chat = tokio::spawn({
        let feed = feed.clone();
        async move { feed.chat(inbox).await }
    });
    let req = next_call(&mut peer).await;
    let mut answer = opens(req.id);
    answer.extend(raw::stream_item(req.id, &raw::args(&"bye".to_string())));
    answer.extend(raw::clean_end(req.id));
    peer.send(&answer).await;
    let replies = within("the chat", chat).await.unwrap().unwrap();
    // Far more than the window holds, with no credit from the server.
    let word = "x".repeat(1000);
    let sending = async {
        for _ in 0..1_000 {
            if tx.send(word.clone()).await.is_err() {
                return true;
            }
        }
        false
    };
    assert!(
        within("the sender's end", sending).await,
        "every message was taken, for a call that is over"
    );
    drop(replies);
}

/// A server shutting down refuses an upload whose stream had started to go
/// out: the call cannot move to another connection (its items are spent),
/// and it fails with what the server said, ShuttingDown: it did not run,
/// so making it again is safe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_refused_by_a_server_shutting_down_says_it_did_not_run() {
    let _watchdog = watchdog();
    let (feed, mut peer, _listener) =
        client_on_raw_server(rpc::Channel::builder(), &raw::hello()).await;
    let upload = tokio::spawn({
        let feed = feed.clone();
        async move { feed.upload(rpc::Stream::iter([vec![1u8; 10]])).await }
    });
    let req = next_call(&mut peer).await;
    peer.send(&raw::goaway(raw::goaway::SHUTDOWN, "shutting down"))
        .await;
    peer.send(&raw::refusal(
        req.id,
        raw::status::SHUTTING_DOWN,
        "the connection is draining",
    ))
    .await;
    let refused = within("the upload", upload).await.unwrap().unwrap_err();
    assert!(
        matches!(
            refused,
            Error::ShuttingDown {
                mid_stream: false,
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(!refused.may_have_run(), "{refused:?}");
}

/// A server that grants huge credits (`u32::MAX`, again and again) or a
/// window of 4 GiB, and reads nothing: the client's producer is still held
/// back, rather than queueing everything it makes for a peer that takes
/// none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_credits_or_windows_from_a_server_that_reads_nothing_do_not_unbound_the_client() {
    let _watchdog = watchdog();
    for huge_window in [false, true] {
        let hello = if huge_window {
            raw::hello_granting(16 << 20, u32::MAX)
        } else {
            raw::hello()
        };
        let (feed, mut peer, _listener) =
            client_on_raw_server(rpc::Channel::builder(), &hello).await;
        let produced = Arc::new(AtomicU64::new(0));
        let counted = produced.clone();
        // Dropped with the stream.
        let alive = Arc::new(());
        let guard = alive.clone();
        let chunks = rpc::Stream::new(
            futures::stream::repeat_with(move || {
                let _ = &guard;
                counted.fetch_add(1, Ordering::SeqCst);
                vec![0u8; BIG_ITEM as usize]
            })
            .take(BIG_ITEMS as usize),
        );
        let upload = tokio::spawn({
            let feed = feed.clone();
            async move { feed.upload(chunks).await }
        });
        let req = next_request(&mut peer).await;
        let made = credit_until_settled(
            &mut peer,
            req.id,
            || produced.load(Ordering::SeqCst),
            BIG_ITEMS,
        )
        .await;
        assert!(
            made * u64::from(BIG_ITEM) <= HELD_BACK,
            "huge window {huge_window}: the client produced {made} items of {BIG_ITEM} bytes \
             for a server that read none"
        );
        // The call ends while its stream waits on the writer: the stream
        // goes with it, though the writer is still backed up.
        peer.send(&ok(req.id, &0u64)).await;
        assert_eq!(within("the upload", upload).await.unwrap().unwrap(), 0);
        within("the producer's drop", async {
            while Arc::strong_count(&alive) > 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
    }
}

/// Bad stream frames from the server on an open stream: a credit of the
/// wrong length breaks the connection (the stream ends with a protocol
/// error); a StreamEnd with an unknown status or none ends that stream with
/// an error, after its items, and the connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_end_or_credit_from_the_server_ends_the_stream_with_an_error() {
    let _watchdog = watchdog();
    let (feed, mut peer, listener) =
        client_on_raw_server(rpc::Channel::builder(), &raw::hello()).await;
    for (end, words) in [
        (&[200u8, b'x'][..], "unknown status 200"),
        (&[][..], "status"),
    ] {
        let watch = tokio::spawn({
            let feed = feed.clone();
            async move { feed.watch(1, 10).await.unwrap().collect::<Vec<_>>().await }
        });
        let req = next_call(&mut peer).await;
        let mut answer = opens(req.id);
        answer.extend(raw::stream_item(req.id, &feed_item(0, 10)));
        answer.extend(raw::stream_end(req.id, end));
        peer.send(&answer).await;
        let items = within("the stream", watch).await.unwrap();
        assert_eq!(items.len(), 2, "{end:?}: {items:?}");
        assert_eq!(items[0].as_ref().unwrap().seq, 0);
        let e = items[1].as_ref().unwrap_err();
        assert!(
            matches!(e, Error::Decode { .. }) && e.to_string().contains(words),
            "{end:?}: {e:?}"
        );
        client_still_served(&feed, &mut peer).await;
    }

    // A three-byte credit for the upload in flight.
    let (tx, chunks) = rpc::stream::channel::<Vec<u8>>();
    let upload = tokio::spawn({
        let feed = feed.clone();
        async move { feed.upload(chunks).await }
    });
    let req = next_call(&mut peer).await;
    peer.send(&raw::frame(raw::kind::STREAM_CREDIT, 0, req.id, &[0, 1, 0]))
        .await;
    let broken = within("the upload", upload).await.unwrap();
    disconnected_naming(&broken.unwrap_err(), "StreamCredit of 3 bytes");
    within("the upload's stream dropped", tx.closed()).await;
    drop(listener);
}
