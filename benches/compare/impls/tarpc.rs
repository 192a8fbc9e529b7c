//! tarpc 0.38: its serde transport over TCP with the bincode codec.

// `#[tarpc::service]` generates public items without docs or Debug.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::net::SocketAddr;

use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tarpc::{context, serde_transport};
use tokio::net::{TcpListener, TcpStream};

use super::LoadClient;

#[tarpc::service]
pub trait TBench {
    async fn add(a: i32, b: i32) -> i32;
    async fn echo(data: Vec<u8>) -> Vec<u8>;
}

#[derive(Clone)]
struct Srv;

impl TBench for Srv {
    async fn add(self, _: context::Context, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    async fn echo(self, _: context::Context, data: Vec<u8>) -> Vec<u8> {
        data
    }
}

/// `tcp::listen`/`tcp::connect` do not set `TCP_NODELAY`; the other
/// implementations do, so the streams are made here, with it, and wrapped
/// exactly as those functions wrap them (a 16 MiB frame limit like ours).
fn framed(stream: TcpStream) -> Framed<TcpStream, LengthDelimitedCodec> {
    stream.set_nodelay(true).expect("nodelay");
    LengthDelimitedCodec::builder()
        .max_frame_length(16 << 20)
        .new_framed(stream)
}

/// Starts a server on the current runtime and returns its address.
pub(crate) async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("tarpc: bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.expect("tarpc: accept");
            let transport = serde_transport::new(framed(stream), Bincode::default());
            tokio::spawn(
                BaseChannel::with_defaults(transport)
                    .execute(Srv.serve())
                    .for_each(|response| async move {
                        tokio::spawn(response);
                    }),
            );
        }
    });
    addr
}

pub(crate) async fn connect(addr: SocketAddr) -> TBenchClient {
    let stream = TcpStream::connect(addr).await.expect("tarpc: connect");
    let transport = serde_transport::new(framed(stream), Bincode::default());
    TBenchClient::new(tarpc::client::Config::default(), transport).spawn()
}

impl LoadClient for TBenchClient {
    async fn add(&self, a: i32, b: i32) -> i32 {
        TBenchClient::add(self, context::current(), a, b)
            .await
            .expect("tarpc: add")
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        TBenchClient::echo(self, context::current(), data)
            .await
            .expect("tarpc: echo")
    }
}
