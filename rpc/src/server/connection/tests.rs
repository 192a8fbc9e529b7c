//! The driver's default limits, on an in-memory pipe with the clock paused:
//! each timer fires at the time the limits table gives, to the tick, with no
//! waiting. (The tests in `tests/` cover the same behaviour over TCP with
//! short configured limits.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::serve;
use crate::protocol::{
    DRAIN_PING, Frame, FrameBuf, FrameCodec, GoAwayReason, Hello, Kind, RequestHead, method_id,
};
use crate::server::dispatch::{Call, Handler, MethodDesc, Reply, Router, Service};
use crate::server::{Config, Shared};
use crate::transport::budget::FrameBudget;

/// How many `Wait.forever` handlers run right now, per test (each test has
/// its own service instance).
#[derive(Default)]
struct Wait {
    running: Arc<AtomicUsize>,
}

struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

const FOREVER: MethodDesc = MethodDesc {
    name: "Wait.forever",
    id: method_id("Wait.forever"),
    request_stream: false,
    response_stream: false,
    no_deadline: false,
    fingerprint: 0,
    shape: "forever() -> ()",
    args: &[],
    returns: "()",
    idempotent: false,
};

impl Service for Wait {
    fn name(&self) -> &'static str {
        "Wait"
    }
    fn methods(&self) -> &'static [MethodDesc] {
        &[FOREVER]
    }
    fn call(&self, _: u64, _: Call) -> Option<Handler> {
        let running = self.running.clone();
        Some(Box::pin(async move {
            running.fetch_add(1, Ordering::SeqCst);
            let _running = Running(running);
            std::future::pending::<Reply>().await
        }))
    }
}

/// The client's end of a connection served with the default limits.
struct Peer {
    frames: FramedRead<ReadHalf<DuplexStream>, FrameCodec>,
    write: WriteHalf<DuplexStream>,
    served: JoinHandle<()>,
    running: Arc<AtomicUsize>,
    started: Instant,
}

