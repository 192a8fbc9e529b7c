//! This library: a `#[rpc::service]` trait, its server and its client.
//!
//! Inside this file `rpc` is the library (a module's own name is not in scope
//! in it); in `impls/mod.rs` it is this module.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

/// What a contender of this family adds to the plain library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extra {
    Plain,
    /// One interceptor that does nothing, on the server and on the client.
    Intercepted,
    /// TLS, with a certificate made when the process starts.
    Tls,
    /// Requests and replies compressed with this algorithm.
    Compressed(rpc::Compression),
    /// A `tracing` subscriber recording every span in the process (the
    /// registry, with a layer that does nothing more): the calls' spans are
    /// made, their fields recorded, entered and closed.
    Traced,
    /// JSON payloads instead of bincode (the server accepts both).
    Json,
}

/// Installs the span-recording subscriber of [`Extra::Traced`], once per
/// process (the server and the client are in the same one).
fn trace_every_span() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // A layer, even one that does nothing: the registry frees a closed
        // span's data only when a layer stack closes it.
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::layer::Identity::new());
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    });
}

/// Lets every call through and hears every outcome, doing nothing.
struct Noop;

impl rpc::intercept::Interceptor for Noop {}

/// The certificate authority and the server's identity, made once per
/// process (the server and the client are in the same one).
fn certificates() -> &'static (rpc_suite::certs::Ca, rpc_suite::certs::Identity) {
    static MADE: std::sync::OnceLock<(rpc_suite::certs::Ca, rpc_suite::certs::Identity)> =
        std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let ca = rpc_suite::certs::Ca::new("bench CA");
        let server = ca.server(&["localhost"], rpc_suite::certs::Validity::Current);
        (ca, server)
    })
}

/// Starts a server on the current runtime and returns its address.
pub(crate) async fn serve(
    max_handlers_per_connection: usize,
    batching: bool,
    extra: Extra,
) -> SocketAddr {
    let mut builder = rpc::Server::builder()
        .max_handlers_per_connection(max_handlers_per_connection)
        .write_batching(batching)
        .add_service(BenchServer::new(BenchImpl));
    match extra {
        Extra::Plain => {}
        Extra::Intercepted => builder = builder.interceptor(Noop),
        Extra::Tls => {
            let (_, id) = certificates();
            let config = rpc::tls::server_config(id.chain.clone(), id.key()).expect("TLS config");
            builder = builder.tls(config);
        }
        Extra::Compressed(c) => builder = builder.compression(c),
        Extra::Traced => trace_every_span(),
        Extra::Json => {}
    }
    let server = builder.bind("127.0.0.1:0").await.expect("rpc: bind");
    // Dropping the handle leaves the server running.
    server.local_addr()
}

/// `counted`: the connection's bytes both ways are added to [`WIRE`].
pub(crate) async fn connect(
    addr: SocketAddr,
    batching: bool,
    extra: Extra,
    counted: bool,
) -> BenchClient {
    let builder = rpc::Channel::builder().write_batching(batching);
    let channel = match extra {
        Extra::Plain if counted => builder.connect_with(Counting(addr)).await,
        Extra::Plain | Extra::Traced => builder.connect(addr).await,
        Extra::Intercepted => builder.interceptor(Noop).connect(addr).await,
        Extra::Tls => {
            let (ca, _) = certificates();
            let config = rpc::tls::client_config(vec![ca.certificate()]).expect("TLS config");
            builder.connect_tls(addr, config, "localhost").await
        }
        Extra::Compressed(c) if counted => {
            builder.compression(c).connect_with(Counting(addr)).await
        }
        Extra::Compressed(c) => builder.compression(c).connect(addr).await,
        Extra::Json => builder.format(rpc::Format::Json).connect(addr).await,
    };
    BenchClient::new(channel.expect("rpc: connect"))
}

/// Bytes the counted connections wrote and read (Z1's bytes on the wire).
pub(crate) static WIRE: AtomicU64 = AtomicU64::new(0);

/// TCP connections whose bytes count in [`WIRE`].
struct Counting(SocketAddr);

impl rpc::transport::Connector for Counting {
    fn connect(&self) -> futures::future::BoxFuture<'_, std::io::Result<rpc::transport::Link>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(self.0).await?;
            stream.set_nodelay(true)?;
            let (read, write) = stream.into_split();
            Ok(rpc::transport::Link::from_halves(
                Box::new(Counted(read)),
                Box::new(Counted(write)),
                rpc::transport::Peer::Tcp(self.0),
            ))
        })
    }

    fn address(&self) -> rpc::transport::Address {
        rpc::transport::Address::Tcp(self.0)
    }
}

/// One half of a counted connection.
struct Counted<T>(T);

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        WIRE.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.0).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            WIRE.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            WIRE.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
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
