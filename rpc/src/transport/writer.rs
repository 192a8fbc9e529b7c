//! The writer task: one per connection. Many callers queue encoded frames; the
//! writer drains whatever is queued into one buffer and writes it with one
//! syscall, so concurrent calls share syscalls while a lone call is written at
//! once (it never waits for company).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Frames at least this large are written straight from their own buffer
/// instead of being copied into the batch.
const DIRECT_WRITE: usize = 32 * 1024;
/// Frames taken from the queue per batch.
const BATCH: usize = 128;
/// A batch buffer that grew past this is given back after use, so one large
/// burst does not pin memory on an idle connection.
const KEEP_CAPACITY: usize = 256 * 1024;

/// Bytes queued for a peer that is not reading them, past which a side stops
/// producing more for it: the server stops reading that connection, and the
/// client stops answering its Pings.
pub(crate) const BACKLOG_LIMIT: usize = 1 << 20;

/// The sending side of a connection's writer.
///
/// Sending never waits: the queue is unbounded so that no producer (a handler
/// finishing, a reader answering a Ping) can deadlock against a peer that is
/// itself waiting for us to read. Instead the queue counts its bytes, and the
/// one producer that could grow it without end, the server's read loop,
/// stops reading while [`queued`](Self::queued) is high (see
/// [`wait_for_room`](Self::wait_for_room)).
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Bytes>,
    queue: Arc<Queue>,
}

/// An [`Outbox`] that does not keep the writer alive.
#[derive(Debug, Clone)]
pub(crate) struct WeakOutbox {
    tx: mpsc::WeakUnboundedSender<Bytes>,
    queue: Arc<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Bytes sent to the writer and not yet written to the socket.
    bytes: AtomicUsize,
    /// Bytes written to the socket so far.
    written: AtomicU64,
    /// Signalled whenever the writer has written something, and when it ends.
    progress: Notify,
    /// Cancelled by [`Outbox::close`].
    close: CancellationToken,
}

impl Outbox {
    /// Queues a frame; gives it back if the writer has ended.
    pub(crate) fn send(&self, frame: Bytes) -> Result<(), Bytes> {
        let len = frame.len();
        self.queue.bytes.fetch_add(len, Ordering::Relaxed);
        self.tx.send(frame).map_err(|unsent| {
            self.queue.bytes.fetch_sub(len, Ordering::Relaxed);
            unsent.0
        })
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.queue.bytes.load(Ordering::Relaxed)
    }

    /// Bytes written to the socket so far: it stops moving when the peer stops
    /// reading.
    pub(crate) fn written(&self) -> u64 {
        self.queue.written.load(Ordering::Relaxed)
    }

    /// True once the writer has ended (the socket failed or was closed).
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Waits until fewer than `limit` bytes are queued, or the writer ended.
    pub(crate) async fn wait_for_room(&self, limit: usize) {
        loop {
            let progress = self.queue.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.queued() < limit || self.is_closed() {
                return;
            }
            progress.await;
        }
    }

    /// Asks the writer to write what is queued, then shut the write side down,
    /// even while other clones of this outbox are alive.
    pub(crate) fn close(&self) {
        self.queue.close.cancel();
    }

    pub(crate) fn downgrade(&self) -> WeakOutbox {
        WeakOutbox {
            tx: self.tx.downgrade(),
            queue: self.queue.clone(),
        }
    }
}

impl WeakOutbox {
    pub(crate) fn upgrade(&self) -> Option<Outbox> {
        Some(Outbox {
            tx: self.tx.upgrade()?,
            queue: self.queue.clone(),
        })
    }
}

/// Spawns the writer over `io`. It ends, shutting down the write side, when
/// every [`Outbox`] is dropped or one is [closed](Outbox::close), or with the
/// first I/O error.
pub(crate) fn spawn_writer<W>(io: W) -> (Outbox, JoinHandle<std::io::Result<()>>)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = Arc::new(Queue::default());
    let task = tokio::spawn(run(io, rx, queue.clone()));
    (Outbox { tx, queue }, task)
}

