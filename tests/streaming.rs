//! Streaming methods as a user relies on them: each shape over every
//! transport, how streams end (cleanly, with the producer's error or panic,
//! at the deadline, at shutdown), cancellation by dropping, half-close, a
//! stalled stream that holds up nothing else, and streams through a
//! balanced channel. (Hostile peers, and what they can make either side
//! hold, are in `hostile_streams.rs` and `stream_memory.rs`.)

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc::Error;
use rpc_suite::feed::{FeedClient, FeedError, FeedImpl, FeedServer, Item};
use support::transport::over_all_transports;
use support::{CalculatorClient, Transport};

const PROMPTLY: Duration = Duration::from_secs(5);

/// A server of the feed (and the calculator) over `transport`, and a
/// client; the feed's counters.
async fn feed_over(
    transport: Transport,
    builder: rpc::server::Builder,
) -> (rpc::ServerHandle, FeedClient, FeedImpl) {
    let feed = FeedImpl::default();
    let builder = builder.add_service(FeedServer::new(feed.clone()));
    let (server, channel) = transport.start(support::with_services(builder)).await;
    (server, FeedClient::new(channel), feed)
}

/// Waits until `done` holds, for at most `limit`; how long it took.
async fn within(limit: Duration, what: &str, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

over_all_transports!(
    every_shape_round_trips,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn every_shape_round_trips(transport: Transport) {
    let (_server, feed, _) = feed_over(transport, rpc::Server::builder()).await;

    // Server streaming: more items than one window (the client's 2 MiB)
    // holds.
    let items: Vec<Item> = feed
        .watch(8_000, 300)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items.len(), 8_000);
    assert!(items.iter().enumerate().all(|(i, it)| it.seq == i as u64));
    assert!(items.iter().all(|it| it.data == vec![0xA5; 300]));

    // With an application error in place of the stream.
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
    let chunks = rpc::Stream::iter((0..50).map(|i| vec![i as u8; 10_000]));
    assert_eq!(feed.upload(chunks).await.unwrap(), 500_000);

    // Both ways, with a half-close: the client finishes sending and reads
    // on; the server's last message comes after that.
    let (tx, inbox) = rpc::stream::channel();
    let mut replies = feed.chat(inbox).await.unwrap();
    for word in ["a", "b", "c"] {
        tx.send(word.to_string()).await.unwrap();
        let echo = replies.next().await.unwrap().unwrap();
        assert_eq!(echo, format!("echo: {word}"));
    }
    drop(tx);
    assert_eq!(replies.next().await.unwrap().unwrap(), "done: 3");
    assert!(replies.next().await.is_none(), "the server's stream ends");

    // The connection still serves unary calls.
    assert_eq!(feed.produced().await.unwrap(), 8_000);
}

// The same on a current-thread runtime, where the server's driver also
// writes its replies and streams.
over_all_transports!(every_shape_round_trips_on_one_thread);
async fn every_shape_round_trips_on_one_thread(transport: Transport) {
    every_shape_round_trips(transport).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming_100_mib_in_chunks_is_counted_by_the_server() {
    let (_server, feed, counters) = feed_over(Transport::Tcp, rpc::Server::builder()).await;
    const CHUNK: usize = 64 << 10;
    const CHUNKS: usize = 1_600;
    let chunk = vec![7u8; CHUNK];
    let chunks = rpc::Stream::iter(std::iter::repeat_n(chunk, CHUNKS));
    let counted = feed.upload(chunks).await.unwrap();
    assert_eq!(counted, (CHUNK * CHUNKS) as u64);
    assert_eq!(counted, 100 << 20);
    assert_eq!(counters.counters.uploaded.load(Ordering::SeqCst), 100 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_drops_the_producer_promptly() {
    let (_server, feed, feed_impl) = feed_over(Transport::Tcp, rpc::Server::builder()).await;
    let counters = feed_impl.counters.clone();
    let mut ticks = feed.endless(1).await.unwrap();
    for expected in 0..10 {
        assert_eq!(ticks.next().await.unwrap().unwrap(), expected);
    }
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 0);
    drop(ticks);
    let took = within(Duration::from_millis(100), "the producer's drop", || {
        counters.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    eprintln!("the producer was dropped {took:?} after the client dropped its stream");
    // And it produces nothing more.
    let produced = counters.produced.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(counters.produced.load(Ordering::SeqCst), produced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_panic_ends_the_stream_after_the_items_before_it() {
    let (_server, feed, _) = feed_over(Transport::Tcp, rpc::Server::builder()).await;
    let items: Vec<Result<u64, Error>> = feed.panics_at(500).await.unwrap().collect().await;
    assert_eq!(items.len(), 501, "500 items, then the panic, then the end");
    for (i, item) in items[..500].iter().enumerate() {
        assert_eq!(*item.as_ref().unwrap(), i as u64);
    }
    let Err(Error::Panicked { method, message }) = &items[500] else {
        panic!("{:?}", items[500])
    };
    assert_eq!(*method, "Feed.panics_at");
    assert!(message.contains("gave up at item 500"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_error_ends_the_stream_with_its_message() {
    let (_server, feed, _) = feed_over(Transport::Memory, rpc::Server::builder()).await;
    let items: Vec<Result<u64, Error>> = feed.fails_after(5).await.unwrap().collect().await;
    assert_eq!(items.len(), 6);
    assert!(items[..5].iter().all(Result::is_ok));
    let Err(e @ Error::Aborted { message, .. }) = &items[5] else {
        panic!("{:?}", items[5])
    };
    assert_eq!(message, "no item after 5");
    assert!(e.may_have_run() && !e.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_holds_up_neither_the_others_nor_unary_calls() {
    let (_server, feed, _) = feed_over(Transport::Tcp, rpc::Server::builder()).await;
    let calc = CalculatorClient::new(feed.channel().clone());
    // Each stream sends about 3 MiB, the stalled one 4 MiB: past the
    // client's default window (2 MiB), so the others go on only as credit
    // comes back while the stalled one waits for credit that never comes.
    const ITEMS: u64 = 3_000;
    const STALLED_ITEMS: u64 = 4_000;
    // The first is never read: its producer waits for credit.
    let stalled = feed.watch(STALLED_ITEMS, 1024).await.unwrap();
    let mut streams = Vec::new();
    for _ in 1..100 {
        streams.push(feed.watch(ITEMS, 1024).await.unwrap());
    }
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut n = 0;
                while let Some(item) = s.next().await {
                    assert_eq!(item.unwrap().seq, n);
                    n += 1;
                }
                n
            })
        })
        .collect();
    // Unary calls on the same connection meanwhile: each is answered
    // promptly, not after the streams.
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let start = Instant::now();
        let sum = tokio::time::timeout(PROMPTLY, calc.add(i, 1)).await;
        assert_eq!(sum.expect("a unary call was held up").unwrap(), i + 1);
        slowest = slowest.max(start.elapsed());
    }
    for reader in readers {
        let read = tokio::time::timeout(Duration::from_secs(60), reader).await;
        assert_eq!(read.expect("a stream was held up").unwrap(), ITEMS);
    }
    eprintln!("slowest unary call beside 99 streams and a stalled one: {slowest:?}");
    // The stalled stream still has all its items, in order.
    let items: Vec<u64> = stalled.map(|i| i.unwrap().seq).collect().await;
    assert_eq!(items, (0..STALLED_ITEMS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_ends_an_endless_stream_on_both_sides() {
    let (_server, feed, feed_impl) = feed_over(Transport::Tcp, rpc::Server::builder()).await;
    let counters = feed_impl.counters.clone();
    let start = Instant::now();
    let mut ticks = feed
        .with_timeout(Duration::from_millis(200))
        .endless(5)
        .await
        .unwrap();
    let mut items = 0;
    let end = loop {
        match ticks.next().await {
            Some(Ok(_)) => items += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without the deadline's error"),
        }
    };
    let client_saw = start.elapsed();
    assert!(matches!(end, Error::DeadlineExceeded { .. }), "{end:?}");
    assert!(ticks.next().await.is_none());
    assert!(items > 0);
    assert!(client_saw < Duration::from_millis(300), "{client_saw:?}");
    within(Duration::from_millis(300), "the server's end", || {
        counters.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(start.elapsed() < Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_without_a_deadline_outlives_the_default_timeout_unless_one_is_set() {
    let feed_impl = FeedImpl::default();
    let server = Transport::Tcp
        .serve(
            rpc::Server::builder()
                .max_budget(Duration::from_millis(500))
                .add_service(FeedServer::new(feed_impl.clone())),
        )
        .await;
    // The channel's default timeout is 300 ms, and the server's budget cap
    // 500 ms: neither applies to `follow`, whose first item comes at 1 s.
    let channel = support::transport::connect_with(
        rpc::Channel::builder().timeout(Duration::from_millis(300)),
        server.address(),
    )
    .await
    .unwrap();
    let feed = FeedClient::new(channel);
    let mut follow = feed.follow().await.unwrap();
    assert_eq!(follow.next().await.unwrap().unwrap(), 0);
    assert_eq!(follow.next().await.unwrap().unwrap(), 1);
    drop(follow);
    // Set on the handle, a timeout applies.
    let mut bounded = feed
        .with_timeout(Duration::from_millis(300))
        .follow()
        .await
        .unwrap();
    assert!(matches!(
        bounded.next().await,
        Some(Err(Error::DeadlineExceeded { .. }))
    ));
    // An ordinary streaming method keeps the default.
    let mut ticks = feed.endless(50).await.unwrap();
    let end = loop {
        match ticks.next().await.unwrap() {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(end, Error::DeadlineExceeded { .. }), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_streams_the_grace_period_then_ends_them() {
    let (server, feed, _) = feed_over(
        Transport::Tcp,
        rpc::Server::builder().shutdown_grace(Duration::from_millis(300)),
    )
    .await;
    let mut ticks = feed.endless(10).await.unwrap();
    assert_eq!(ticks.next().await.unwrap().unwrap(), 0);
    let shutdown = tokio::spawn(server.shutdown());
    let start = Instant::now();
    let mut after = 0;
    let end = loop {
        match ticks.next().await {
            Some(Ok(_)) => after += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended silently"),
        }
    };
    let took = start.elapsed();
    assert!(
        matches!(
            end,
            Error::ShuttingDown {
                mid_stream: true,
                ..
            }
        ),
        "{end:?}"
    );
    assert!(end.may_have_run());
    assert!(
        after > 5,
        "items kept coming during the grace period: {after}"
    );
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(ticks.next().await.is_none());
    tokio::time::timeout(PROMPTLY, shutdown)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_ends_the_stream_with_an_error() {
    let (server, feed, _) = feed_over(Transport::Tcp, rpc::Server::builder()).await;
    let mut ticks = feed.endless(5).await.unwrap();
    assert_eq!(ticks.next().await.unwrap().unwrap(), 0);
    // Upload on the same connection, which is lost with it.
    let (tx, chunks) = rpc::stream::channel::<Vec<u8>>();
    let upload = tokio::spawn(feed.upload(chunks));
    // The second send returns once the upload's sender took the first item,
    // which it does only after its request was queued on the connection.
    tx.send(vec![1; 10]).await.unwrap();
    tx.send(vec![2; 10]).await.unwrap();
    // The server drops its connections at once.
    server.abort().await;
    let end = loop {
        match tokio::time::timeout(PROMPTLY, ticks.next()).await.unwrap() {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("the stream ended silently"),
        }
    };
    // An abort ends open streams as a shutdown does, or the connection
    // drops first: either way, an error.
    assert!(
        matches!(
            end,
            Error::ShuttingDown {
                mid_stream: true,
                ..
            } | Error::Disconnected { .. }
        ),
        "{end:?}"
    );
    let uploaded = tokio::time::timeout(PROMPTLY, upload)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(uploaded, Err(Error::Disconnected { .. })),
        "{uploaded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_streams_on_a_connection_are_refused_as_overloaded() {
    let (_server, feed, _) = feed_over(
        Transport::Tcp,
        rpc::Server::builder().max_streams_per_connection(2),
    )
    .await;
    let a = feed.endless(100).await.unwrap();
    let b = feed.endless(100).await.unwrap();
    let refused = feed.endless(100).await.unwrap_err();
    assert!(matches!(refused, Error::Overloaded { .. }), "{refused:?}");
    drop(a);
    // The slot frees once the server has seen the Cancel.
    let mut tries = 0;
    let c = loop {
        match feed.endless(100).await {
            Ok(c) => break c,
            Err(Error::Overloaded { .. }) if tries < 100 => tries += 1,
            Err(e) => panic!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop((b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balanced_stream_stays_on_the_server_it_started_on() {
    let mut servers = Vec::new();
    let mut impls = Vec::new();
    for _ in 0..2 {
        let feed = FeedImpl::default();
        impls.push(feed.clone());
        servers.push(
            Transport::Tcp
                .serve(rpc::Server::builder().add_service(FeedServer::new(feed)))
                .await,
        );
    }
    let targets: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
    let channel = rpc::Channel::balanced(rpc::discover::Static::new(targets))
        .connect()
        .await
        .unwrap();
    let feed = FeedClient::new(channel);
    for round in 1..=6u64 {
        let items: Vec<Item> = feed
            .watch(500, 64)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(items.len(), 500);
        // Every item of a stream came from one server.
        let produced: Vec<u64> = impls
            .iter()
            .map(|f| f.counters.produced.load(Ordering::SeqCst))
            .collect();
        assert_eq!(produced.iter().sum::<u64>(), 500 * round);
        assert!(produced.iter().all(|p| p % 500 == 0), "{produced:?}");
    }
}
