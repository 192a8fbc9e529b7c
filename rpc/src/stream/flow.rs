//! One streaming call's flow control, as one side sees it: the items the
//! peer sent that the application has not taken (the inbox), and the credit
//! left for the items this side sends. Both sides of a connection use the
//! same type; the connection's reader (or the server's driver) feeds it the
//! peer's StreamItem, StreamEnd and StreamCredit frames.
//!
//! **Credit.** Each side grants the other a window of bytes per stream
//! (its Hello says how many). A sender may send an item while the bytes it
//! sent and has not had credited back are fewer than the window, so an item
//! larger than the whole window still goes out (alone) and big items cannot
//! deadlock; what is sent and not yet consumed never exceeds the window plus
//! one item. The receiver credits bytes back as the application *takes*
//! items, not as they arrive, so a slow consumer holds its producer back. A
//! peer that sends past its credit breaks the protocol: the connection
//! closes, so no peer can make this side buffer more than the window.
//!
//! Lock order: a flow's lock is never taken while the client connection's
//! state lock is held (sending a frame takes that lock), and no other lock
//! is taken under a flow's lock except the writer's, to queue a frame.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::protocol::{FrameBuf, ItemRun, Kind, Payload};
use crate::transport::{BACKLOG_LIMIT, Lane, Outbox, Outgoing, WeakOutbox};

/// Bytes queued for the peer and not yet written past which a stream's
/// producer waits, whatever credit the peer gave: a peer may grant a huge
/// window or credit it never consumes, and only the writer's backlog then
/// shows that it reads nothing. Half the backlog at which a server stops
/// reading a connection, so that streams alone do not stop it from reading
/// the peer's Cancels, credits and requests.
pub(crate) const STREAM_BACKLOG: usize = BACKLOG_LIMIT / 2;

/// Where a flow's frames go: its connection's writer.
pub(crate) trait Wire: Send + Sync + 'static {
    /// Queues a frame for the peer; false once the connection's writer ended.
    fn send(&self, frame: Outgoing) -> bool;
    /// Bytes queued for the peer and not yet written; 0 once the writer
    /// has ended (nothing will drain them, and sending fails).
    fn queued(&self) -> usize;
    /// Waits until fewer than `limit` bytes are queued, or the writer ended.
    fn room(&self, limit: usize) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The server's: an outbox of the connection's (kept alive by its calls).
impl<L: Lane> Wire for Outbox<L> {
    fn send(&self, frame: Outgoing) -> bool {
        Outbox::send(self, frame)
    }

    fn queued(&self) -> usize {
        if self.is_closed() {
            0
        } else {
            Outbox::queued(self)
        }
    }

    fn room(&self, limit: usize) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.wait_for_room(limit))
    }
}

/// The client's: its connection's outbox, not kept alive by a stream.
impl<L: Lane> Wire for WeakOutbox<L> {
    fn send(&self, frame: Outgoing) -> bool {
        self.upgrade().is_some_and(|out| out.send(frame))
    }

    fn queued(&self) -> usize {
        if self.is_closed() {
            0
        } else {
            WeakOutbox::queued(self)
        }
    }

    fn room(&self, limit: usize) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.wait_for_room(limit))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum End {
    /// The peer's StreamEnd: its payload (a status byte, then what that
    /// status carries; status 0 is a normal end).
    Peer(Payload),
    /// The connection was lost, for this reason.
    Lost(Arc<str>),
    /// This side gave up on the call (its deadline passed).
    DeadlineExceeded,
}

/// The peer sent more than the window allows.
#[derive(Debug)]
pub(crate) struct Overrun {
    pub(crate) window: usize,
}

pub(crate) struct Flow {
    id: u64,
    state: Mutex<State>,
    wire: Box<dyn Wire>,
    /// The peer's stream has ended (or failed): read without the lock, by
    /// code that holds the connection's state lock (see the lock order).
    ended: AtomicBool,
}

