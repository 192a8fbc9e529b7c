//! `#[rpc(blocking)]` methods: plain `fn`s in the trait, implemented and
//! called in-process as plain `fn`s, served on tokio's blocking pool, and
//! called from the client as `async` methods like any other. Every argument
//! and return shape works as for an `async fn`.

#![deny(warnings)]

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TooShort;

#[rpc::service]
pub trait Hasher {
    /// Hashes the bytes (CPU-bound: off the async workers).
    #[rpc(blocking)]
    fn hash(&self, data: &[u8]) -> u64;
    #[rpc(blocking, name = "check")]
    fn check_len(&self, data: Vec<u8>, min: usize) -> Result<usize, TooShort>;
    #[rpc(blocking)]
    fn reset(&self);
    #[rpc(blocking)]
    fn label(&self, prefix: &str) -> String {
        format!("{prefix}: hasher")
    }
    /// Async and blocking methods side by side.
    async fn calls(&self) -> u64;
}

#[derive(Default)]
struct Fnv {
    calls: AtomicU64,
}

impl Hasher for Fnv {
    fn hash(&self, data: &[u8]) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
    fn check_len(&self, data: Vec<u8>, min: usize) -> Result<usize, TooShort> {
        if data.len() < min { Err(TooShort) } else { Ok(data.len()) }
    }
    fn reset(&self) {
        self.calls.store(0, Ordering::SeqCst);
    }
    async fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::main]
async fn main() {
    // In-process: the trait is a plain trait, blocking methods plain `fn`s.
    let local = Fnv::default();
    let local_hash = local.hash(b"abc");
    assert_eq!(local.label("local"), "local: hasher");

    let server = rpc::Server::builder()
        .add_service(HasherServer::new(Fnv::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = HasherClient::connect(server.local_addr()).await.unwrap();
    // The client's methods are `async` and return `Result<_, rpc::Error>`.
    let hash: u64 = client.hash(b"abc").await.unwrap();
    assert_eq!(hash, local_hash);
    assert_eq!(client.check_len(vec![1, 2], 3).await.unwrap(), Err(TooShort));
    assert_eq!(client.check_len(vec![1, 2], 2).await.unwrap(), Ok(2));
    assert_eq!(client.label("remote").await.unwrap(), "remote: hasher");
    assert_eq!(client.calls().await.unwrap(), 1);
    client.reset().await.unwrap();
    assert_eq!(client.calls().await.unwrap(), 0);
    // The client's futures are `Send + 'static`, as for async methods.
    let spawned = tokio::spawn(client.hash(b"")).await.unwrap().unwrap();
    assert_eq!(spawned, 0xcbf2_9ce4_8422_2325);
    server.shutdown().await;
}
