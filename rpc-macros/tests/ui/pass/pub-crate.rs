//! A `pub(crate)` trait in a module: its client and server are reachable from
//! the rest of the crate, not beyond.

#![deny(warnings)]

mod api {
    #[rpc::service]
    pub(crate) trait Adder {
        async fn add(&self, a: i32, b: i32) -> i32;
    }
}

use api::{Adder, AdderClient, AdderServer};

struct Impl;
impl Adder for Impl {
    async fn add(&self, a: i32, b: i32) -> i32 {
        a + b
    }
}

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let server = rpc::Server::builder()
        .add_service(AdderServer::new(Impl))
        .bind("127.0.0.1:0")
        .await?;
    let client: AdderClient = AdderClient::connect(server.local_addr()).await?;
    assert_eq!(client.add(2, 3).await?, 5);
    server.shutdown().await;
    Ok(())
}
