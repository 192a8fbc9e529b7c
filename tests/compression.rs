//! Compression as a user relies on it: lz4 and zstd negotiated at the
//! handshake make large calls and streams smaller on the wire (counted by a
//! transport of our own); an algorithm the server does not accept, a small
//! value and an incompressible one all go raw; a decompression bomb and an
//! algorithm not advertised are refused without the server's memory
//! growing, and other connections go on; a balanced channel compresses too.
//!
//! `cargo test --features lz4,zstd --test compression`

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use rpc::Compression;
use rpc::transport::{Address, Connector, Link, Peer};
use rpc_suite::feed::{FeedClient, FeedImpl, FeedServer};
use support::raw::{RawConn, frame, kind};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Echoes what it is sent.
#[rpc::service]
trait Blob {
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
}

struct BlobImpl;

impl Blob for BlobImpl {
    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
}

/// Text of `len` bytes that reads like a JSON array of records.
fn json(len: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < len {
        s += &format!(r#"{{"id":{i},"name":"user-{}","active":true}},"#, i % 97);
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

/// `len` bytes with no repeats for a compressor to find (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Bytes a client's connections wrote and read, all of them together.
#[derive(Debug, Clone, Default)]
struct Wire {
    sent: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
}

impl Wire {
    /// (sent, received) since the last call.
    fn take(&self) -> (usize, usize) {
        (self.sent.swap(0, SeqCst), self.received.swap(0, SeqCst))
    }
}

/// A TCP stream that counts its bytes.
struct Counted {
    inner: TcpStream,
    wire: Wire,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.wire
            .received
            .fetch_add(buf.filled().len() - before, SeqCst);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.sent.fetch_add(n, SeqCst);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connects over TCP through [`Counted`] streams.
struct Counting {
    addr: SocketAddr,
    wire: Wire,
}

impl Connector for Counting {
    fn connect(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            let inner = TcpStream::connect(self.addr).await?;
            inner.set_nodelay(true)?;
            let wire = self.wire.clone();
            Ok(Link::new(Counted { inner, wire }, Peer::Tcp(self.addr)))
        })
    }

    fn address(&self) -> Address {
        Address::Tcp(self.addr)
    }
}

/// A server of the blob and the feed, configured by `builder`.
async fn serve(builder: rpc::server::Builder) -> (rpc::ServerHandle, SocketAddr) {
    let server = builder
        .add_service(BlobServer::new(BlobImpl))
        .add_service(FeedServer::new(FeedImpl::default()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    (server, addr)
}

/// A channel to `addr` asking for `compression`, and its byte counts (the
/// handshake already taken out).
async fn counted(addr: SocketAddr, compression: Compression) -> (rpc::Channel, Wire) {
    let wire = Wire::default();
    let connector = Counting {
        addr,
        wire: wire.clone(),
    };
    let channel = rpc::Channel::builder()
        .compression(compression)
        .connect_with(connector)
        .await
        .unwrap();
    wire.take();
    (channel, wire)
}

#[tokio::test]
async fn lz4_and_zstd_round_trips_are_smaller_on_the_wire() {
    let raw = json(256 << 10);
    for algorithm in [Compression::Lz4, Compression::Zstd] {
        let (_server, addr) = serve(rpc::Server::builder().compression(algorithm)).await;
        let (channel, wire) = counted(addr, algorithm).await;
        let blob = BlobClient::new(channel.clone());
        assert_eq!(blob.echo(raw.clone()).await.unwrap(), raw);
        let (sent, received) = wire.take();
        assert!(sent < raw.len() / 3, "{algorithm:?}: {sent} bytes sent");
        assert!(
            received < raw.len() / 3,
            "{algorithm:?}: {received} received"
        );

        // A call that asks for none sends its request raw; the reply is
        // still compressed (the server's choice).
        let plain = BlobClient::new(channel.with_compression(Compression::None));
        assert_eq!(plain.echo(raw.clone()).await.unwrap(), raw);
        let (sent, received) = wire.take();
        assert!(sent > raw.len(), "{algorithm:?}: {sent} bytes sent");
        assert!(
            received < raw.len() / 3,
            "{algorithm:?}: {received} received"
        );

        // A server stream of large items, four times the client's window
        // (2 MiB) as the window counts them (decompressed), and a client
        // stream.
        let feed = FeedClient::new(channel);
        let items: Vec<_> = feed.watch(128, 64 << 10).await.unwrap().collect().await;
        assert_eq!(items.len(), 128);
        for (seq, item) in items.into_iter().enumerate() {
            let item = item.unwrap();
            assert_eq!((item.seq, item.data.len()), (seq as u64, 64 << 10));
            assert!(item.data.iter().all(|&b| b == 0xA5));
        }
        let (_, received) = wire.take();
        assert!(
            received < (128 << 16) / 10,
            "{algorithm:?}: {received} received"
        );
        let chunks = rpc::Stream::iter((0..16).map(|_| json(32 << 10)));
        assert_eq!(feed.upload(chunks).await.unwrap(), 16 * (32 << 10));
        let (sent, _) = wire.take();
        assert!(sent < (16 << 15) / 3, "{algorithm:?}: {sent} bytes sent");
    }
}

#[tokio::test]
async fn zstd_asked_of_a_server_that_accepts_only_lz4_goes_uncompressed() {
    let only_lz4 = rpc::Server::builder().accept_compression([Compression::Lz4]);
    let (_server, addr) = serve(only_lz4).await;
    let raw = json(64 << 10);
    let (channel, wire) = counted(addr, Compression::Zstd).await;
    let blob = BlobClient::new(channel.clone());
    assert_eq!(blob.echo(raw.clone()).await.unwrap(), raw);
    let (sent, received) = wire.take();
    assert!(
        sent > raw.len() && received > raw.len(),
        "{sent}, {received}"
    );
    // The same channel, asking for lz4 for one call: compressed.
    let lz4 = BlobClient::new(channel.with_compression(Compression::Lz4));
    assert_eq!(lz4.echo(raw.clone()).await.unwrap(), raw);
    let (sent, received) = wire.take();
    assert!(sent < raw.len() / 3, "{sent}");
    // The reply in kind: the client sent lz4, so it takes lz4.
    assert!(received < raw.len() / 3, "{received}");
}

#[tokio::test]
async fn small_and_incompressible_values_go_raw() {
    let (_server, addr) = serve(rpc::Server::builder().compression(Compression::Zstd)).await;
    let (channel, wire) = counted(addr, Compression::Zstd).await;
    let blob = BlobClient::new(channel);
    // Under the 1 KiB threshold (with its length prefix): as it is.
    let small = json(1000);
    assert_eq!(blob.echo(small.clone()).await.unwrap(), small);
    let (sent, received) = wire.take();
    let frame = 14 + 16 + 2 + 1000;
    assert!((frame..frame + 64).contains(&sent), "{sent}");
    assert!((frame - 16..frame + 64).contains(&received), "{received}");
    // Random bytes do not shrink by an eighth: sent raw both ways.
    let random = noise(64 << 10);
    assert_eq!(blob.echo(random.clone()).await.unwrap(), random);
    let (sent, received) = wire.take();
    assert!(
        sent > random.len() && received > random.len(),
        "{sent}, {received}"
    );
}

/// A Blob.echo request flagged compressed whose value is `value`.
fn compressed_request(call_id: u64, value: &[u8]) -> Vec<u8> {
    let mut p = rpc::protocol::method_id("Blob.echo").to_be_bytes().to_vec();
    p.extend_from_slice(&5_000_000u64.to_be_bytes());
    p.extend_from_slice(value);
    frame(kind::REQUEST, 1, call_id, &p)
}

/// Sends `request` on a raw connection after a real handshake; the
/// GoAway message the server closes the connection with.
async fn refused(addr: SocketAddr, request: &[u8]) -> String {
    let mut raw = RawConn::handshake(addr).await;
    raw.send(request).await;
    let (frames, _) = raw.frames_until_closed(Duration::from_secs(10)).await;
    let goaway = frames
        .iter()
        .find(|f| f.kind == kind::GOAWAY)
        .unwrap_or_else(|| panic!("no GoAway: {frames:?}"));
    goaway.message()
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_and_the_server_holds_nothing() {
    let (_server, addr) = serve(rpc::Server::builder()).await;
    let (channel, _) = counted(addr, Compression::Lz4).await;
    let other = BlobClient::new(channel);
    let data = json(8 << 10);
    assert_eq!(other.echo(data.clone()).await.unwrap(), data);
    let before = support::resident();
    // 1 KiB of LZ4-ish bytes that claim to be 1 GiB.
    let mut value = vec![1];
    value.extend_from_slice(&(1u32 << 30).to_be_bytes());
    value.extend_from_slice(&[0x1F; 1024]);
    for _ in 0..8 {
        let message = refused(addr, &compressed_request(1, &value)).await;
        assert!(message.contains("claims 1073741824 bytes"), "{message}");
    }
    let grown = support::resident().saturating_sub(before);
    assert!(grown < 32 << 20, "the server grew by {grown} bytes");
    // A claim that fits, over bytes that are not LZ4: refused too.
    let mut bad = vec![1];
    bad.extend_from_slice(&4096u32.to_be_bytes());
    bad.extend_from_slice(&[0xFF; 64]);
    let message = refused(addr, &compressed_request(2, &bad)).await;
    assert!(message.contains("bad LZ4 data"), "{message}");
    // Other connections go on.
    assert_eq!(other.echo(data.clone()).await.unwrap(), data);
}

#[tokio::test]
async fn an_algorithm_the_server_did_not_advertise_is_refused() {
    let only_lz4 = rpc::Server::builder().accept_compression([Compression::Lz4]);
    let (_server, addr) = serve(only_lz4).await;
    let mut value = vec![2];
    value.extend_from_slice(&100u32.to_be_bytes());
    value.extend_from_slice(&[0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0, 0]);
    let message = refused(addr, &compressed_request(1, &value)).await;
    assert!(
        message.contains("Zstd, which this side did not advertise"),
        "{message}"
    );
    // The server still serves.
    let (channel, _) = counted(addr, Compression::Lz4).await;
    let data = json(4 << 10);
    assert_eq!(
        BlobClient::new(channel).echo(data.clone()).await.unwrap(),
        data
    );
}

#[tokio::test]
async fn a_balanced_channel_compresses_too() {
    let (_one, a) = serve(rpc::Server::builder().compression(Compression::Zstd)).await;
    let (_two, b) = serve(rpc::Server::builder().compression(Compression::Zstd)).await;
    let wire = Wire::default();
    let counting = wire.clone();
    let channel = rpc::Channel::balanced(rpc::discover::Static::new([a, b]))
        .compression(Compression::Zstd)
        .health_checks(None)
        .connector(move |address| match address {
            Address::Tcp(addr) => Some(Box::new(Counting {
                addr: *addr,
                wire: counting.clone(),
            }) as Box<dyn Connector>),
            _ => None,
        })
        .connect()
        .await
        .unwrap();
    let blob = BlobClient::new(channel);
    let raw = json(128 << 10);
    assert_eq!(blob.echo(raw.clone()).await.unwrap(), raw);
    wire.take();
    for _ in 0..8 {
        assert_eq!(blob.echo(raw.clone()).await.unwrap(), raw);
    }
    let (sent, received) = wire.take();
    assert!(sent < 8 * raw.len() / 3, "{sent}");
    assert!(received < 8 * raw.len() / 3, "{received}");
}
