//! The writer: one per connection, a task of its own or polled by the
//! connection's read loop (see [`Writer`]). Producers append encoded frames to
//! one shared buffer under a short lock; the writer swaps that buffer out and
//! writes it with one syscall, so concurrent calls share syscalls while a lone
//! call is written at once (it never waits for company). A small frame costs
//! one copy into the buffer and no allocation; a large one is queued as its
//! own block and written from its own memory.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

use crate::protocol::FrameBuf;

/// Frames at least this large are written straight from their own buffer
/// instead of being copied into the batch.
pub(crate) const DIRECT_WRITE: usize = 32 * 1024;
/// A batch buffer that grew past this is given back after use, so one large
/// burst does not pin memory on an idle connection.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Bytes queued for a peer that is not reading them, past which a side stops
/// producing more for it: the server stops reading that connection, and the
/// client stops answering its Pings.
pub(crate) const BACKLOG_LIMIT: usize = 1 << 20;

/// A frame to queue: finished bytes (shared, written without a copy when
/// large) or a frame buffer (copied into the batch when small, and freed).
#[derive(Debug)]
pub(crate) enum Outgoing {
    Bytes(Bytes),
    Buf(FrameBuf),
}

impl From<Bytes> for Outgoing {
    fn from(b: Bytes) -> Self {
        Outgoing::Bytes(b)
    }
}

impl From<FrameBuf> for Outgoing {
    fn from(f: FrameBuf) -> Self {
        Outgoing::Buf(f)
    }
}

/// The sending side of a connection's writer.
///
/// Sending never waits: the queue is unbounded so that no producer (a handler
/// finishing, a reader answering a Ping) can deadlock against a peer that is
/// itself waiting for us to read. Instead the queue counts its bytes, and the
/// one producer that could grow it without end, the server's read loop,
/// stops reading while [`queued`](Self::queued) is high (see
/// [`wait_for_room`](Self::wait_for_room)).
pub(crate) struct Outbox<L: Lane = OwnLane> {
    queue: Arc<Queue<L>>,
}

impl<L: Lane> Outbox<L> {
    /// Queues a frame; false if the writer has ended or the outbox was closed.
    #[inline]
    pub(crate) fn send(&self, frame: impl Into<Outgoing>) -> bool {
        let queued = self.queue_in(&mut self.lock(), frame.into());
        self.woke(queued)
    }

