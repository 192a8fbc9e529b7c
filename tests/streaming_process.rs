//! Streams between two processes: the server runs in a child process (this
//! test binary again, running only `feed_child_server`), so that each side's
//! resident memory is its own to measure, and so that the server can be
//! killed outright in the middle of a stream.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::net::SocketAddr;
use std::ops::Range;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc_suite::feed::{FeedClient, FeedImpl, FeedServer, Item};
use support::{resident, resident_of};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const MIB: usize = 1 << 20;

/// Set in the child process, which then serves the `Feed` service.
const CHILD: &str = "RPC_TEST_STREAMING_CHILD";

/// The server half of every test here, run in a child process. A no-op in a
/// normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_child_server() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let server = rpc::Server::builder()
        .add_service(FeedServer::new(FeedImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .expect("bind the child server");
    println!("ADDR {}", server.local_addr());
    // Serve until the parent closes our stdin (or kills us).
    let _ = tokio::task::spawn_blocking(|| {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
    })
    .await;
}

/// A `Feed` server in a child process of its own.
struct ChildServer {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    /// Kept open, so that the child never writes to a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl ChildServer {
    async fn start() -> Self {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "feed_child_server",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the child server");
        let pid = child.id().expect("the child's pid");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("the child server did not start")
                .unwrap()
                .expect("the child server exited");
            // libtest may have printed "test feed_child_server ... " first.
            if let Some((_, addr)) = line.split_once("ADDR ") {
                break addr.trim().parse().unwrap();
            }
        };
        ChildServer {
            child,
            pid,
            addr,
            _stdout: lines,
        }
    }

    /// The child's resident set.
    fn resident(&self) -> usize {
        resident_of(&format!("/proc/{}/status", self.pid))
    }

    /// Closes the child's stdin and waits for it to exit.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

const ITEMS: u64 = 1_000_000;
const SIZE: usize = 1024;
/// What each process may hold resident, runtime and test harness included.
const RSS_BOUND: usize = 64 * MIB;
/// What a stream frame adds to its item's bytes (the length prefix and the
/// header), as `rpc::stream` documents.
const FRAME_OVERHEAD: usize = 14;

/// The bytes of bincode's varint of `n` (its standard configuration): one
/// below 251, else a marker byte and 2, 4 or 8 bytes.
fn varint_len(n: u64) -> usize {
    match n {
        0..=250 => 1,
        251..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

/// What item `seq` of `watch(_, SIZE)` counts for against the window: its
/// whole frame, the header, `seq`, the length of the bytes, and the bytes.
fn frame_cost(seq: u64) -> usize {
    FRAME_OVERHEAD + varint_len(seq) + varint_len(SIZE as u64) + SIZE
}

/// The frames of the items `seqs`, summed a varint width at a time.
fn frames_cost(seqs: Range<u64>) -> usize {
    const WIDTHS: [Range<u64>; 4] = [
        0..251,
        251..0x1_0000,
        0x1_0000..0x1_0000_0000,
        0x1_0000_0000..u64::MAX,
    ];
    WIDTHS
        .iter()
        .map(|width| {
            let n = seqs
                .end
                .min(width.end)
                .saturating_sub(seqs.start.max(width.start));
            n as usize * frame_cost(width.start)
        })
        .sum()
}

/// A million items of 1 KiB to a consumer that pauses every 100 items: it
/// receives every item in order and a clean end, and flow control holds
/// both processes' memory and the bytes in flight to the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_of_a_million_items_bounds_memory_on_both_sides() {
    let server = ChildServer::start().await;
    let channel = rpc::Channel::builder()
        .connect(server.addr)
        .await
        .expect("connect to the child server");
    let feed = FeedClient::new(channel);
    // A second handle on the same channel (and connection), for `produced`.
    let probe = feed.clone();
    let window = rpc::stream::DEFAULT_CLIENT_WINDOW;
    let expected = vec![0xA5; SIZE];
    for seq in [0, 250, 251, 0xFFFF, 0x1_0000, ITEMS - 1] {
        let item = Item {
            seq,
            data: expected.clone(),
        };
        let encoded = bincode::serde::encode_to_vec(&item, bincode::config::standard()).unwrap();
        assert_eq!(
            frame_cost(seq),
            FRAME_OVERHEAD + encoded.len(),
            "item {seq}"
        );
    }

    let started = Instant::now();
    let client_before = resident();
    let server_before = server.resident();
    let mut client_peak = client_before;
    let mut server_peak = server_before;
    // The largest `unconsumed - (window + newest item)` seen: at most 0.
    let mut closest = i64::MIN;
    let mut max_unconsumed = 0;

    // The whole stream is one call under one deadline: a generous one, so
    // that only a stuck stream (not a slow machine) runs into it.
    let mut items = feed
        .with_timeout(Duration::from_secs(600))
        .watch(ITEMS, SIZE as u32)
        .await
        .expect("the watch call");
    let mut consumed: u64 = 0;
    while let Some(item) = items.next().await {
        let item = item.unwrap_or_else(|e| panic!("item {consumed}: {e:?}"));
        assert_eq!(item.seq, consumed, "items out of order");
        assert!(item.data == expected, "item {consumed}'s bytes");
        consumed += 1;
        if consumed.is_multiple_of(100) {
            // The pause also lets the producer fill the window, so that the
            // check below sees the most it ever has in flight.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if !consumed.is_multiple_of(1_000) {
            continue;
        }
        client_peak = client_peak.max(resident());
        server_peak = server_peak.max(server.resident());
        assert!(
            client_peak < RSS_BOUND && server_peak < RSS_BOUND,
            "after {consumed} items, resident sets of {} KiB (client) and {} KiB (server)",
            client_peak / 1024,
            server_peak / 1024
        );

        // `produced` counts the items the server's producer yielded. The
        // pump takes an item from the producer only once the flow has
        // credit (`sent < window`), and sends it in the same poll, so no
        // item is counted that credit did not allow, and none waits in the
        // pump's hands. This task consumes nothing until the reply comes,
        // and the client credits back only bytes it consumed, so when the
        // server reads the counter (P items produced, C = `consumed`
        // taken): the server took item P-1 while what it had sent and not
        // had credited back was under the window, hence
        //     cost(C) + ... + cost(P-2) < window,
        // i.e. the bytes sent and not consumed, cost(C) + ... + cost(P-1),
        // are under the window plus the newest item: the documented "at
        // most the window plus one item". Costs are each item's own frame
        // (1,042 to 1,046 bytes by the width of seq): charging every item
        // the largest cost would overstate the early items and fail a
        // correct runtime (2,009 items of 1,044 fit the window rule, but
        // 2,009 x 1,046 > window + 1,046).
        let produced = probe.produced().await.expect("the produced call");
        assert!(
            produced >= consumed,
            "the server produced {produced} items, the client consumed {consumed}"
        );
        let unconsumed = frames_cost(consumed..produced);
        let newest = frame_cost(produced.saturating_sub(1));
        max_unconsumed = max_unconsumed.max(unconsumed);
        closest = closest.max(unconsumed as i64 - (window + newest) as i64);
        assert!(
            unconsumed <= window + newest,
            "{} items ({unconsumed} bytes) sent but not consumed after {consumed}: \
             more than the window ({window}) plus one item ({newest})",
            produced - consumed,
        );
    }
    let elapsed = started.elapsed();
    assert_eq!(consumed, ITEMS, "the stream ended early, without an error");
    client_peak = client_peak.max(resident());
    server_peak = server_peak.max(server.resident());

    eprintln!(
        "{ITEMS} items in {elapsed:.1?}; client RSS {} KiB before, peak {} KiB; \
         server RSS {} KiB before, peak {} KiB (bound {} KiB each); \
         most bytes sent and not consumed {max_unconsumed} (bound window {window} + \
         one item, closest approach {closest} bytes)",
        client_before / 1024,
        client_peak / 1024,
        server_before / 1024,
        server_peak / 1024,
        RSS_BOUND / 1024,
    );
    assert!(
        client_peak < RSS_BOUND,
        "the client's resident set reached {} KiB",
        client_peak / 1024
    );
    assert!(
        server_peak < RSS_BOUND,
        "the server's resident set reached {} KiB",
        server_peak / 1024
    );
    // Some check saw the window (nearly) full, as the pause before each
    // lets the producer fill it: else the checks above proved nothing.
    assert!(
        max_unconsumed >= window / 2,
        "at most {max_unconsumed} bytes were ever in flight: the checks never saw a full window"
    );
    server.stop().await;
}

/// The server's process dies in the middle of a stream: the client's stream
/// ends with `Disconnected` promptly (not a silent end, not a hang), and a
/// call on the same channel fails rather than hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_stream_ends_the_stream_with_disconnected() {
    let mut server = ChildServer::start().await;
    let channel = rpc::Channel::builder()
        .connect(server.addr)
        .await
        .expect("connect to the child server");
    let feed = FeedClient::new(channel);
    let mut numbers = feed.endless(1).await.expect("the endless call");
    for n in 0..5 {
        let next = tokio::time::timeout(Duration::from_secs(10), numbers.next()).await;
        let number = next.expect("no item").expect("the stream ended").unwrap();
        assert_eq!(number, n);
    }

    let killed = Instant::now();
    server.child.kill().await.expect("SIGKILL the child server");
    // Items that arrived before the kill may come first; then the error.
    let mut read = 5;
    let error = loop {
        let next =
            tokio::time::timeout_at((killed + Duration::from_secs(2)).into(), numbers.next())
                .await
                .unwrap_or_else(|_| panic!("no end within 2 s of the kill ({read} items read)"));
        match next {
            Some(Ok(number)) => {
                assert_eq!(number, read);
                read += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("the stream ended silently after the server was killed"),
        }
    };
    let ended = killed.elapsed();
    assert!(
        matches!(error, rpc::Error::Disconnected { .. }),
        "{error:?}"
    );
    let after = tokio::time::timeout(Duration::from_secs(2), numbers.next()).await;
    assert!(
        matches!(after, Ok(None)),
        "after its error the stream ends: {after:?}"
    );

    // The channel's server is gone: a call fails, and does not hang.
    let call = Instant::now();
    let unary = tokio::time::timeout(Duration::from_secs(10), feed.produced())
        .await
        .expect("a call after the kill hung");
    let Err(unary) = unary else {
        panic!("a call to a killed server succeeded: {unary:?}")
    };
    eprintln!(
        "the stream ended {ended:?} after the kill ({read} items), with {error}; \
         a call then failed in {:?}: {unary}",
        call.elapsed()
    );
}