impl Peer {
    async fn connect(handshake: bool) -> Peer {
        let wait = Wait::default();
        let running = wait.running.clone();
        let shared = Arc::new(Shared {
            router: Router::new(vec![Arc::new(wait)]).unwrap(),
            frame_budget: FrameBudget::new(256 << 20, 16 << 20),
            config: Config::default(),
            drain: CancellationToken::new(),
            kill: CancellationToken::new(),
            connections: TaskTracker::new(),
        });
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let link = crate::transport::Link::new(theirs, crate::transport::Peer::Memory);
        let served = tokio::spawn(serve(link, shared));
        let (r, write) = tokio::io::split(ours);
        let mut peer = Peer {
            frames: FramedRead::new(r, FrameCodec::new(1 << 20)),
            write,
            served,
            running,
            started: Instant::now(),
        };
        if handshake {
            peer.send(&Hello::ours(16 << 20, crate::stream::DEFAULT_WINDOW).encode())
                .await;
            assert_eq!(peer.next().await.unwrap().kind, Kind::Hello);
        }
        peer.started = Instant::now();
        peer
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    async fn request(&mut self, id: u64) {
        let mut f = FrameBuf::new(Kind::Request, id, 0);
        RequestHead {
            method_id: FOREVER.id,
            budget: Duration::from_secs(3600),
        }
        .write(&mut f);
        self.send(&f.finish()).await;
    }

    /// The next frame, or `None` once the server closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        self.frames.next().await.map(|f| f.unwrap())
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Asserts that the server ended the connection, at about `at`.
    async fn assert_closed_at(mut self, at: Duration) {
        assert!(self.next().await.is_none(), "more frames");
        (&mut self.served).await.unwrap();
        assert_between(self.elapsed(), at, at + TICK);
    }
}

/// The driver's timer tick with the default limits: the smallest of them
/// (20 s) over four.
const TICK: Duration = Duration::from_secs(5);

fn assert_between(t: Duration, from: Duration, to: Duration) {
    assert!(
        t >= from && t <= to,
        "{t:?} is not within {from:?}..={to:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_handshake_must_complete_within_10_s() {
    let peer = Peer::connect(false).await;
    assert!(peer.served.await.is_ok());
    assert_eq!(peer.started.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_started_frame_must_complete_within_30_s() {
    let mut peer = Peer::connect(true).await;
    peer.send(&[0, 0, 0, 10, 6]).await;
    let goaway = peer.next().await.unwrap();
    assert_eq!(goaway.kind, Kind::GoAway);
    assert_eq!(
        GoAwayReason::parse(&goaway.payload).0,
        Some(GoAwayReason::Protocol)
    );
    peer.assert_closed_at(Duration::from_secs(30)).await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_drained_after_5_min() {
    let mut peer = Peer::connect(true).await;
    let goaway = peer.next().await.unwrap();
    assert_between(
        peer.elapsed(),
        Duration::from_secs(300),
        Duration::from_secs(300) + TICK,
    );
    assert_eq!(
        GoAwayReason::parse(&goaway.payload).0,
        Some(GoAwayReason::Idle)
    );
    let ping = peer.next().await.unwrap();
    assert_eq!((ping.kind, ping.call_id), (Kind::Ping, DRAIN_PING));
    // The Pong settles the drain: the server closes at once.
    let idle_at = peer.elapsed();
    peer.send(&FrameBuf::new(Kind::Pong, DRAIN_PING, 0).finish())
        .await;
    peer.assert_closed_at(idle_at).await;
}

#[tokio::test(start_paused = true)]
async fn keepalive_pings_after_30_s_and_gives_up_20_s_later() {
    let mut peer = Peer::connect(true).await;
    peer.request(1).await;
    let ping = peer.next().await.unwrap();
    assert_eq!((ping.kind, ping.call_id), (Kind::Ping, 0));
    assert_between(
        peer.elapsed(),
        Duration::from_secs(30),
        Duration::from_secs(30) + TICK,
    );
    let pinged_at = peer.elapsed();
    let running = peer.running.clone();
    assert_eq!(running.load(Ordering::SeqCst), 1);
    peer.assert_closed_at(pinged_at + Duration::from_secs(20))
        .await;
    tokio::task::yield_now().await;
    assert_eq!(running.load(Ordering::SeqCst), 0, "the handler was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_connection_runs_at_most_256_handlers_holds_1024_back_and_then_stops_reading() {
    let mut peer = Peer::connect(true).await;
    for id in 1..=256 + 1024 + 20 {
        peer.request(id).await;
    }
    peer.send(&FrameBuf::new(Kind::Ping, 7, 0).finish()).await;
    // 256 run, 1,024 wait for a slot, and the requests behind them are not
    // read, nor the Ping behind those: for a minute no reply and no Pong
    // comes, only the server's own
    // Pings (every half keepalive interval), which tell the client that the
    // server is alive though it does not read.
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut pings = 0;
    while let Ok(frame) = tokio::time::timeout_at(until, peer.next()).await {
        let frame = frame.expect("the connection stays open");
        assert_eq!(frame.kind, Kind::Ping, "{frame:?}");
        pings += 1;
    }
    assert!((2..=5).contains(&pings), "{pings} pings in 60 s");
    assert_eq!(peer.running.load(Ordering::SeqCst), 256);
}

#[tokio::test(start_paused = true)]
async fn more_than_1000_cancels_of_unknown_calls_in_10_s_is_abuse() {
    let mut peer = Peer::connect(true).await;
    let mut cancels = Vec::new();
    for id in 0..1_000 {
        cancels.extend_from_slice(&FrameBuf::new(Kind::Cancel, id, 0).finish());
    }
    peer.send(&cancels).await;
    let quiet = tokio::time::timeout(Duration::from_secs(1), peer.next()).await;
    assert!(quiet.is_err(), "1,000 is within the budget: {quiet:?}");
    peer.send(&FrameBuf::new(Kind::Cancel, 1_000, 0).finish())
        .await;
    let goaway = peer.next().await.unwrap();
    assert_eq!(
        GoAwayReason::parse(&goaway.payload).0,
        Some(GoAwayReason::Abuse)
    );
    assert!(peer.next().await.is_none());
}