    #[inline]
    fn lock(&self) -> L::Guard<'_> {
        self.queue.pending.lock()
    }

    /// As [`send`](Self::send), into `pending`: the lane's, which the caller
    /// has locked.
    #[inline]
    pub(crate) fn send_locked(&self, pending: &mut Pending, frame: impl Into<Outgoing>) -> bool {
        let queued = self.queue_in(pending, frame.into());
        self.woke(queued)
    }

    /// Queues a copy of a finished frame (its owner keeps it), into
    /// `pending`: the lane's, which the caller has locked; false as
    /// [`send`](Self::send).
    #[inline]
    pub(crate) fn send_slice_locked(&self, pending: &mut Pending, frame: &[u8]) -> bool {
        let queued = self.copy_in(pending, frame);
        self.woke(queued)
    }

    fn queue_in(&self, pending: &mut Pending, frame: Outgoing) -> Pushed {
        let copy = |len: usize| len < DIRECT_WRITE && self.queue.batching;
        let block = match frame {
            Outgoing::Bytes(b) if copy(b.len()) => return self.copy_in(pending, &b),
            Outgoing::Buf(mut f) if copy(f.len()) => return self.copy_in(pending, f.seal()),
            Outgoing::Bytes(b) => b,
            Outgoing::Buf(f) => f.finish(),
        };
        self.push(pending, block.len(), |p| p.push_block(block))
    }

    #[inline]
    fn copy_in(&self, pending: &mut Pending, frame: &[u8]) -> Pushed {
        if !self.queue.batching {
            return self.queue_in(pending, Outgoing::Bytes(Bytes::copy_from_slice(frame)));
        }
        self.push(pending, frame.len(), |p| p.tail.extend_from_slice(frame))
    }

    /// Wakes the writer if the frame went into an empty queue.
    #[inline]
    fn woke(&self, pushed: Pushed) -> bool {
        if let Pushed::IntoEmpty = pushed {
            self.queue.wake.notify_one();
        }
        !matches!(pushed, Pushed::Closed)
    }

    #[inline]
    fn push(&self, pending: &mut Pending, len: usize, add: impl FnOnce(&mut Pending)) -> Pushed {
        // Checked under the lock that `close` and the writer's end take, so
        // nothing is queued after the writer took its last batch.
        if self.queue.closed.load(Ordering::Relaxed) {
            return Pushed::Closed;
        }
        let was_empty = pending.is_empty();
        add(pending);
        let pushed = &self.queue.pushed;
        pushed.store(
            pushed.load(Ordering::Relaxed) + len as u64,
            Ordering::Release,
        );
        if was_empty {
            Pushed::IntoEmpty
        } else {
            Pushed::Behind
        }
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// Bytes written to the socket so far: it stops moving when the peer stops
    /// reading.
    pub(crate) fn written(&self) -> u64 {
        self.queue.written.load(Ordering::Relaxed)
    }

    /// True once the writer has ended (the socket failed or was closed).
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Waits until fewer than `limit` bytes are queued, or the writer ended.
    pub(crate) async fn wait_for_room(&self, limit: usize) {
        self.queue.wait_for_room(limit).await;
    }

    /// Asks the writer to write what is queued, then shut the write side down,
    /// even while other clones of this outbox are alive.
    pub(crate) fn close(&self) {
        let _pending = self.lock();
        self.queue.closed.store(true, Ordering::Relaxed);
        self.queue.wake.notify_one();
    }

    pub(crate) fn downgrade(&self) -> WeakOutbox<L> {
        WeakOutbox {
            queue: self.queue.clone(),
        }
    }
}

impl<L: Lane> Clone for Outbox<L> {
    fn clone(&self) -> Self {
        self.queue.senders.fetch_add(1, Ordering::Relaxed);
        Outbox {
            queue: self.queue.clone(),
        }
    }
}

impl<L: Lane> Drop for Outbox<L> {
    fn drop(&mut self) {
        if self.queue.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.queue.wake.notify_one();
        }
    }
}

impl<L: Lane> std::fmt::Debug for Outbox<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &self.queued())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// What [`Outbox::push`] did.
enum Pushed {
    /// Into an empty queue: the writer needs waking.
    IntoEmpty,
    /// Behind frames the writer will take anyway.
    Behind,
    /// Nothing: the writer has ended or the outbox was closed.
    Closed,
}

/// An [`Outbox`] that does not keep the writer alive.
pub(crate) struct WeakOutbox<L: Lane = OwnLane> {
    queue: Arc<Queue<L>>,
}

impl<L: Lane> WeakOutbox<L> {
    pub(crate) fn upgrade(&self) -> Option<Outbox<L>> {
        // Only from a live count: once the last Outbox is gone the writer is
        // finishing, and no new one may appear.
        let senders = &self.queue.senders;
        let mut n = senders.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return None;
            }
            match senders.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    return Some(Outbox {
                        queue: self.queue.clone(),
                    });
                }
                Err(now) => n = now,
            }
        }
    }
}

impl<L: Lane> WeakOutbox<L> {
    /// As [`Outbox::queued`].
    pub(crate) fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// As [`Outbox::is_closed`].
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// As [`Outbox::wait_for_room`].
    pub(crate) async fn wait_for_room(&self, limit: usize) {
        self.queue.wait_for_room(limit).await;
    }
}

impl<L: Lane> Clone for WeakOutbox<L> {
    fn clone(&self) -> Self {
        WeakOutbox {
            queue: self.queue.clone(),
        }
    }
}

