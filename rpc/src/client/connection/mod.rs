//! One multiplexed connection to a server: a leaf. It knows nothing of the
//! channel that uses it; a call queues its request here and takes its
//! outcome from here, and the call (`client/call.rs`) decides what the
//! outcome means.
//!
//! - `state.rs`: the calls in flight and their outcomes, under one lock;
//! - `admission.rs`: the in-flight cap and the line of callers beyond it;
//! - `deadlines.rs`: one timer for every call's deadline;
//! - `reader.rs`: the task that reads Responses and hands them over, answers
//!   Pings, keeps the connection alive and fires the deadline timer;
//! - `slots.rs`: the slab the calls live in, whose index is the call id.
//!
//! The writer is the transport's (`transport/writer.rs`).

mod admission;
mod deadlines;
mod reader;
mod slots;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Config;
use crate::Error;
use crate::observe::metrics;
use crate::protocol::{
    FLAG_METADATA, FLAG_SCHEMA, FrameBuf, FrameCodec, Hello, Kind, LEN_PREFIX, RequestHead,
    features,
};
use crate::transport::{self, DIRECT_WRITE, FrameReader, Link, Outbox, Peer};
use state::{Entry, Outcome, Shared, StateLane, wake};
pub(crate) use state::{Failure, Reply};

pub(crate) struct Connection {
    outbox: Outbox<StateLane>,
    shared: Arc<Shared>,
    /// The largest frame the server accepts (and we would send).
    send_limit: usize,
    /// The stream windows: ours for what we receive, the server's for what
    /// we send.
    recv_window: usize,
    send_window: usize,
    /// What the server's Hello said it accepts (see `protocol::features`).
    peer_features: u32,
    reader: JoinHandle<()>,
    peer: Peer,
}

/// What [`Connection::try_send`] did with a request.
pub(crate) enum Tried {
    /// Queued: the call is in flight.
    Sent(InFlight),
    /// Every slot under the in-flight cap is taken: wait in line
    /// ([`Connection::wait_for_slot`]) and try again.
    Full(Arc<Connection>),
    /// The connection takes no more calls (closed, or the server is
    /// draining it); the request was not sent.
    NotSent,
    /// The call is out of time (it may have waited for a slot).
    Late,
    /// The request is larger than the server accepts.
    TooLarge { size: usize, limit: usize },
    /// The request carries metadata, which the server does not accept (it
    /// runs an older version, and would take the flag for a broken frame).
    NoMetadata,
}

/// Why a caller waiting for a slot got none.
pub(crate) enum NoSlot {
    /// The connection stopped taking calls.
    Closed,
    Deadline,
}

impl Connection {
    /// Runs the handshake over `link` and starts the reader and writer.
    pub(crate) async fn start(link: Link, config: &Config) -> Result<Arc<Self>, Error> {
        let link = metrics::count_bytes(link, metrics::Side::Client);
        let Link {
            read,
            mut write,
            peer,
        } = link;
        let mut reader = FrameReader::new(read, FrameCodec::new(config.max_frame));
        let theirs = transport::handshake(
            &mut reader,
            &mut write,
            false,
            config.handshake_timeout,
            Hello::ours(config.max_frame, config.stream_window)
                .with_features(crate::compression::built_features() | config.format.feature()),
            crate::codec::Formats::BUILT,
        )
        .await?;
        let shared = Arc::new(Shared::new(config.max_in_flight));
        let lane = StateLane(shared.clone());
        let (outbox, writer) =
            transport::start_writer_on(write, config.write_batching, false, lane);
        let read_loop = reader::read_loop(
            reader,
            writer,
            shared.clone(),
            outbox.downgrade(),
            config.keepalive_interval,
            config.keepalive_timeout,
            config.max_metadata,
        );
        // Counted open while its reader runs: the connection's life.
        let counted = metrics::Connection::open(metrics::Side::Client);
        let reader = tokio::spawn(async move {
            read_loop.await;
            drop(counted);
        });
        Ok(Arc::new(Connection {
            outbox,
            shared,
            send_limit: config.max_frame.min(theirs.accepts()),
            recv_window: config.stream_window,
            send_window: theirs.stream_window(),
            peer_features: theirs.features,
            reader,
            peer,
        }))
    }

