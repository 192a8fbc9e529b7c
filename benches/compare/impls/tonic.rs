//! tonic 0.14 with its prost codec: the streaming workloads' gRPC contender.
//! The service is generated at build time from `benches/proto/feed.proto`
//! (by tonic-prost-build in the package's build.rs), as a tonic user gets it.
//!
//! Settings are tonic's defaults on both ends: `TCP_NODELAY` on (tonic's
//! default for `Server` and `Endpoint`; on the incoming stream of the
//! bench's own listener it is set as `Server::serve` sets it), HTTP/2
//! flow-control windows left to hyper (the client, which receives the
//! stream, advertises a 2 MiB stream window and a 5 MiB connection window),
//! 16 KiB HTTP/2 frames, and the codec's 8 KiB buffer with its 32 KiB yield
//! threshold. tonic's documentation names no setting for throughput, so
//! none is changed (its window-size and adaptive-window setters included).

use std::net::SocketAddr;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use super::StreamClient;

/// What tonic-prost-build generated from `proto/feed.proto`.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all
)]
mod pb {
    tonic::include_proto!("bench.feed");
}

use pb::feed_client::FeedClient;
use pb::feed_server::{Feed, FeedServer};
use pb::{Item, WatchRequest};

struct FeedImpl;

#[tonic::async_trait]
impl Feed for FeedImpl {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<Item, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let WatchRequest { count, size } = request.into_inner();
        // Every item is a buffer of its own, as each implementation's server
        // makes them (a `Vec<u8>`, prost's default for `bytes`).
        let payload = vec![0xA5u8; size as usize];
        let items = futures::stream::iter(0..count).map(move |_| {
            Ok(Item {
                payload: payload.clone(),
            })
        });
        Ok(Response::new(Box::pin(items)))
    }
}

/// Starts a server on the current runtime and returns its address.
pub(crate) async fn serve() -> SocketAddr {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("address"))
        .expect("tonic: bind")
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().expect("local addr");
    tokio::spawn(async move {
        Server::builder()
            .add_service(FeedServer::new(FeedImpl))
            .serve_with_incoming(incoming)
            .await
            .expect("tonic: serve");
    });
    addr
}

/// One HTTP/2 connection (a tonic `Channel` is one connection).
pub(crate) async fn connect(addr: SocketAddr) -> FeedClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("tonic: endpoint")
        .connect()
        .await
        .expect("tonic: connect");
    FeedClient::new(channel)
}

impl StreamClient for FeedClient<Channel> {
    async fn fetch(&self, count: u64, size: u32) -> u64 {
        let mut stream = self
            .clone()
            .watch(WatchRequest { count, size })
            .await
            .expect("tonic: watch")
            .into_inner();
        let mut bytes = 0;
        while let Some(item) = stream.next().await {
            bytes += item.expect("tonic: item").payload.len() as u64;
        }
        bytes
    }
}
