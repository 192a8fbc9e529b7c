//! The writer's side: the future that takes what producers queued and
//! writes it, as a task of its own or polled by the connection's read loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{KEEP_CAPACITY, Lane, Pending, Queue};

/// A connection's writer, to be polled (or awaited) for how it ended.
///
/// Spawned, it is a task of its own, woken when frames are queued, and it
/// runs after the tasks already waiting to run. Inline, it is a future that
/// the connection's read loop polls every time round its loop, so the replies
/// a batch of requests produced go out as soon as the batch is done, before
/// the loop reads on. On a current-thread runtime that matters: a server
/// whose several connections became readable at once would otherwise handle
/// all of them before any writer ran, and its client would get every reply at
/// once, after waiting for all of them: the two ends would take turns
/// instead of working at the same time.
/// On a multi-thread runtime the writer stays a task of its own, free to run
/// on another worker in parallel with the reading.
#[derive(Debug)]
pub(crate) struct Writer {
    state: WriterState,
}

impl Writer {
    /// Starts writing what `queue` gathers to `io`: a task of its own, or
    /// (`inline`) a future for the connection's read loop to poll.
    pub(super) fn start<W, L>(io: W, queue: Arc<Queue<L>>, inline: bool) -> Writer
    where
        W: AsyncWrite + Send + Unpin + 'static,
        L: Lane,
    {
        let run = run(io, queue);
        let state = if inline {
            WriterState::Inline(Box::pin(run))
        } else {
            WriterState::Task(tokio::spawn(run))
        };
        Writer { state }
    }

    /// Whether the read loop must poll the writer for it to write.
    pub(crate) fn is_inline(&self) -> bool {
        matches!(self.state, WriterState::Inline(_))
    }

    /// Stops the writer where it is: what is queued is not written.
    pub(crate) fn abort(&mut self) {
        if let WriterState::Task(task) = &self.state {
            task.abort();
        }
        self.state = WriterState::Done;
    }
}

impl Future for Writer {
    /// An error if writing failed or the task was aborted; polled again
    /// after it ended, `Ok`.
    type Output = std::io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ended = match &mut self.state {
            WriterState::Inline(run) => ready!(run.as_mut().poll(cx)),
            WriterState::Task(task) => ready!(Pin::new(task).poll(cx))
                .unwrap_or_else(|e| Err(std::io::Error::other(format!("the writer task: {e}")))),
            WriterState::Done => Ok(()),
        };
        self.state = WriterState::Done;
        Poll::Ready(ended)
    }
}

enum WriterState {
    Inline(Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>),
    Task(JoinHandle<std::io::Result<()>>),
    /// It ended, and how was reported.
    Done,
}

impl std::fmt::Debug for WriterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriterState::Inline(_) => "Inline",
            WriterState::Task(_) => "Task",
            WriterState::Done => "Done",
        })
    }
}

/// Closes the queue when the writer ends, however it ends (error, or its
/// task aborted), and wakes [`Outbox::wait_for_room`]: the queue will not
/// drain any more.
struct Ended<'a, L: Lane>(&'a Queue<L>);

impl<L: Lane> Drop for Ended<'_, L> {
    fn drop(&mut self) {
        let mut pending = self.0.pending.lock();
        self.0.closed.store(true, Ordering::Relaxed);
        *pending = Pending::default();
        drop(pending);
        self.0.progress.notify_waiters();
    }
}

pub(super) async fn run<W: AsyncWrite + Unpin, L: Lane>(
    mut io: W,
    queue: Arc<Queue<L>>,
) -> std::io::Result<()> {
    let _ended = Ended(&queue);
    let mut batch = Pending::default();
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        != tokio::runtime::RuntimeFlavor::CurrentThread;
    loop {
        let finished = {
            let mut pending = queue.pending.lock();
            std::mem::swap(&mut *pending, &mut batch);
            // With nothing taken, is anything still to come?
            batch.is_empty()
                && (queue.closed.load(Ordering::Relaxed)
                    || queue.senders.load(Ordering::Acquire) == 0)
        };
        if finished {
            break;
        }
        if batch.is_empty() {
            queue.wake.notified().await;
            // On a multi-thread runtime the task that woke us hands over to
            // us at once (tokio's LIFO slot), so without this every frame
            // would go out in a write of its own. Yielding once lets the
            // other ready tasks (more callers, more handlers) queue theirs
            // first; a lone frame waits one turn of the scheduler. A
            // current-thread runtime runs ready tasks in order, so the batch
            // forms without it.
            if multi_thread {
                tokio::task::yield_now().await;
            }
            continue;
        }
        for block in batch.blocks.drain(..) {
            write_counted(&mut io, &block, &queue).await?;
        }
        if !batch.tail.is_empty() {
            write_counted(&mut io, &batch.tail, &queue).await?;
            batch.tail.clear();
        }
        io.flush().await?;
        if batch.tail.capacity() > KEEP_CAPACITY {
            batch.tail = BytesMut::new();
        }
    }
    io.shutdown().await
}

/// `write_all`, accounting for every chunk the socket takes, so a large frame
/// going out slowly still shows progress.
async fn write_counted<W: AsyncWrite + Unpin, L>(
    io: &mut W,
    mut buf: &[u8],
    queue: &Queue<L>,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = io.write(buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        let written = &queue.written;
        written.store(
            written.load(Ordering::Relaxed) + n as u64,
            Ordering::Release,
        );
        queue.progress.notify_waiters();
    }
    Ok(())
}
