//! This library: a `#[rpc::service]` trait, its server and its client.
//!
//! Inside this file `rpc` is the library (a module's own name is not in scope
//! in it); in `impls/mod.rs` it is this module.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::LoadClient;

/// Handlers of `slow` that have started (for the memory test).
pub(crate) static STARTED: AtomicUsize = AtomicUsize::new(0);

#[rpc::service]
pub(crate) trait Bench {
    async fn add(&self, a: i32, b: i32) -> i32;
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    /// Sleeps `ms` milliseconds: a call that stays in flight.
    async fn slow(&self, ms: u64);
}

struct BenchImpl;

impl Bench for BenchImpl {
    async fn add(&self, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    async fn slow(&self, ms: u64) {
        STARTED.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Starts a server on the current runtime and returns its address.
pub(crate) async fn serve(max_handlers_per_connection: usize, batching: bool) -> SocketAddr {
    let server = rpc::Server::builder()
        .max_handlers_per_connection(max_handlers_per_connection)
        .write_batching(batching)
        .add_service(BenchServer::new(BenchImpl))
        .bind("127.0.0.1:0")
        .await
        .expect("rpc: bind");
    // Dropping the handle leaves the server running.
    server.local_addr()
}

pub(crate) async fn connect(addr: SocketAddr, batching: bool) -> BenchClient {
    BenchClient::new(
        rpc::Channel::builder()
            .write_batching(batching)
            .connect(addr)
            .await
            .expect("rpc: connect"),
    )
}

/// A balanced channel of `endpoints` (1 or 2) whose discovery finds the one
/// server at `addr`: the second is the same server by its IPv4-mapped IPv6
/// address, so the channel chooses between two endpoints for every call.
pub(crate) async fn connect_balanced(addr: SocketAddr, endpoints: u8) -> BenchClient {
    let mut addrs = vec![addr];
    if let (2, std::net::IpAddr::V4(v4)) = (endpoints, addr.ip()) {
        addrs.push(SocketAddr::new(v4.to_ipv6_mapped().into(), addr.port()));
    }
    BenchClient::new(
        rpc::Channel::balanced(rpc::discover::Static::new(addrs))
            .connect()
            .await
            .expect("rpc: connect balanced"),
    )
}

impl LoadClient for BenchClient {
    async fn add(&self, a: i32, b: i32) -> i32 {
        BenchClient::add(self, a, b).await.expect("rpc: add")
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        BenchClient::echo(self, data).await.expect("rpc: echo")
    }
}
