//! Bytes in and out: the batching frame writer, the handshake, and the TCP
//! transport. Everything above works on any `AsyncRead + AsyncWrite` pair, so
//! Unix sockets, in-memory pipes and TLS plug in here.

mod reader;
mod turns;
mod writer;

pub(crate) use reader::{FrameReader, Incoming};
pub(crate) use turns::{CLIENT_ALONE, SERVER_ALONE, SERVER_ALONE_WRITING, Turns};

pub(crate) use writer::{
    BACKLOG_LIMIT, DIRECT_WRITE, Lane, Outbox, Outgoing, Pending, WeakOutbox, Writer, start_writer,
    start_writer_on,
};

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Error;
use crate::protocol::{Hello, Kind, MIN_MAX_FRAME, VERSION};

/// Connects over TCP with `TCP_NODELAY` set (a lone call must not wait for
/// Nagle's algorithm), giving up after `timeout`.
pub(crate) async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Error> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            Error::io(
                format!("connecting to {addr}"),
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                ),
            )
        })?
        .map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| Error::io("setting TCP_NODELAY", e))?;
    Ok(stream)
}

/// Sends our Hello, then reads and checks the peer's, within `timeout`.
/// The server calls it with `server = true` and answers only after the
/// client's Hello arrived, so a non-RPC peer learns nothing.
pub(crate) async fn handshake<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    server: bool,
    timeout: Duration,
    max_frame: usize,
) -> Result<Hello, Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let exchange = async {
        if !server {
            send_hello(writer, max_frame).await?;
        }
        let theirs = match reader.next().await {
            Some(Ok(f)) if f.kind == Kind::Hello => {
                Hello::parse(f.payload).map_err(Error::Protocol)?
            }
            Some(Ok(f)) => {
                return Err(Error::Protocol(format!(
                    "expected a Hello frame first, got {:?}",
                    f.kind
                )));
            }
            Some(Err(e)) => return Err(Error::Protocol(format!("bad handshake: {e}"))),
            None => {
                return Err(Error::Protocol(
                    "the peer closed the connection during the handshake".into(),
                ));
            }
        };
        if server {
            // Answer even on a version mismatch, so the client can name both versions.
            send_hello(writer, max_frame).await?;
        }
        if theirs.version != VERSION {
            let (client, srv) = if server {
                (theirs.version, VERSION)
            } else {
                (VERSION, theirs.version)
            };
            return Err(Error::Protocol(format!(
                "protocol version mismatch: the client speaks v{client}, the server speaks v{srv}"
            )));
        }
        if let Some(m) = theirs.max_frame
            && (m as usize) < MIN_MAX_FRAME
        {
            return Err(Error::Protocol(format!(
                "the peer accepts frames of at most {m} bytes, below the minimum of {MIN_MAX_FRAME}"
            )));
        }
        Ok(theirs)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        Error::Protocol(format!("the handshake did not complete within {timeout:?}"))
    })?
}

async fn send_hello<W: AsyncWrite + Unpin>(writer: &mut W, max_frame: usize) -> Result<(), Error> {
    writer
        .write_all(&Hello::ours(max_frame).encode())
        .await
        .map_err(|e| Error::io("sending the handshake", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FrameCodec, MIN_MAX_FRAME};
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_peer_advertising_a_frame_limit_below_the_minimum_is_refused() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let (r, mut w) = tokio::io::split(ours);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        let peer = tokio::spawn(async move {
            let mut hello = [0u8; 28];
            theirs.read_exact(&mut hello).await.unwrap();
            let tiny = Hello {
                max_frame: Some(100),
                ..Hello::ours(MIN_MAX_FRAME)
            };
            theirs.write_all(&tiny.encode()).await.unwrap();
            theirs
        });
        let err = handshake(&mut reader, &mut w, false, Duration::from_secs(5), 1 << 20)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("below the minimum"), "{err}");
        drop(peer.await.unwrap());
    }
}