struct State {
    /// Items received, oldest first.
    inbox: VecDeque<ItemRun>,
    /// Bytes received and not yet credited back.
    received: usize,
    recv_window: usize,
    /// How the peer's stream ended; items still in the inbox come first.
    end: Option<End>,
    /// Nothing reads the inbox any more: items are dropped as they come.
    discard: bool,
    consumer: Option<Waker>,
    /// Bytes sent and not yet credited back.
    sent: usize,
    send_window: usize,
    /// The peer takes no more items from this side (the call is over).
    send_closed: bool,
    producer: Option<Waker>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Flow {
    /// The flow of call `id`, receiving under `recv_window` (ours) and
    /// sending under `send_window` (the peer's), queuing frames on `wire`.
    pub(crate) fn new(id: u64, recv_window: usize, send_window: usize, wire: impl Wire) -> Self {
        Flow {
            id,
            state: Mutex::new(State {
                inbox: VecDeque::new(),
                received: 0,
                recv_window,
                end: None,
                discard: false,
                consumer: None,
                sent: 0,
                send_window,
                send_closed: false,
                producer: None,
            }),
            wire: Box::new(wire),
            ended: AtomicBool::new(false),
        }
    }

    /// This flow as one of a call that receives no stream: whatever items
    /// the peer sends are dropped as they come, never counted or kept.
    pub(crate) fn not_receiving(mut self) -> Self {
        self.state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .discard = true;
        self
    }

    /// Whether the stream this side receives has ended (cleanly or not).
    pub(crate) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The state, also after a panic elsewhere while it was held (every
    /// change is complete before anything that can panic).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- receiving: the peer's frames, and the application taking items ----

    /// StreamItems from the peer, in order. An error if the peer sent past
    /// its credit (an item may be sent while the bytes before it are under
    /// the window); items after the end are dropped.
    pub(crate) fn push(&self, items: ItemRun) -> Result<(), Overrun> {
        let mut st = self.lock();
        if st.end.is_some() || st.discard {
            return Ok(());
        }
        if st.received + items.before_last() >= st.recv_window {
            return Err(Overrun {
                window: st.recv_window,
            });
        }
        st.received += items.cost();
        st.inbox.push_back(items);
        let consumer = st.consumer.take();
        drop(st);
        wake(consumer);
        Ok(())
    }

    /// The peer's stream ended (the first end stands).
    pub(crate) fn end(&self, end: End) {
        let mut st = self.lock();
        if st.end.is_none() {
            st.end = Some(end);
            self.ended.store(true, Ordering::Release);
        }
        let consumer = st.consumer.take();
        drop(st);
        wake(consumer);
    }

    /// Moves every item received into `into`; the end once there are no
    /// items left; or registers `cx` to be woken when either comes.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        into: &mut VecDeque<ItemRun>,
    ) -> Poll<Option<End>> {
        let mut st = self.lock();
        if !st.inbox.is_empty() {
            if into.is_empty() {
                std::mem::swap(into, &mut st.inbox);
            } else {
                into.append(&mut st.inbox);
            }
            return Poll::Ready(None);
        }
        if let Some(end) = &st.end {
            return Poll::Ready(Some(end.clone()));
        }
        match &mut st.consumer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Credits `bytes` the application has taken back to the peer.
    pub(crate) fn grant(&self, bytes: usize) {
        let mut st = self.lock();
        if st.end.is_some() {
            return;
        }
        st.received = st.received.saturating_sub(bytes);
        drop(st);
        let mut f = FrameBuf::new(Kind::StreamCredit, self.id, 4);
        f.extend_from_slice(&u32::try_from(bytes).unwrap_or(u32::MAX).to_be_bytes());
        self.wire.send(f.into());
    }

    /// The window of bytes granted per grant: credit goes back once this
    /// much was taken, not per item.
    pub(crate) fn grant_threshold(&self) -> usize {
        (self.lock().recv_window / 4).max(1)
    }

    // ---- sending: our items, and the peer's credit ----

    /// A StreamCredit's payload from the peer: the credit, or why it is
    /// not one (the connection is then broken).
    pub(crate) fn credit_frame(&self, payload: &[u8]) -> Result<(), String> {
        let bytes = <[u8; 4]>::try_from(payload)
            .map_err(|_| format!("a StreamCredit of {} bytes (expected 4)", payload.len()))?;
        self.credit(u32::from_be_bytes(bytes) as usize);
        Ok(())
    }

    /// A StreamCredit from the peer.
    pub(crate) fn credit(&self, bytes: usize) {
        let mut st = self.lock();
        st.sent = st.sent.saturating_sub(bytes);
        let producer = st.producer.take();
        drop(st);
        wake(producer);
    }

    /// Ready once an item may be sent (`Ok`), or the peer takes no more
    /// (`Err`); registers `cx` either way, so that [`close`](Self::close)
    /// wakes a producer that waits for its own next item.
    pub(crate) fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<usize, Closed>> {
        let mut st = self.lock();
        if st.send_closed {
            return Poll::Ready(Err(Closed));
        }
        match &mut st.producer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        if st.sent < st.send_window {
            Poll::Ready(Ok(st.send_window - st.sent))
        } else {
            Poll::Pending
        }
    }

    /// Whether the writer holds so much for the peer that the producer is
    /// to wait ([`room`](Self::room)) before its next item, credit or not.
    pub(crate) fn backed_up(&self) -> bool {
        self.wire.queued() >= STREAM_BACKLOG
    }

    /// Waits until the writer has room for more items (see
    /// [`STREAM_BACKLOG`]) or has ended, or until the peer takes no more
    /// (the call ended meanwhile: the producer is to stop, not wait on).
    pub(crate) async fn room(&self) {
        if !self.backed_up() {
            return;
        }
        let mut room = self.wire.room(STREAM_BACKLOG);
        std::future::poll_fn(|cx| {
            if room.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let mut st = self.lock();
            if st.send_closed {
                return Poll::Ready(());
            }
            // `close` wakes it.
            match &mut st.producer {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
    }

    /// Queues `frames`, whole StreamItem frames of this call one after
    /// another (each sent under the credit that
    /// [`poll_send_ready`](Self::poll_send_ready) reported), in one go;
    /// false if the peer takes no more. `cost` is what the window counts
    /// for them: their bytes as the peer holds them, decompressed.
    pub(crate) fn send_items(&self, frames: bytes::Bytes, cost: usize) -> bool {
        let mut st = self.lock();
        if st.send_closed {
            return false;
        }
        st.sent += cost;
        // Queued under the flow's lock, so that nothing follows an end
        // sent by `finish`.
        self.wire.send(frames.into())
    }

    /// Sends this side's StreamEnd (`payload`: a status byte and what it
    /// carries) unless the sending half is closed already, and closes it.
    /// True if this call sent it.
    pub(crate) fn finish(&self, payload: &[u8]) -> bool {
        let mut st = self.lock();
        if std::mem::replace(&mut st.send_closed, true) {
            return false;
        }
        let mut f = FrameBuf::new(Kind::StreamEnd, self.id, payload.len());
        f.extend_from_slice(payload);
        self.wire.send(f.into());
        true
    }

    /// The application dropped the stream it received: what is buffered
    /// goes, and what still arrives is dropped.
    pub(crate) fn stop_receiving(&self) {
        let mut st = self.lock();
        st.discard = true;
        st.inbox = VecDeque::new();
    }

    /// The call is over for this side: no more items go out, and a producer
    /// waiting is woken to stop. Items not yet taken stay readable.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.send_closed = true;
        let producer = st.producer.take();
        drop(st);
        wake(producer);
    }

    /// The call is over and nothing will read what it received: no more
    /// items go out, and items, buffered or still to come, are dropped.
    pub(crate) fn forget(&self) {
        self.close();
        self.stop_receiving();
    }

    /// The connection or the call failed: the consumer sees `end` after the
    /// items it already has, and the producer stops.
    pub(crate) fn fail(&self, end: End) {
        self.close();
        self.end(end);
    }
}

/// The peer takes no more items.
#[derive(Debug)]
pub(crate) struct Closed;

fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

#[cfg(test)]
mod tests;