    /// Queues `request` as a call with `deadline`, telling the server it has
    /// `budget` left, if the connection takes calls and a
    /// slot under the in-flight cap is free (or `granted` one already).
    /// `waker` is woken with the outcome. A streaming call (`stream`: whether
    /// the server answers with a stream) gets its flow.
    pub(crate) fn try_send(
        self: Arc<Self>,
        request: &mut Encoded,
        deadline: Instant,
        budget: Duration,
        granted: bool,
        stream: Option<bool>,
        waker: &Waker,
    ) -> Tried {
        // Before the lock: rare, and a decompression is slow.
        request.for_peer(self.peer_features);
        // Recorded and queued under one lock (see `StateLane`).
        let mut st = self.shared.lock();
        let refuse = |mut st: std::sync::MutexGuard<'_, state::State>, tried: Tried| {
            // A slot granted in line is given back, to the next in line.
            let next = if granted {
                st.admission.release()
            } else {
                None
            };
            drop(st);
            wake(next);
            tried
        };
        if !st.takes_calls() {
            return refuse(st, Tried::NotSent);
        }
        if budget.is_zero() {
            return refuse(st, Tried::Late);
        }
        // Checked on a live connection only: the next one may accept more.
        let size = request.len() - LEN_PREFIX;
        if size > self.send_limit {
            let limit = self.send_limit;
            return refuse(st, Tried::TooLarge { size, limit });
        }
        if request.flags() & FLAG_METADATA != 0 && self.peer_features & features::METADATA == 0 {
            return refuse(st, Tried::NoMetadata);
        }
        if !granted && !st.admission.try_take() {
            drop(st);
            return Tried::Full(self);
        }
        // The call's id names its entry (see `slots.rs`): recorded first,
        // and forgotten again if the request cannot be queued.
        let id = st.calls.insert(Entry {
            deadline,
            outcome: Outcome::Waiting(waker.clone()),
            stream: None,
        });
        let flow = stream.map(|back| {
            // A call the server answers with a value takes no items: any
            // the server sends are dropped.
            let flow = self.flow(id);
            let flow = Arc::new(if back { flow } else { flow.not_receiving() });
            if let Some(entry) = st.calls.get_mut(id) {
                entry.stream = Some((flow.clone(), back));
            }
            flow
        });
        let frame = request.patch(id, budget);
        // A small request is copied into the writer's batch and stays with
        // its call; a large one is shared with the writer, not copied.
        let queued = if frame.len() >= DIRECT_WRITE {
            let frame = std::mem::replace(frame, FrameBuf::new(Kind::Request, 0, 0));
            let bytes = frame.finish();
            *request = Encoded::Shared(bytes.clone());
            self.outbox.send_locked(&mut st.out, bytes)
        } else {
            self.outbox.send_slice_locked(&mut st.out, frame.seal())
        };
        if !queued {
            // The writer has ended: the reader is closing the connection.
            st.calls.remove(id);
            let next = st.admission.release();
            drop(st);
            wake(next);
            return Tried::NotSent;
        }
        let wake_reader = st.note_deadline(deadline);
        drop(st);
        if wake_reader {
            self.shared.timer_moved.notify_one();
        }
        Tried::Sent(InFlight {
            conn: self,
            id,
            done: false,
            flow,
        })
    }

    /// A flow for streaming call `id`, sending through this connection's
    /// writer (without keeping it alive).
    fn flow(&self, id: u64) -> crate::stream::Flow {
        let outbox = self.outbox.downgrade();
        crate::stream::Flow::new(id, self.recv_window, self.send_window, outbox)
    }

    /// What the server's Hello said it accepts (see `protocol::features`).
    pub(crate) fn peer_features(&self) -> u32 {
        self.peer_features
    }

    /// The largest frame the server accepts.
    pub(crate) fn send_limit(&self) -> usize {
        self.send_limit
    }

    /// Waits in line for a slot under the in-flight cap, until `deadline`.
    /// On `Ok` a slot is the caller's: pass `granted` to
    /// [`try_send`](Self::try_send) in the same poll, which uses it or gives
    /// it back.
    pub(crate) async fn wait_for_slot(&self, deadline: Instant) -> Result<(), NoSlot> {
        let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let ticket = self.shared.lock().admission.join(waker);
        // Leaves the line however the wait ends (the caller may give up).
        let _in_line = InLine {
            shared: &self.shared,
            ticket,
        };
        let turn = std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            if !st.takes_calls() {
                return Poll::Ready(Err(NoSlot::Closed));
            }
            let Some(next) = st.admission.poll_turn(ticket, cx.waker()) else {
                return Poll::Pending;
            };
            drop(st);
            wake(next);
            Poll::Ready(Ok(()))
        });
        tokio::time::timeout_at(deadline, turn)
            .await
            .unwrap_or(Err(NoSlot::Deadline))
    }

    /// Whether new calls may use this connection.
    pub(crate) fn takes_calls(&self) -> bool {
        self.shared.lock().takes_calls()
    }

    /// Who is at the other end.
    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer ends by itself once the outbox is dropped; the reader
        // holds no outbox, so it is stopped here.
        self.reader.abort();
    }
}

/// A caller's place in line for a slot; leaving it (given a slot or not)
/// lets the next in line have a look.
struct InLine<'a> {
    shared: &'a Shared,
    ticket: u64,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let next = self.shared.lock().admission.leave(self.ticket);
        wake(next);
    }
}

