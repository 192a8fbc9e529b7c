//! A streaming service: each shape of streaming method, with counters that
//! tests read to see what the producing side did.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// One item of a feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its place in the stream, from 0.
    pub seq: u64,
    /// Its payload.
    #[serde(with = "rpc::bytes")]
    pub data: Vec<u8>,
}

/// What looking up an empty prefix fails with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedError {
    /// The prefix was empty.
    EmptyPrefix,
}

/// Streams in every direction.
#[rpc::service]
pub trait Feed {
    /// `count` items of `size` bytes each.
    async fn watch(&self, count: u64, size: u32) -> rpc::Stream<Item>;
    /// Numbers for ever, one every `every_ms` milliseconds.
    async fn endless(&self, every_ms: u64) -> rpc::Stream<u64>;
    /// Numbers for ever, one a second, with no deadline unless the caller
    /// sets one.
    #[rpc(no_deadline)]
    async fn follow(&self) -> rpc::Stream<u64>;
    /// Numbers from 0, panicking while producing `at`.
    async fn panics_at(&self, at: u64) -> rpc::Stream<u64>;
    /// Numbers from 0 to `ok`, then an error of the producer's.
    async fn fails_after(&self, ok: u64) -> rpc::Stream<u64>;
    /// Three keys under `prefix`, or an application error for an empty one.
    async fn lookup(&self, prefix: String) -> Result<rpc::Stream<String>, FeedError>;
    /// The bytes of every chunk, counted.
    async fn upload(&self, chunks: rpc::Stream<Vec<u8>>) -> u64;
    /// Each message echoed as it comes, then, once the client has finished
    /// sending, `"done: N"`.
    async fn chat(&self, inbox: rpc::Stream<String>) -> rpc::Stream<String>;
    /// Items the server's producers have yielded so far (a unary call).
    async fn produced(&self) -> u64;
}

/// What the producing side did, for tests to read.
#[derive(Debug, Default)]
pub struct Counters {
    /// Items taken from the producers' streams.
    pub produced: AtomicU64,
    /// Producers (the streams' futures) dropped, however they ended.
    pub dropped: AtomicU64,
    /// Bytes the last finished upload counted.
    pub uploaded: AtomicU64,
}

/// The server's implementation.
#[derive(Debug, Default, Clone)]
pub struct FeedImpl {
    /// Shared with every clone.
    pub counters: Arc<Counters>,
}

/// Counts its drop: the producer it travels with was dropped.
struct OnDrop(Arc<Counters>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl FeedImpl {
    /// `items` as a stream, counted as they are taken and when dropped.
    fn counted<T: Send + 'static>(
        &self,
        items: impl futures::Stream<Item = T> + Send + 'static,
    ) -> rpc::Stream<T> {
        let guard = OnDrop(self.counters.clone());
        rpc::Stream::new(items.map(move |item| {
            guard.0.produced.fetch_add(1, Ordering::Relaxed);
            item
        }))
    }
}

fn ticks(every: Duration) -> impl futures::Stream<Item = u64> + Send + 'static {
    futures::stream::unfold(0u64, move |n| async move {
        tokio::time::sleep(every).await;
        Some((n, n + 1))
    })
}

impl Feed for FeedImpl {
    async fn watch(&self, count: u64, size: u32) -> rpc::Stream<Item> {
        let data = vec![0xA5; size as usize];
        self.counted(futures::stream::iter(0..count).map(move |seq| Item {
            seq,
            data: data.clone(),
        }))
    }

    async fn endless(&self, every_ms: u64) -> rpc::Stream<u64> {
        self.counted(ticks(Duration::from_millis(every_ms)))
    }

    async fn follow(&self) -> rpc::Stream<u64> {
        self.counted(ticks(Duration::from_secs(1)))
    }

    async fn panics_at(&self, at: u64) -> rpc::Stream<u64> {
        self.counted(futures::stream::iter(0..).map(move |n| {
            assert!(n != at, "the producer gave up at item {at}");
            n
        }))
    }

    async fn fails_after(&self, ok: u64) -> rpc::Stream<u64> {
        rpc::Stream::from_results(futures::stream::iter(0..=ok).map(move |n| {
            if n < ok {
                Ok(n)
            } else {
                Err(format!("no item after {ok}"))
            }
        }))
    }

    async fn lookup(&self, prefix: String) -> Result<rpc::Stream<String>, FeedError> {
        if prefix.is_empty() {
            return Err(FeedError::EmptyPrefix);
        }
        Ok(rpc::Stream::iter(
            ["a", "b", "c"].map(|key| format!("{prefix}{key}")),
        ))
    }

    async fn upload(&self, mut chunks: rpc::Stream<Vec<u8>>) -> u64 {
        let mut total = 0;
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => total += chunk.len() as u64,
                Err(_) => break,
            }
        }
        self.counters.uploaded.store(total, Ordering::SeqCst);
        total
    }

    async fn produced(&self) -> u64 {
        self.counters.produced.load(Ordering::SeqCst)
    }

    async fn chat(&self, mut inbox: rpc::Stream<String>) -> rpc::Stream<String> {
        let (tx, replies) = rpc::stream::channel();
        rpc::context::spawn(async move {
            let mut n = 0;
            while let Some(Ok(message)) = inbox.next().await {
                n += 1;
                if tx.send(format!("echo: {message}")).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(format!("done: {n}")).await;
        });
        replies
    }
}
