//! This library without streaming, for the streaming workloads (S1, S2): the
//! items fetched one unary call each, `in_flight` calls at a time from tasks
//! that each call in a loop, as the closed-loop workloads (B, D) drive
//! `rpc`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::StreamClient;

#[rpc::service]
pub(crate) trait Chunks {
    /// One item: `size` bytes.
    async fn chunk(&self, size: u32) -> Vec<u8>;
}

struct ChunksImpl;

impl Chunks for ChunksImpl {
    async fn chunk(&self, size: u32) -> Vec<u8> {
        // A buffer of its own per item, as every implementation's server
        // makes them.
        vec![0xA5; size as usize]
    }
}

/// Starts a server on the current runtime and returns its address (the
/// settings of `rpc`'s server in the other workloads).
pub(crate) async fn serve(max_handlers_per_connection: usize) -> SocketAddr {
    let server = rpc::Server::builder()
        .max_handlers_per_connection(max_handlers_per_connection)
        .add_service(ChunksServer::new(ChunksImpl))
        .bind("127.0.0.1:0")
        .await
        .expect("rpc: bind");
    server.local_addr()
}

/// One connection, and how many calls the fetch keeps in flight on it.
#[derive(Clone)]
pub(crate) struct Unary {
    client: ChunksClient,
    in_flight: usize,
}

pub(crate) async fn connect(addr: SocketAddr, in_flight: usize) -> Unary {
    let client = ChunksClient::connect(addr).await.expect("rpc: connect");
    Unary { client, in_flight }
}

impl StreamClient for Unary {
    async fn fetch(&self, count: u64, size: u32) -> u64 {
        // Tickets: each task takes one per call until they run out.
        let left = Arc::new(AtomicU64::new(count));
        let tasks: Vec<_> = (0..self.in_flight)
            .map(|_| {
                let (client, left) = (self.client.clone(), left.clone());
                tokio::spawn(async move {
                    let mut bytes = 0;
                    while left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        bytes += client.chunk(size).await.expect("rpc: chunk").len() as u64;
                    }
                    bytes
                })
            })
            .collect();
        let mut bytes = 0;
        for t in tasks {
            bytes += t.await.expect("a call task panicked");
        }
        bytes
    }
}