/// A call whose request is queued, holding its connection: the outcome comes
/// through [`poll`](Self::poll). Dropped before that, it takes its entry
/// with it and tells the server to drop the handler.
pub(crate) struct InFlight {
    conn: Arc<Connection>,
    id: u64,
    /// The outcome was taken (and the entry with it).
    done: bool,
    /// A streaming call's flow.
    flow: Option<Arc<crate::stream::Flow>>,
}

impl InFlight {
    /// The call's id on its connection.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The call's outcome, once the reader has handed it over. A call
    /// whose server answers with a stream stays in flight after an Ok
    /// Response, until this is dropped.
    #[inline]
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Reply> {
        let polled = self.conn.shared.lock().poll_outcome(self.id, cx);
        let taken = ready!(polled);
        self.done = !taken.kept;
        wake(taken.next);
        if let Some(flow) = taken.flow {
            // The call is over: a producer still sending stops, and items
            // the server still sends for it are dropped.
            flow.forget();
        }
        Poll::Ready(taken.reply)
    }

    /// The server ended the call itself (its Response said no stream
    /// follows): the call goes, and no Cancel is sent.
    pub(crate) fn ended_by_server(mut self) {
        self.done = true;
        let (_, next, flow) = self.conn.shared.lock().abandon(self.id);
        wake(next);
        if let Some(flow) = flow {
            flow.forget();
        }
    }

    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    pub(crate) fn flow(&self) -> Option<&Arc<crate::stream::Flow>> {
        self.flow.as_ref()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (running, next, flow) = self.conn.shared.lock().abandon(self.id);
        wake(next);
        if let Some(flow) = flow {
            flow.forget();
        }
        // Still waiting (or its stream still open): the server may be
        // running it. (An expired call was cancelled by the reader already.)
        if running {
            let _ = self
                .conn
                .outbox
                .send(FrameBuf::new(Kind::Cancel, self.id, 0));
        }
    }
}

/// A request's frame, kept by its call until the call ends: to send again
/// elsewhere if a server refuses it. The connection borrows it to queue it,
/// so a small one is never moved (nor allocated: see [`FrameBuf`]).
#[derive(Debug)]
pub(crate) enum Encoded {
    /// The frame itself (its bytes are copied into the writer's batch).
    Buf(FrameBuf),
    /// A large frame's bytes, shared with the writer once queued.
    Shared(Bytes),
}

impl Encoded {
    /// Bytes of the whole frame, length prefix included.
    #[inline]
    fn len(&self) -> usize {
        match self {
            Encoded::Buf(frame) => frame.len(),
            Encoded::Shared(bytes) => bytes.len(),
        }
    }

    /// The frame's bytes so far (its length field not yet written, in a
    /// frame still being built).
    fn bytes(&self) -> &[u8] {
        match self {
            Encoded::Buf(frame) => frame.as_slice(),
            Encoded::Shared(bytes) => bytes,
        }
    }

    /// The frame's flags.
    fn flags(&self) -> u8 {
        self.bytes().get(LEN_PREFIX + 1).copied().unwrap_or(0)
    }

    /// The request as this peer accepts it: without its schema fingerprint
    /// if the peer does not check them (an older server, which would take
    /// the flag for a broken frame: its calls go unchecked, as before), and
    /// decompressed again if it was compressed with an algorithm the peer
    /// did not advertise (encoded for another server, or before this one's
    /// Hello was known). The request is encoded before its connection is
    /// known, so both are undone here, once the peer is; neither is the
    /// common case.
    fn for_peer(&mut self, peer_features: u32) {
        if peer_features & features::SCHEMA == 0
            && self.flags() & FLAG_SCHEMA != 0
            && let Some(stripped) = crate::protocol::strip_fingerprint(self.bytes())
        {
            *self = Encoded::Buf(stripped);
        }
        let frame = match self {
            Encoded::Buf(frame) => frame.seal(),
            Encoded::Shared(bytes) => &bytes[..],
        };
        if let Some(raw) = crate::protocol::raw_unless_accepted(frame, peer_features) {
            *self = Encoded::Buf(raw);
        }
    }

    /// Sets the call id and budget, and returns the frame to queue.
    fn patch(&mut self, id: u64, budget: Duration) -> &mut FrameBuf {
        if let Encoded::Shared(bytes) = self {
            // A large request sent again (refused elsewhere): a copy if the
            // writer still holds the bytes.
            *self = Encoded::Buf(FrameBuf::from_bytes(std::mem::take(bytes)));
        }
        let Encoded::Buf(frame) = self else {
            unreachable!("made a frame above")
        };
        RequestHead::patch(frame, id, budget);
        frame
    }
}
