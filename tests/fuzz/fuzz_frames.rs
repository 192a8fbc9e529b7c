//! Randomized hostile peers (proptest): mutated valid frames and random bytes,
//! over several connections at once, against one live server. After each
//! case every connection must have been closed or answered (no hang), and a
//! well-behaved client connected throughout must still get correct answers;
//! at the end no thread of the process may have panicked. The decoder alone
//! gets many more cases in-process.

// Each test file uses a different part of `support`. This one is a package
// of its own (so that only it builds proptest) but shares the root package's
// test support, one folder up.
#[allow(unused_imports)]
#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::probe::*;
use support::raw::{self, RawConn};
use tokio::io::AsyncWriteExt;

/// Methods a fuzzed request may name (not `Probe.explode`, which panics on
/// purpose), and one nobody serves.
const METHODS: &[&str] = &[
    "Calculator.add",
    "Calculator.ping",
    "Probe.hold",
    "Probe.text",
    "Probe.depth",
    "Probe.units",
    "Probe.seen",
    "Nobody.home",
];

/// Arguments that decode for some methods and not for others.
fn args() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<i64>(), any::<i64>()).prop_map(|a| raw::args(&a)),
        (0u64..30, any::<u32>()).prop_map(|a| raw::args(&a)),
        ".{0,40}".prop_map(|s| raw::args(&(s,))),
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..64),
        // Length and nesting bombs.
        any::<u64>().prop_map(|n| {
            let mut b = vec![253];
            b.extend_from_slice(&n.to_le_bytes());
            b
        }),
        (1usize..5_000).prop_map(|depth| vec![1u8; depth]),
    ]
}

/// A well-formed frame of any kind a client might (or must not) send.
fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
    let budget = prop_oneof![
        Just(Duration::ZERO),
        (1u64..2_000).prop_map(Duration::from_millis),
        Just(Duration::MAX),
    ];
    prop_oneof![
        4 => (0u64..8, prop::sample::select(METHODS), budget, args())
            .prop_map(|(id, m, b, a)| raw::request(id, m, b, &a)),
        2 => (0u64..8).prop_map(raw::cancel),
        1 => any::<u64>().prop_map(raw::ping),
        1 => any::<u64>().prop_map(raw::pong),
        1 => (0u8..6, ".{0,10}").prop_map(|(r, m)| raw::goaway(r, &m)),
        1 => Just(raw::hello()),
        1 => (any::<u8>(), any::<u8>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(k, f, id, p)| raw::frame(k, f, id, &p)),
    ]
}

/// A valid frame, damaged or not.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    (valid_frame(), any::<u64>(), 0u8..7).prop_map(|(mut f, r, how)| {
        let at = (r as usize) % f.len().max(1);
        match how {
            0..=2 => {} // left intact
            3 => f[at] ^= 1 << (r % 8),
            4 => f.truncate(at),
            5 => f[..4].copy_from_slice(&((r >> 8) as u32 % 256).to_be_bytes()),
            _ => f.splice(at..at, (r >> 8).to_le_bytes()).for_each(drop),
        }
        f
    })
}

/// What one connection sends.
#[derive(Debug, Clone)]
enum Session {
    /// A proper Hello, then frames.
    Frames(Vec<Vec<u8>>),
    /// A damaged Hello, then frames.
    BadHello(Vec<u8>, Vec<Vec<u8>>),
    /// Bytes and nothing else.
    Garbage(Vec<u8>),
}

fn session() -> impl Strategy<Value = Session> {
    let frames = || prop::collection::vec(frame(), 0..12);
    prop_oneof![
        6 => frames().prop_map(Session::Frames),
        2 => (
            (any::<u64>(), 0u8..3).prop_map(|(r, how)| {
                let mut h = raw::hello();
                let at = (r as usize) % h.len();
                match how {
                    0 => h[at] ^= 1 << (r % 8),
                    1 => h.truncate(at),
                    _ => h[18..20].copy_from_slice(&(r as u16).to_be_bytes()),
                }
                h
            }),
            frames(),
        )
            .prop_map(|(h, f)| Session::BadHello(h, f)),
        2 => prop::collection::vec(any::<u8>(), 0..2_048).prop_map(Session::Garbage),
    ]
}

