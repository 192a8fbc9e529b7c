//! This library's server streaming, for the streaming workloads (S1, S2):
//! one call of `watch` streams every item.

use std::net::SocketAddr;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::StreamClient;

/// One streamed item (the `Item` of tonic's `proto/feed.proto`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Item {
    #[serde(with = "rpc::bytes")]
    pub(crate) payload: Vec<u8>,
}

#[rpc::service]
pub(crate) trait Feed {
    /// `count` items of `size` bytes each, as one stream.
    async fn watch(&self, count: u64, size: u32) -> rpc::Stream<Item>;
}

struct FeedImpl;

impl Feed for FeedImpl {
    async fn watch(&self, count: u64, size: u32) -> rpc::Stream<Item> {
        // A buffer of its own per item, as every implementation's server
        // makes them.
        let payload = vec![0xA5u8; size as usize];
        rpc::Stream::new(futures::stream::iter(0..count).map(move |_| Item {
            payload: payload.clone(),
        }))
    }
}

/// Starts a server on the current runtime and returns its address (the
/// settings of `rpc`'s server in the other workloads).
pub(crate) async fn serve(max_handlers_per_connection: usize) -> SocketAddr {
    let server = rpc::Server::builder()
        .max_handlers_per_connection(max_handlers_per_connection)
        .add_service(FeedServer::new(FeedImpl))
        .bind("127.0.0.1:0")
        .await
        .expect("rpc: bind");
    server.local_addr()
}

/// One connection; `window` (`BENCH_STREAM_WINDOW`): the client's stream
/// window instead of the library's default.
pub(crate) async fn connect(addr: SocketAddr, window: Option<usize>) -> FeedClient {
    let mut builder = rpc::Channel::builder();
    if let Some(bytes) = window {
        builder = builder.stream_window(bytes);
    }
    FeedClient::new(builder.connect(addr).await.expect("rpc: connect"))
}

impl StreamClient for FeedClient {
    async fn fetch(&self, count: u64, size: u32) -> u64 {
        let mut stream = self.watch(count, size).await.expect("rpc: watch");
        let mut bytes = 0;
        while let Some(item) = stream.next().await {
            bytes += item.expect("rpc: item").payload.len() as u64;
        }
        bytes
    }
}