/// Wakes [`Outbox::wait_for_room`] when the writer ends, however it ends
/// (error, or its task aborted): the queue will not drain any more.
struct Ended<'a> {
    rx: &'a mut mpsc::UnboundedReceiver<Bytes>,
    queue: &'a Queue,
}

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.rx.close();
        self.queue.progress.notify_waiters();
    }
}

async fn run<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    queue: Arc<Queue>,
) -> std::io::Result<()> {
    let ended = Ended {
        rx: &mut rx,
        queue: &queue,
    };
    let mut frames = Vec::with_capacity(BATCH);
    let mut batch = BytesMut::new();
    let mut closing = false;
    loop {
        let n = tokio::select! {
            biased;
            n = ended.rx.recv_many(&mut frames, BATCH) => n,
            _ = queue.close.cancelled(), if !closing => {
                // Take nothing new; what is already queued is still written.
                closing = true;
                ended.rx.close();
                continue;
            }
        };
        if n == 0 {
            break;
        }
        for frame in frames.drain(..) {
            if frame.len() >= DIRECT_WRITE {
                if !batch.is_empty() {
                    write_counted(&mut io, &batch, &queue).await?;
                    batch.clear();
                }
                write_counted(&mut io, &frame, &queue).await?;
            } else {
                batch.extend_from_slice(&frame);
            }
        }
        if !batch.is_empty() {
            write_counted(&mut io, &batch, &queue).await?;
            batch.clear();
        }
        io.flush().await?;
        if batch.capacity() > KEEP_CAPACITY {
            batch = BytesMut::new();
        }
    }
    drop(ended);
    io.shutdown().await
}

/// `write_all`, accounting for every chunk the socket takes, so a large frame
/// going out slowly still shows progress.
async fn write_counted<W: AsyncWrite + Unpin>(
    io: &mut W,
    mut buf: &[u8],
    queue: &Queue,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = io.write(buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        queue.bytes.fetch_sub(n, Ordering::Relaxed);
        queue.written.fetch_add(n as u64, Ordering::Relaxed);
        queue.progress.notify_waiters();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
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

    #[tokio::test]
    async fn counts_queued_bytes_until_the_peer_reads_them() {
        // A pipe that holds 16 bytes: the rest stays queued until read.
        let (a, mut b) = tokio::io::duplex(16);
        let (tx, _task) = spawn_writer(a);
        for _ in 0..10 {
            tx.send(Bytes::from_static(&[7; 10])).unwrap();
        }
        tokio::task::yield_now().await;
        assert!(tx.queued() > 16, "{} bytes queued", tx.queued());
        let room = tokio::spawn({
            let tx = tx.clone();
            async move { tx.wait_for_room(1).await }
        });
        let mut out = vec![0; 100];
        b.read_exact(&mut out).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .expect("no room after the peer read everything")
            .unwrap();
        assert_eq!(tx.queued(), 0);
    }

    #[tokio::test]
    async fn close_flushes_what_is_queued_even_with_clones_alive() {
        let (a, mut b) = tokio::io::duplex(1 << 10);
        let (tx, task) = spawn_writer(a);
        let clone = tx.clone();
        tx.send(Bytes::from_static(b"last words")).unwrap();
        tx.close();
        task.await.unwrap().unwrap();
        assert!(clone.send(Bytes::from_static(b"too late")).is_err());
        assert!(clone.is_closed());
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"last words");
    }

    #[tokio::test]
    async fn waiting_for_room_ends_when_the_writer_fails() {
        let (a, b) = tokio::io::duplex(4);
        let (tx, task) = spawn_writer(a);
        tx.send(Bytes::from_static(&[1; 64])).unwrap();
        drop(b); // the peer is gone: the write fails
        assert!(task.await.unwrap().is_err());
        tokio::time::timeout(Duration::from_secs(5), tx.wait_for_room(1))
            .await
            .expect("waited for room on a dead connection");
        assert!(tx.is_closed());
    }
}