/// Plays one session, then closes our side; the server must close its side
/// (or have closed it already) within a few seconds, whatever it was sent.
async fn play(addr: SocketAddr, session: Session) -> Result<(), String> {
    let mut conn = RawConn::connect(addr).await;
    let bytes: Vec<u8> = match session {
        Session::Frames(frames) => std::iter::once(raw::hello())
            .chain(frames)
            .flatten()
            .collect(),
        Session::BadHello(hello, frames) => {
            std::iter::once(hello).chain(frames).flatten().collect()
        }
        Session::Garbage(bytes) => bytes,
    };
    // The server may close mid-way (a bad frame): later writes may fail.
    let _ = conn.try_send(&bytes).await;
    let _ = conn.stream.shutdown().await;
    let closed = conn.frames_until_closed(Duration::from_secs(3600));
    match tokio::time::timeout(Duration::from_secs(10), closed).await {
        Ok((frames, _)) => {
            for f in frames {
                SEEN[usize::from(f.kind.min(15))].fetch_add(1, SeqCst);
            }
            Ok(())
        }
        Err(_) => Err("the server left a connection open after the peer closed it".into()),
    }
}

static SEEN: [AtomicUsize; 16] = [const { AtomicUsize::new(0) }; 16];

/// Counts panics anywhere in the process (handler tasks, drivers, writers),
/// including ones that tokio or catch_unwind would otherwise swallow.
fn count_panics() -> Arc<AtomicUsize> {
    let panics = Arc::new(AtomicUsize::new(0));
    let counter = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, SeqCst);
        previous(info);
    }));
    panics
}

#[test]
fn random_and_mutated_frames_neither_crash_nor_stall_the_server() {
    let panics = count_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, good) = rt.block_on(async {
        let (server, _) = start_probe(
            rpc::Server::builder()
                .handshake_timeout(Duration::from_secs(2))
                .frame_timeout(Duration::from_secs(2)),
        )
        .await;
        let good = CalculatorClient::connect(server.local_addr())
            .await
            .unwrap();
        (server, good)
    });
    let addr = server.local_addr();
    let mut runner = TestRunner::new(Config {
        cases: 512,
        max_shrink_iters: 64,
        ..Config::default()
    });
    let sessions = prop::collection::vec(session(), 1..4);
    let result = runner.run(&sessions, |sessions| {
        rt.block_on(async {
            let played: Vec<_> = sessions
                .into_iter()
                .map(|s| tokio::spawn(play(addr, s)))
                .collect();
            // Meanwhile, and after, the well-behaved client is served right.
            let sum = good.add(40, 2).await;
            for p in played {
                p.await.unwrap().map_err(TestCaseError::fail)?;
            }
            prop_assert_eq!(sum.map_err(|e| e.to_string()), Ok(42));
            prop_assert_eq!(good.add(-1, 1).await.map_err(|e| e.to_string()), Ok(0));
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("frames back by kind: {SEEN:?}");
    let seen = |kind: u8| SEEN[usize::from(kind)].load(SeqCst);
    assert!(
        seen(raw::kind::RESPONSE) > 0 && seen(raw::kind::GOAWAY) > 0,
        "the cases never reached a handler or a protocol error"
    );
    rt.block_on(assert_serves(addr));
    assert_eq!(panics.load(SeqCst), 0, "something panicked (see stderr)");
}

proptest! {
    #![proptest_config(Config { cases: 10_000, ..Config::default() })]

    /// The decoder in-process: random bytes, and valid frames damaged.
    #[test]
    fn the_decoder_takes_any_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        frames in prop::collection::vec(frame(), 0..6),
        split in any::<u8>(),
    ) {
        rpc::protocol::fuzz_decode(&bytes);
        let mut joined = vec![split];
        joined.extend(frames.into_iter().flatten());
        rpc::protocol::fuzz_decode(&joined);
    }
}
