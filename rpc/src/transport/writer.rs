//! The writer task: one per connection. Many callers queue encoded frames; the
//! writer drains whatever is queued into one buffer and writes it with one
//! syscall, so concurrent calls share syscalls while a lone call is written at
//! once (it never waits for company).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames at least this large are written straight from their own buffer
/// instead of being copied into the batch.
const DIRECT_WRITE: usize = 32 * 1024;
/// Frames taken from the queue per batch.
const BATCH: usize = 128;
/// A batch buffer that grew past this is given back after use, so one large
/// burst does not pin memory on an idle connection.
const KEEP_CAPACITY: usize = 256 * 1024;

/// The sending side of a connection's writer. Unbounded because every producer
/// is bounded elsewhere (in-flight call and handler limits), and a bounded
/// queue would let a slow reader of ours deadlock a writer of theirs.
pub(crate) type Outbox = mpsc::UnboundedSender<Bytes>;

/// Spawns the writer over `io`. It ends, shutting down the write side, when
/// every [`Outbox`] is dropped, or with the first I/O error.
pub(crate) fn spawn_writer<W>(io: W) -> (Outbox, JoinHandle<std::io::Result<()>>)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, tokio::spawn(run(io, rx)))
}

async fn run<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) -> std::io::Result<()> {
    let mut frames = Vec::with_capacity(BATCH);
    let mut batch = BytesMut::new();
    while rx.recv_many(&mut frames, BATCH).await > 0 {
        for frame in frames.drain(..) {
            if frame.len() >= DIRECT_WRITE {
                if !batch.is_empty() {
                    io.write_all(&batch).await?;
                    batch.clear();
                }
                io.write_all(&frame).await?;
            } else {
                batch.extend_from_slice(&frame);
            }
        }
        if !batch.is_empty() {
            io.write_all(&batch).await?;
            batch.clear();
        }
        io.flush().await?;
        if batch.capacity() > KEEP_CAPACITY {
            batch = BytesMut::new();
        }
    }
    io.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn writes_frames_in_order_and_closes_when_senders_drop() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let (tx, task) = spawn_writer(a);
        tx.send(Bytes::from_static(b"one ")).unwrap();
        tx.send(Bytes::from(vec![b'x'; DIRECT_WRITE])).unwrap();
        tx.send(Bytes::from_static(b" two")).unwrap();
        drop(tx);
        task.await.unwrap().unwrap();
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 8 + DIRECT_WRITE);
        assert!(out.starts_with(b"one x") && out.ends_with(b"x two"));
    }
}
