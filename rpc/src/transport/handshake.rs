//! The handshake: magic bytes, protocol version and frame limit, both ways,
//! before anything else crosses a new connection.

use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::FrameReader;
use crate::Error;
use crate::protocol::{HANDSHAKE_MAX_FRAME, Hello, Kind, MIN_MAX_FRAME, VERSION};

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
    // Until the peer has shown it speaks the protocol, a frame may be only
    // as long as a Hello can be: a stranger's length prefix allocates little.
    reader.set_max_frame(HANDSHAKE_MAX_FRAME);
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
    let theirs = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            Error::Protocol(format!("the handshake did not complete within {timeout:?}"))
        })??;
    reader.set_max_frame(max_frame);
    Ok(theirs)
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
    use crate::protocol::FrameCodec;
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