impl<L: Lane> std::fmt::Debug for WeakOutbox<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakOutbox").finish_non_exhaustive()
    }
}

/// The lock that guards a writer's pending frames: its own ([`OwnLane`]),
/// or one its producers hold anyway when they queue. The client's
/// connection lends the lock of its state, which every call takes to record
/// itself: recording a call and queueing its request is then one lock, not
/// two.
pub(crate) trait Lane: Send + Sync + 'static {
    type Guard<'a>: std::ops::DerefMut<Target = Pending>
    where
        Self: 'a;

    fn lock(&self) -> Self::Guard<'_>;
}

/// A writer's lock of its own.
#[derive(Debug, Default)]
pub(crate) struct OwnLane(Mutex<Pending>);

impl Lane for OwnLane {
    type Guard<'a> = MutexGuard<'a, Pending>;

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding it; recover the data if something did.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Queue<L> {
    /// What waits for the writer, under the lane's lock.
    pending: L,
    /// Wakes the writer: something was queued into an empty queue, the last
    /// Outbox went away, or the queue was closed.
    wake: Notify,
    /// Live [`Outbox`]es; the writer ends when none is left.
    senders: AtomicUsize,
    /// Set once nothing more may be queued: [`Outbox::close`] or the writer ended.
    closed: AtomicBool,
    /// Bytes queued so far. Changed only under the `pending` lock, and
    /// `written` only by the writer: each is a plain load and store, not an
    /// atomic read-modify-write.
    pushed: AtomicU64,
    /// Bytes written to the socket so far.
    written: AtomicU64,
    /// Signalled whenever the writer has written something, and when it ends.
    progress: Notify,
    /// False: every frame is a block of its own, written by its own syscall.
    batching: bool,
}

impl<L> Queue<L> {
    fn queued(&self) -> usize {
        // `written` first: it never passes `pushed`, which only grows.
        let written = self.written.load(Ordering::Acquire);
        let pushed = self.pushed.load(Ordering::Acquire);
        usize::try_from(pushed.saturating_sub(written)).unwrap_or(usize::MAX)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    async fn wait_for_room(&self, limit: usize) {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.queued() < limit || self.is_closed() {
                return;
            }
            progress.await;
        }
    }

    fn new(pending: L, batching: bool) -> Self {
        Queue {
            pending,
            wake: Notify::new(),
            senders: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            pushed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            progress: Notify::new(),
            batching,
        }
    }
}

/// What waits for the writer, in order: `blocks`, then `tail`.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Large frames, and the small ones queued before them.
    blocks: Vec<Bytes>,
    /// Small frames queued after the last block, back to back.
    tail: BytesMut,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.tail.is_empty()
    }

    fn push_block(&mut self, block: Bytes) {
        if !self.tail.is_empty() {
            self.blocks.push(self.tail.split().freeze());
        }
        self.blocks.push(block);
    }
}

/// Starts the writer over `io`. It ends, shutting down the write side, when
/// every [`Outbox`] is dropped or one is [closed](Outbox::close), or with the
/// first I/O error. Without `batching`, each frame gets its own write.
///
/// `inline`: the writer is a future for the connection's read loop to poll
/// (see [`Writer`]), not a task of its own.
pub(crate) fn start_writer<W>(io: W, batching: bool, inline: bool) -> (Outbox, Writer)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    start_writer_on(io, batching, inline, OwnLane::default())
}

/// [`start_writer`], its pending frames guarded by `lane`.
pub(crate) fn start_writer_on<W, L>(
    io: W,
    batching: bool,
    inline: bool,
    lane: L,
) -> (Outbox<L>, Writer)
where
    W: AsyncWrite + Send + Unpin + 'static,
    L: Lane,
{
    let queue = Arc::new(Queue::new(lane, batching));
    let writer = Writer::start(io, queue.clone(), inline);
    (Outbox { queue }, writer)
}

mod task;
#[cfg(test)]
mod tests;

pub(crate) use task::Writer;
