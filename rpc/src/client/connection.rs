//! One multiplexed client connection: a writer task, a reader task, and the
//! map from call id to the caller waiting for that id's response.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Config;
use super::reader;
use super::slots::Slots;
use crate::Error;
use crate::protocol::{FrameBuf, FrameCodec, GoAwayReason, Kind, LEN_PREFIX, Payload, RequestHead};
use crate::transport::{self, DIRECT_WRITE, FrameReader, Lane, Outbox, Pending as Outgoing};

/// What a waiting caller receives: the Response payload, or why it never came.
pub(super) type Reply = Result<Payload, Failure>;

/// Why a call got no Response.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// The connection died, for this reason.
    Closed(Arc<str>),
    /// Its deadline passed (the reader's timer found it).
    Deadline,
}

/// A call in flight, from when its request is queued until its caller takes
/// the outcome. No channel per call: the outcome is handed over in this
/// entry, under the state lock that the reader takes per Response anyway.
pub(super) struct Waiting {
    pub(super) deadline: Deadline,
    pub(super) slot: Slot,
}

/// When a call's deadline is to be.
#[derive(Debug, Clone, Copy)]
pub(super) enum When {
    /// At this instant.
    At(Instant),
    /// This long after the start of the batch the writer takes the call's
    /// request in (see [`State::stamps`]).
    After(Duration),
}

/// A call's deadline, as recorded.
#[derive(Debug, Clone, Copy)]
pub(super) enum Deadline {
    At(Instant),
    /// `timeout` after the stamp that covers call number `seq` (see
    /// [`State::stamps`]); none yet while no stamp does.
    After {
        seq: u64,
        timeout: Duration,
    },
}

/// The most stamps kept: the oldest is folded into the calls it covers
/// (each gets a deadline of its own) when one more is needed, so a scan of
/// what is pending every this many batches.
const MAX_STAMPS: usize = 64;

/// When `d` is, given `stamps` (see [`State::stamps`]).
fn resolve(stamps: &VecDeque<(u64, Instant)>, d: &Deadline) -> Option<Instant> {
    match *d {
        Deadline::At(at) => Some(at),
        Deadline::After { seq, timeout } => {
            let i = stamps.partition_point(|&(upto, _)| upto <= seq);
            let &(_, at) = stamps.get(i)?;
            Some(crate::context::deadline_after(at, timeout))
        }
    }
}

pub(super) enum Slot {
    /// No outcome yet: wake the caller when it comes.
    Waiting(Waker),
    /// The outcome, for the caller to take (and remove the entry).
    Done(Reply),
}

impl Waiting {
    /// Puts the outcome in place of the caller's waker and returns the waker,
    /// to wake once the lock is released; nothing if an outcome is already
    /// there (the first one stands).
    fn settle(&mut self, reply: Reply) -> Option<Waker> {
        match std::mem::replace(&mut self.slot, Slot::Done(reply)) {
            Slot::Waiting(waker) => Some(waker),
            first @ Slot::Done(_) => {
                self.slot = first;
                None
            }
        }
    }
}

impl State {
    /// Hands call `id` its outcome (see [`Waiting::settle`]); nothing if the
    /// call is gone (its caller gave up).
    pub(super) fn complete(&mut self, id: u64, reply: Reply) -> Option<Waker> {
        self.pending.get_mut(id)?.settle(reply)
    }

    /// Fails every call still waiting for an outcome; returns their callers'
    /// wakers.
    pub(super) fn fail_all(&mut self, failure: impl Fn() -> Failure) -> Vec<Waker> {
        self.pending
            .iter_mut()
            .filter_map(|(_, w)| w.settle(Err(failure())))
            .collect()
    }

    /// Gives back a slot under the in-flight cap; returns the waker of the
    /// caller first in line, to wake once the lock is released.
    pub(super) fn release(&mut self) -> Option<Waker> {
        self.in_flight -= 1;
        self.next_in_line()
    }

    /// The caller first in line, if a slot is free for it.
    fn next_in_line(&self) -> Option<Waker> {
        if self.in_flight < self.max_in_flight {
            self.queue.front().map(|(_, waker)| waker.clone())
        } else {
            None
        }
    }

    /// Every caller in line, to wake when the connection stops taking calls:
    /// each sees that and goes elsewhere.
    pub(super) fn everyone_in_line(&self) -> Vec<Waker> {
        self.queue.iter().map(|(_, waker)| waker.clone()).collect()
    }

    /// The writer took every request queued so far, of a batch that started
    /// at `now`: the calls waiting for a stamp get this one. True if that
    /// moved the timer earlier (the reader must re-arm it).
    pub(super) fn stamp(&mut self, now: Instant) -> bool {
        let shortest = std::mem::take(&mut self.unstamped_shortest);
        if shortest.is_zero() {
            return false;
        }
        if self.stamps.len() >= MAX_STAMPS {
            self.fold_oldest_stamp();
        }
        self.stamps.push_back((self.seq, now));
        let at = crate::context::deadline_after(now, shortest);
        if self.timer.is_none_or(|t| at < t) {
            self.timer = Some(at);
            return true;
        }
        false
    }

    /// Gives the calls the oldest stamp covers deadlines of their own, and
    /// forgets it.
    fn fold_oldest_stamp(&mut self) {
        let Some((upto, at)) = self.stamps.pop_front() else {
            return;
        };
        for (_, w) in self.pending.iter_mut() {
            if let Deadline::After { seq, timeout } = w.deadline
                && seq < upto
            {
                w.deadline = Deadline::At(crate::context::deadline_after(at, timeout));
            }
        }
    }

    /// When `d` is; `None` while it waits for a stamp.
    pub(super) fn deadline_of(&self, d: &Deadline) -> Option<Instant> {
        resolve(&self.stamps, d)
    }

    /// Fails the calls whose deadline is `now` or before; returns their ids
    /// and callers' wakers, and points the timer at the earliest deadline
    /// left.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<(u64, Waker)> {
        let State {
            pending, stamps, ..
        } = self;
        let mut expired = Vec::new();
        let mut earliest: Option<Instant> = None;
        for (id, w) in pending.iter_mut() {
            if !matches!(w.slot, Slot::Waiting(_)) {
                continue;
            }
            let Some(at) = resolve(stamps, &w.deadline) else {
                continue;
            };
            if at <= now {
                if let Some(caller) = w.settle(Err(Failure::Deadline)) {
                    expired.push((id, caller));
                }
            } else if earliest.is_none_or(|e| at < e) {
                earliest = Some(at);
            }
        }
        self.timer = earliest;
        expired
    }

    /// Calls still waiting for an outcome.
    pub(super) fn waiting(&self) -> impl Iterator<Item = (u64, &Waiting)> {
        self.pending
            .iter()
            .filter(|(_, w)| matches!(w.slot, Slot::Waiting(_)))
    }
}

pub(super) struct Connection {
    outbox: Outbox<StateLane>,
    shared: Arc<Shared>,
    /// The largest frame the server accepts (and we would send).
    send_limit: usize,
    reader: JoinHandle<()>,
    peer: SocketAddr,
    /// The channel this connection serves, set when it becomes current: a
    /// call that knew its connection holds only that, not the channel too
    /// (one reference count less to take and give back per call), and finds
    /// the channel here if it must go elsewhere. Weak: the channel holds the
    /// connection.
    channel: std::sync::OnceLock<Weak<super::Inner>>,
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Wakes the reader to re-arm its deadline timer earlier.
    pub(super) timer_moved: Notify,
}

impl Shared {
    /// Takes call `id`'s outcome if it came, or keeps `cx`'s waker to be woken
    /// when it does. If the outcome is a refusal (the server is shutting
    /// down: the call goes elsewhere, with the deadline it has), `refused`
    /// gets the call's deadline.
    #[inline]
    fn poll_outcome(
        &self,
        id: u64,
        cx: &mut std::task::Context<'_>,
        refused: &mut Option<Instant>,
    ) -> Poll<Reply> {
        let mut st = self.state.lock().unwrap();
        let Some(waiting) = st.pending.get_mut(id) else {
            // Entries leave only through their caller; never expected.
            return Poll::Ready(Err(Failure::Closed("the call's entry was lost".into())));
        };
        match &mut waiting.slot {
            Slot::Waiting(waker) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                Poll::Pending
            }
            Slot::Done(_) => {
                let Some(Waiting {
                    deadline,
                    slot: Slot::Done(reply),
                }) = st.pending.remove(id)
                else {
                    unreachable!("just seen done")
                };
                if let Ok(payload) = &reply
                    && super::is_shutting_down(payload)
                {
                    *refused = st.deadline_of(&deadline);
                }
                let next = st.release();
                drop(st);
                if let Some(next) = next {
                    next.wake();
                }
                Poll::Ready(reply)
            }
        }
    }
}

/// Deadlines are kept by one timer per connection, in the reader, not one
/// per call: a call's deadline is stored with it, and the timer is armed for
/// the earliest deadline seen since it last fired. Most calls end long
/// before their deadline, so the timer mostly fires at a deadline already
/// gone, scans what is pending, and re-arms for the earliest one left: a
/// scan per timeout period instead of a timer entry per call.
#[derive(Default)]
pub(super) struct State {
    pub(super) pending: Slots<Waiting>,
    /// When the reader's timer fires: no later than any stamped deadline.
    pub(super) timer: Option<Instant>,
    /// The batches the writer took, oldest first: `(n, at)` says that the
    /// first `n` calls with a deadline counted from their batch's start
    /// ([`When::After`]) were queued by then, and that this batch started at
    /// `at`. A call's deadline counts from the start of the first batch past
    /// its number. Only the first call of a batch reads the clock (at ~20 ns
    /// a read, one per call was several percent of the client's time per
    /// small call; see [`State::batch_start`]), so a deadline counts from a
    /// moment no later than the call's first poll, and earlier by no more
    /// than the batch took to form (well under the timer driver's
    /// millisecond). A writer busy writing (perhaps stuck: the server is not
    /// reading) may not be back soon to take the batch, so calls made
    /// meanwhile get deadlines of their own (see [`State::writing`]).
    pub(super) stamps: VecDeque<(u64, Instant)>,
    /// When the first call waiting for a stamp started (the clock read by
    /// the first call of a batch); the writer stamps the batch with it.
    pub(super) batch_start: Option<Instant>,
    /// Calls queued so far with a deadline counted from their stamp.
    pub(super) seq: u64,
    /// The shortest timeout of the calls waiting for a stamp, zero if none
    /// (a call out of time is never queued): their earliest deadline once
    /// stamped, for the timer.
    pub(super) unstamped_shortest: Duration,
    /// The writer took requests and has not come back for more yet.
    pub(super) writing: bool,
    /// Set once the connection is dead; no call may be added after.
    pub(super) closed: Option<Arc<str>>,
    /// Set by GoAway: in-flight calls finish, new calls use a new connection.
    pub(super) draining: bool,
    /// Why the server sent GoAway, if it did.
    pub(super) goaway: Option<GoAwayReason>,
    /// Slots taken under the in-flight cap: one per entry in `pending`, and
    /// one per caller given a slot that has not queued its request yet.
    pub(super) in_flight: usize,
    pub(super) max_in_flight: usize,
    /// Callers waiting for a slot, first come, first served, by ticket.
    pub(super) queue: VecDeque<(u64, Waker)>,
    pub(super) next_ticket: u64,
    /// The frames waiting for the writer: under this lock, so a call queues
    /// its request under the one lock it takes to record itself.
    out: Outgoing,
}

/// The writer's lane: the connection's state lock (see [`State::out`]).
pub(super) struct StateLane(Arc<Shared>);

impl Lane for StateLane {
    type Guard<'a> = OutGuard<'a>;

    fn lock(&self) -> OutGuard<'_> {
        OutGuard(self.0.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The writer takes the requests queued: it stamps their calls (see
    /// [`State::stamps`]).
    fn took(&self, guard: &mut OutGuard<'_>, any: bool) {
        let st = &mut *guard.0;
        st.writing = any;
        if !any {
            return;
        }
        if let Some(start) = st.batch_start.take()
            && st.stamp(start)
        {
            // The first deadline since the timer last fired, or an earlier one.
            self.0.timer_moved.notify_one();
        }
    }
}

/// The state, locked for the writer's frames.
pub(super) struct OutGuard<'a>(MutexGuard<'a, State>);

impl std::ops::Deref for OutGuard<'_> {
    type Target = Outgoing;

    fn deref(&self) -> &Outgoing {
        &self.0.out
    }
}

impl std::ops::DerefMut for OutGuard<'_> {
    fn deref_mut(&mut self) -> &mut Outgoing {
        &mut self.0.out
    }
}

/// Why a caller waiting for a slot under the in-flight cap got none.
enum NoSlot {
    /// The connection stopped taking calls.
    Closed,
    Deadline,
}

/// What [`Connection::queue_request`] did.
enum Queued {
    /// The request is queued, the call recorded under this id; and whether
    /// the reader must be woken (the call's deadline is earlier than the
    /// timer's).
    Sent(u64, bool),
    /// No slot under the in-flight cap: wait in line.
    Wait,
    /// The connection takes no more calls; the request was not sent.
    NotSent,
    Failed(Error),
}

/// A caller's place in line for a slot; leaving it (given a slot or not)
/// lets the next in line have a look.
struct InLine<'a> {
    shared: &'a Shared,
    ticket: u64,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let next = {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = st.queue.iter().position(|&(t, _)| t == self.ticket) {
                st.queue.remove(i);
            }
            st.next_in_line()
        };
        if let Some(next) = next {
            next.wake();
        }
    }
}

/// Why [`Connection::call`] failed.
pub(super) enum CallError {
    /// The connection is draining or closed and the request was never sent:
    /// here it is back, to send on another connection.
    NotSent(FrameBuf),
    /// A failure to hand to the caller as is.
    Failed(Error),
}

impl Connection {
    /// Records the channel this connection serves (see [`Connection::channel`]).
    pub(super) fn serve(&self, channel: &Arc<super::Inner>) {
        let _ = self.channel.set(Arc::downgrade(channel));
    }

    /// The channel this connection serves, unless every handle to it is gone.
    pub(super) fn channel(&self) -> Option<Arc<super::Inner>> {
        self.channel.get().and_then(Weak::upgrade)
    }

    /// Connects to the first address that accepts, and shakes hands.
    pub(super) async fn connect(addrs: &[SocketAddr], config: &Config) -> Result<Arc<Self>, Error> {
        let mut last = None;
        for &addr in addrs {
            match Self::connect_one(addr, config).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Config("no address to connect to".into())))
    }

    async fn connect_one(addr: SocketAddr, config: &Config) -> Result<Arc<Self>, Error> {
        let stream = transport::connect_tcp(addr, config.connect_timeout).await?;
        let (r, w) = stream.into_split();
        Self::start(r, w, addr, config).await
    }

    /// Runs the handshake over any byte stream and starts the reader and writer.
    pub(super) async fn start<R, W>(
        r: R,
        mut w: W,
        peer: SocketAddr,
        config: &Config,
    ) -> Result<Arc<Self>, Error>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let mut reader = FrameReader::new(r, FrameCodec::new(config.max_frame));
        let theirs = transport::handshake(
            &mut reader,
            &mut w,
            false,
            config.handshake_timeout,
            config.max_frame,
        )
        .await?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                max_in_flight: config.max_in_flight,
                ..State::default()
            }),
            timer_moved: Notify::new(),
        });
        let lane = StateLane(shared.clone());
        let (outbox, writer) = transport::start_writer_on(w, config.write_batching, false, lane);
        let reader = tokio::spawn(reader::read_loop(
            reader,
            writer,
            shared.clone(),
            outbox.downgrade(),
            config.keepalive_interval,
            config.keepalive_timeout,
        ));
        Ok(Arc::new(Connection {
            outbox,
            shared,
            send_limit: config.max_frame.min(theirs.accepts()),
            reader,
            peer,
            channel: std::sync::OnceLock::new(),
        }))
    }

    /// Takes a slot under the in-flight cap (unless `granted` one already),
    /// gives the call its id, queues the request and records the call, all
    /// under the state lock.
    #[allow(clippy::too_many_arguments)]
    fn queue_request(
        &self,
        method: &'static str,
        request: &mut Encoded,
        when: When,
        budget: Duration,
        granted: bool,
        waker: &mut Option<Waker>,
    ) -> Queued {
        // Queued under the lock that GoAway takes to mark the connection
        // draining: a request is either queued before the reader answers the
        // server's drain Ping (so it arrives before the Pong), or not sent
        // here at all.
        let mut st = self.shared.state.lock().unwrap();
        // Leaving without queueing: give back a granted slot, and pass it to
        // whoever is next in line.
        let leave = |mut st: MutexGuard<'_, State>, granted: bool, outcome: Queued| {
            let next = if granted { st.release() } else { None };
            drop(st);
            if let Some(next) = next {
                next.wake();
            }
            outcome
        };
        if st.closed.is_some() || st.draining {
            return leave(st, granted, Queued::NotSent);
        }
        if budget.is_zero() {
            let late = Error::DeadlineExceeded { method, budget };
            return leave(st, granted, Queued::Failed(late));
        }
        // Checked only on a live connection: the next one may accept more.
        let size = request.len() - LEN_PREFIX;
        if size > self.send_limit {
            let too_large = Error::FrameTooLarge {
                method,
                what: "request",
                size,
                limit: self.send_limit,
            };
            return leave(st, granted, Queued::Failed(too_large));
        }
        if !granted {
            // At the cap, or others are waiting (first come, first served).
            if st.in_flight >= st.max_in_flight || !st.queue.is_empty() {
                return Queued::Wait;
            }
            st.in_flight += 1;
        }
        // The call's id names its entry (see [`Slots`]): recorded first, and
        // forgotten again if the request cannot be queued.
        let deadline = match when {
            When::At(at) => Deadline::At(at),
            // The writer is away: it may not be back soon to stamp the call.
            When::After(timeout) if st.writing => {
                Deadline::At(crate::context::deadline_after(Instant::now(), timeout))
            }
            When::After(timeout) => Deadline::After {
                seq: st.seq,
                timeout,
            },
        };
        let id = st.pending.insert(Waiting {
            deadline,
            slot: Slot::Waiting(waker.take().expect("one entry per call")),
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
            st.pending.remove(id);
            return leave(st, true, Queued::NotSent);
        }
        let wake_reader = match deadline {
            Deadline::At(at) => {
                let earlier = st.timer.is_none_or(|t| at < t);
                if earlier {
                    st.timer = Some(at);
                }
                earlier
            }
            // The writer stamps it when it takes the request, with the
            // time the batch's first call read.
            Deadline::After { timeout, .. } => {
                st.seq += 1;
                if st.unstamped_shortest.is_zero() {
                    st.batch_start = Some(Instant::now());
                    st.unstamped_shortest = timeout;
                } else if timeout < st.unstamped_shortest {
                    st.unstamped_shortest = timeout;
                }
                false
            }
        };
        Queued::Sent(id, wake_reader)
    }

    /// Waits in line for a slot under the in-flight cap, until `deadline`.
    /// On `Ok` a slot is ours (counted in `in_flight`): queue the request or
    /// give it back.
    async fn wait_for_slot(&self, deadline: Instant) -> Result<(), NoSlot> {
        let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let ticket = {
            let mut st = self.shared.state.lock().unwrap();
            let ticket = st.next_ticket;
            st.next_ticket += 1;
            st.queue.push_back((ticket, waker));
            ticket
        };
        // Leaves the line however the wait ends (the caller may give up).
        let in_line = InLine {
            shared: &self.shared,
            ticket,
        };
        let turn = std::future::poll_fn(|cx| {
            let mut st = self.shared.state.lock().unwrap();
            if st.closed.is_some() || st.draining {
                return Poll::Ready(Err(NoSlot::Closed));
            }
            let first = st.queue.front().is_some_and(|&(t, _)| t == ticket);
            if first && st.in_flight < st.max_in_flight {
                st.queue.pop_front();
                st.in_flight += 1;
                // A slot may be left for the next in line too.
                let next = st.next_in_line();
                drop(st);
                if let Some(next) = next {
                    next.wake();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some((_, waker)) = st.queue.iter_mut().find(|(t, _)| *t == ticket)
                && !waker.will_wake(cx.waker())
            {
                waker.clone_from(cx.waker());
            }
            Poll::Pending
        });
        let turn = tokio::time::timeout_at(deadline, turn)
            .await
            .unwrap_or(Err(NoSlot::Deadline));
        drop(in_line);
        turn
    }

    /// Whether new calls may use this connection.
    pub(super) fn is_usable(&self) -> bool {
        let st = self.shared.state.lock().unwrap();
        st.closed.is_none() && !st.draining
    }

    /// True once the server said (GoAway) that it is shutting down, and still
    /// after it closed the connection: a call that was not sent here and finds
    /// no other connection was refused, not lost.
    pub(super) fn is_draining_for_shutdown(&self) -> bool {
        let st = self.shared.state.lock().unwrap();
        st.goaway == Some(GoAwayReason::Shutdown)
    }

    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one request and waits for its response payload until `deadline`.
    /// Returns the payload and the request as sent, to send again elsewhere
    /// if the server refused it. Dropping the returned future cancels the
    /// call on the server.
    pub(super) async fn call(
        &self,
        method: &'static str,
        frame: FrameBuf,
        deadline: Instant,
        made_at: Option<Instant>,
    ) -> Result<(Payload, FrameBuf), CallError> {
        let mut request = Encoded::Buf(frame);
        let deadline_exceeded =
            |budget| CallError::Failed(Error::DeadlineExceeded { method, budget });
        // The budget sent is what is left now. When the call was made just
        // before (`made_at`) and need not wait for a slot, that is the budget
        // counted from then, without reading the clock again (each read was
        // a few percent of the client's time per small call).
        let mut now = made_at;
        // This task's waker, stored with the entry: the first poll below then
        // need not take the lock to register it.
        let mut waker = Some(std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await);
        // A slot under the in-flight cap, given to us while we waited in line.
        let mut granted = false;
        let (id, wake_reader, budget) = loop {
            let budget = deadline.saturating_duration_since(now.unwrap_or_else(Instant::now));
            let when = When::At(deadline);
            match self.queue_request(method, &mut request, when, budget, granted, &mut waker) {
                Queued::Sent(id, wake_reader) => break (id, wake_reader, budget),
                Queued::NotSent => return Err(CallError::NotSent(request.into_frame())),
                Queued::Failed(e) => return Err(CallError::Failed(e)),
                Queued::Wait => {
                    // Boxed, to keep the common path's future small; the
                    // budget is counted afresh once a slot is ours.
                    now = None;
                    match Box::pin(self.wait_for_slot(deadline)).await {
                        Ok(()) => {
                            granted = true;
                            // This poll's waker: the call may have moved to
                            // another task while it waited, and the entry's
                            // waker must be the one the poll below skips.
                            waker = Some(
                                std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await,
                            );
                        }
                        Err(NoSlot::Closed) => {
                            return Err(CallError::NotSent(request.into_frame()));
                        }
                        Err(NoSlot::Deadline) => return Err(deadline_exceeded(Duration::ZERO)),
                    }
                }
            }
        };
        if wake_reader {
            self.shared.timer_moved.notify_one();
        }
        let guard = Pending { conn: self, id };
        // No timer here: the reader fails the call when its deadline passes.
        let mut registered = true;
        let reply = std::future::poll_fn(|cx| {
            // The waker stored above is this poll's: nothing to check yet (an
            // outcome that comes meanwhile wakes it, and we look then).
            if std::mem::take(&mut registered) {
                return Poll::Pending;
            }
            self.shared.poll_outcome(id, cx, &mut None)
        })
        .await;
        // The entry is gone: we took the outcome out of it.
        std::mem::forget(guard);
        match reply {
            Ok(payload) => Ok((payload, request.into_frame())),
            Err(Failure::Closed(reason)) => {
                Err(CallError::Failed(Error::disconnected(method, reason)))
            }
            Err(Failure::Deadline) => Err(deadline_exceeded(budget)),
        }
    }
}

/// A request's frame, kept by its call until the call ends: to send again
/// elsewhere if a server refuses it. The connection borrows it to queue it,
/// so a small one is never moved (nor allocated: see [`FrameBuf`]).
#[derive(Debug)]
pub(super) enum Encoded {
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

    /// Sets the call id and budget, and returns the frame to queue.
    fn patch(&mut self, id: u64, budget: Duration) -> &mut FrameBuf {
        if let Encoded::Shared(bytes) = self {
            // Only a large request already queued is shared, and today one
            // is sent again only after `into_frame` (the general path); so
            // this is a fallback, which copies if the writer still holds it.
            *self = Encoded::Buf(FrameBuf::from_bytes(std::mem::take(bytes)));
        }
        let Encoded::Buf(frame) = self else {
            unreachable!("made a frame above")
        };
        RequestHead::patch(frame, id, budget);
        frame
    }

    /// The frame, to send elsewhere.
    pub(super) fn into_frame(self) -> FrameBuf {
        match self {
            Encoded::Buf(frame) => frame,
            Encoded::Shared(bytes) => FrameBuf::from_bytes(bytes),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer ends by itself once the outbox is dropped; the reader holds
        // no outbox, so it is stopped here.
        self.reader.abort();
    }
}

/// Removes a call from the pending map when its future is dropped early
/// (deadline or the caller gave up), and tells the server to drop the handler.
struct Pending<'a> {
    conn: &'a Connection,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.conn.abandon(self.id);
    }
}

/// What [`Connection::try_send`] did with a request.
pub(super) enum Tried {
    /// Queued: the call is in flight.
    Sent(InFlight),
    /// Not sent, and it could only be by waiting (for a slot under the
    /// in-flight cap) or elsewhere (the connection takes no more calls):
    /// here is the connection back (if there was one to try).
    NotNow(Option<Arc<Connection>>),
    /// A failure to hand to the caller as is.
    Failed(Error),
}

/// A call whose request is queued, holding its connection: the outcome comes
/// through [`poll`](Self::poll). Dropped before that, it takes its entry
/// with it and tells the server to drop the handler.
pub(super) struct InFlight {
    conn: Arc<Connection>,
    id: u64,
    /// The outcome was taken (and the entry with it).
    done: bool,
}

impl InFlight {
    /// The call's outcome, once the reader has handed it over. If it is a
    /// refusal (the server is shutting down), `refused` gets the call's
    /// deadline, unless the call ended before the writer stamped it.
    #[inline]
    pub(super) fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
        refused: &mut Option<Instant>,
    ) -> Poll<Reply> {
        let reply = std::task::ready!(self.conn.shared.poll_outcome(self.id, cx, refused));
        self.done = true;
        Poll::Ready(reply)
    }

    pub(super) fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.conn.abandon(self.id);
        }
    }
}

impl Connection {
    /// Sends without waiting: queues the request if a slot under the
    /// in-flight cap is free and the connection takes calls, storing
    /// `waker` to be woken with the outcome. The budget sent is `budget`.
    #[inline]
    pub(super) fn try_send(
        self: Arc<Self>,
        method: &'static str,
        request: &mut Encoded,
        when: When,
        budget: Duration,
        waker: &Waker,
    ) -> Tried {
        let mut waker = Some(waker.clone());
        match self.queue_request(method, request, when, budget, false, &mut waker) {
            Queued::Sent(id, wake_reader) => {
                if wake_reader {
                    self.shared.timer_moved.notify_one();
                }
                // The caller's reference moves into the call: no clone.
                Tried::Sent(InFlight {
                    conn: self,
                    id,
                    done: false,
                })
            }
            Queued::Wait | Queued::NotSent => Tried::NotNow(Some(self)),
            Queued::Failed(e) => Tried::Failed(e),
        }
    }

    /// Forgets call `id`, whose caller gave up before taking its outcome
    /// (deadline, or its future was dropped): the entry goes, the slot is
    /// passed on, and if the server may still be running it, it is told to
    /// drop the handler.
    fn abandon(&self, id: u64) {
        let (removed, next) = {
            let mut st = self.shared.state.lock().unwrap();
            let removed = st.pending.remove(id);
            let next = if removed.is_some() {
                st.release()
            } else {
                None
            };
            (removed, next)
        };
        if let Some(next) = next {
            next.wake();
        }
        // Still waiting: the server may be running it. (An expired call was
        // cancelled by the reader already.)
        if let Some(Waiting {
            slot: Slot::Waiting(_),
            ..
        }) = removed
        {
            let _ = self.outbox.send(FrameBuf::new(Kind::Cancel, id, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Hello;
    use futures::StreamExt;
    use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

    fn waiting_after(st: &mut State, timeout: Duration) -> u64 {
        let deadline = Deadline::After {
            seq: st.seq,
            timeout,
        };
        st.seq += 1;
        if st.unstamped_shortest.is_zero() || timeout < st.unstamped_shortest {
            st.unstamped_shortest = timeout;
        }
        let waker = futures::task::noop_waker();
        st.pending.insert(Waiting {
            deadline,
            slot: Slot::Waiting(waker),
        })
    }

    /// Calls get the stamp of the batch the writer took them in: none before
    /// it, and each its batch's, also once more batches than the connection
    /// keeps stamps for have gone (the oldest fold into their calls). The
    /// timer moves only for a deadline earlier than it; expiry goes by the
    /// stamped deadlines.
    #[test]
    fn calls_take_their_batchs_stamp_through_folds() {
        let mut st = State::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let first = waiting_after(&mut st, Duration::from_secs(10));
        let deadline = |st: &mut State, id: u64| {
            let recorded = st.pending.get_mut(id).unwrap().deadline;
            st.deadline_of(&recorded)
        };
        assert_eq!(deadline(&mut st, first), None, "not stamped yet");
        assert!(st.stamp(at(0)), "the first deadline arms the timer");
        assert_eq!(st.timer, Some(at(10_000)));
        let mut later = Vec::new();
        let mut short = 0;
        for batch in 1..=100u64 {
            // A shorter timeout in batch 50: the timer moves to it.
            let timeout = if batch == 50 { 5_000 } else { 20_000 };
            let id = waiting_after(&mut st, Duration::from_millis(timeout));
            if batch == 50 {
                short = id;
            }
            let moved = st.stamp(at(batch));
            assert_eq!(moved, batch == 50, "batch {batch}");
            later.push((id, batch + timeout));
            // A batch with nothing in it stamps nothing.
            assert!(!st.stamp(at(batch)));
        }
        assert!(st.stamps.len() <= MAX_STAMPS);
        assert_eq!(
            deadline(&mut st, first),
            Some(at(10_000)),
            "folded into the call"
        );
        for &(id, ms) in &later {
            assert_eq!(deadline(&mut st, id), Some(at(ms)), "call {id:#x}");
        }
        assert_eq!(st.timer, Some(at(5_050)));
        // At 10 s, the call of batch 50 and the first are due, and only
        // they; the timer moves on to the earliest deadline left.
        let mut expired: Vec<u64> = st
            .expire(at(10_000))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        expired.sort_unstable();
        let mut want = vec![first, short];
        want.sort_unstable();
        assert_eq!(expired, want);
        assert_eq!(st.timer, Some(at(20_001)));
        assert!(st.expire(at(20_000)).is_empty());
        assert_eq!(st.timer, Some(at(20_001)));
    }

    /// A connection to a server that the test plays by hand, on an in-memory
    /// pipe (the clock may be paused): what the client sent, and where to
    /// write the server's frames.
    async fn scripted_server() -> (
        Arc<Connection>,
        FrameReader<ReadHalf<DuplexStream>>,
        WriteHalf<DuplexStream>,
    ) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let (sr, mut sw) = tokio::io::split(theirs);
        let mut server = FrameReader::new(sr, FrameCodec::new(1 << 16));
        sw.write_all(&Hello::ours(16 << 20).encode()).await.unwrap();
        let addr = "127.0.0.1:1".parse().unwrap();
        let conn = Connection::start(r, w, addr, &Config::default())
            .await
            .unwrap();
        assert_eq!(server.next().await.unwrap().unwrap().kind, Kind::Hello);
        (conn, server, sw)
    }

    /// A handle knows the connection that was current when it was made;
    /// one cloned after that connection was replaced knows the new one, so
    /// its calls skip the lock again. The old handle's knowledge is stale
    /// (another generation) and is not used.
    #[tokio::test]
    async fn a_handle_cloned_after_a_reconnect_knows_the_new_connection() {
        use super::super::{Channel, Inner, Known};
        use std::sync::atomic::{AtomicU64, Ordering};
        let (first, _s1, _w1) = scripted_server().await;
        let (second, _s2, _w2) = scripted_server().await;
        let config = Config::default();
        let inner = Arc::new(Inner {
            addrs: Vec::new(),
            generation: AtomicU64::new(0),
            current: Mutex::new(Some(first.clone())),
            reconnect: Mutex::new(super::super::reconnect::Reconnect {
                backoff: super::super::backoff::Backoff::new(
                    config.backoff_initial,
                    config.backoff_max,
                ),
                attempt: None,
            }),
            config,
        });
        let handle = Channel {
            inner: inner.clone(),
            timeout: Duration::from_secs(1),
            known: Known {
                conn: Arc::downgrade(&first),
                generation: 0,
            },
        };
        let knows = |c: &Channel, conn: &Arc<Connection>| {
            c.known
                .conn
                .upgrade()
                .is_some_and(|k| Arc::ptr_eq(&k, conn))
        };
        assert!(knows(&handle.clone(), &first));
        // Replaced, as a reconnect does it.
        {
            let mut current = inner.current.lock().unwrap();
            *current = Some(second.clone());
            inner.generation.fetch_add(1, Ordering::Relaxed);
        }
        let clone = handle.clone();
        assert!(knows(&clone, &second));
        assert_eq!(clone.known.generation, 1);
        assert!(knows(&handle.with_timeout(Duration::from_secs(2)), &second));
        assert_ne!(
            handle.known.generation,
            inner.generation.load(Ordering::Relaxed),
            "the old handle's knowledge is of another generation"
        );
    }

    /// A connection to a server that reads requests and never answers.
    async fn silent_server() -> (Arc<Connection>, FrameReader<ReadHalf<DuplexStream>>) {
        let (conn, server, sw) = scripted_server().await;
        // Keep the write half open for the test's length.
        tokio::spawn(async move {
            let _sw = sw;
            std::future::pending::<()>().await
        });
        (conn, server)
    }

    fn response(call_id: u64, payload: &[u8]) -> Bytes {
        let mut frame = FrameBuf::new(Kind::Response, call_id, payload.len());
        frame.payload_mut().extend_from_slice(payload);
        frame.finish()
    }

    /// Each Response reaches its own caller, whatever the order; a second
    /// Response for a call already answered, or one for an id never sent,
    /// changes nothing, and every entry is gone once its caller has its reply.
    #[tokio::test]
    async fn responses_reach_their_callers_and_stray_ones_change_nothing() {
        let (conn, mut server, mut sw) = scripted_server().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let call = || {
            let conn = conn.clone();
            tokio::spawn(async move {
                match conn.call("Svc.m", request(), deadline, None).await {
                    Ok((payload, _)) => payload,
                    Err(_) => panic!("the call failed"),
                }
            })
        };
        let a = call();
        let id_a = server.next().await.unwrap().unwrap().call_id;
        let b = call();
        let id_b = server.next().await.unwrap().unwrap().call_id;
        assert_ne!(id_a, id_b);
        for frame in [
            response(id_b, b"bee"),
            response(id_b, b"second bee"),
            response(id_b + id_a + 100, b"nobody's"),
            response(id_a, b"ay"),
        ] {
            sw.write_all(&frame).await.unwrap();
        }
        assert_eq!(&b.await.unwrap()[..], b"bee");
        assert_eq!(&a.await.unwrap()[..], b"ay");
        assert!(conn.shared.state.lock().unwrap().pending.is_empty());
        // The connection goes on.
        let c = call();
        let id_c = server.next().await.unwrap().unwrap().call_id;
        sw.write_all(&response(id_c, b"sea")).await.unwrap();
        assert_eq!(&c.await.unwrap()[..], b"sea");
    }

    /// A caller that gives up before its Response takes its entry with it
    /// and tells the server; the late Response is dropped.
    #[tokio::test]
    async fn a_caller_that_gives_up_cancels_and_its_late_response_is_dropped() {
        let (conn, mut server, mut sw) = scripted_server().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let gave_up = tokio::time::timeout(
            Duration::from_millis(50),
            conn.call("Svc.m", request(), deadline, None),
        )
        .await;
        assert!(gave_up.is_err(), "nobody answered, yet the call returned");
        let id = server.next().await.unwrap().unwrap().call_id;
        let cancel = server.next().await.unwrap().unwrap();
        assert_eq!((cancel.kind, cancel.call_id), (Kind::Cancel, id));
        assert!(conn.shared.state.lock().unwrap().pending.is_empty());
        sw.write_all(&response(id, b"late")).await.unwrap();
        let next = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call("Svc.m", request(), deadline, None).await.is_ok() })
        };
        let id_next = server.next().await.unwrap().unwrap().call_id;
        assert_ne!(id, id_next);
        sw.write_all(&response(id_next, b"on time")).await.unwrap();
        assert!(next.await.unwrap());
        assert!(conn.shared.state.lock().unwrap().pending.is_empty());
    }

    fn request() -> FrameBuf {
        let mut frame = FrameBuf::new(Kind::Request, 0, 16);
        RequestHead {
            method_id: 1,
            budget: Duration::ZERO,
        }
        .write(&mut frame);
        frame
    }

    /// One timer serves every call of the connection: a call with an earlier
    /// deadline than the one the timer is armed for moves it earlier, each
    /// call fails at its own deadline, and the server is told to drop each.
    #[tokio::test(start_paused = true)]
    async fn each_call_fails_at_its_own_deadline_and_its_handler_is_cancelled() {
        let (conn, mut server) = silent_server().await;
        let start = Instant::now();
        let call = |secs| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let deadline = start + Duration::from_secs(secs);
                let err = conn.call("Svc.m", request(), deadline, None).await.err();
                assert!(
                    matches!(err, Some(CallError::Failed(Error::DeadlineExceeded { .. }))),
                    "the {secs} s call did not fail with DeadlineExceeded"
                );
                start.elapsed()
            })
        };
        let long = call(10);
        assert_eq!(server.next().await.unwrap().unwrap().kind, Kind::Request);
        let short = call(1);
        assert_eq!(server.next().await.unwrap().unwrap().kind, Kind::Request);
        let short_at = short.await.unwrap();
        assert!(
            short_at >= Duration::from_secs(1) && short_at < Duration::from_millis(1_100),
            "the 1 s call ended after {short_at:?}"
        );
        let cancel = server.next().await.unwrap().unwrap();
        assert_eq!((cancel.kind, cancel.call_id), (Kind::Cancel, 2));
        let long_at = long.await.unwrap();
        assert!(
            long_at >= Duration::from_secs(10) && long_at < Duration::from_millis(10_100),
            "the 10 s call ended after {long_at:?}"
        );
        let cancel = server.next().await.unwrap().unwrap();
        assert_eq!((cancel.kind, cancel.call_id), (Kind::Cancel, 1));
        assert!(conn.shared.state.lock().unwrap().pending.is_empty());
    }

    /// The default keepalive, on an in-memory pipe with the clock paused: a
    /// server that stops answering is pinged after 30 s of silence and given
    /// up 20 s later (each to the 10 s tick), failing the call in flight.
    #[tokio::test(start_paused = true)]
    async fn keepalive_pings_a_silent_server_after_30_s_and_gives_up_20_s_later() {
        let (conn, mut server) = silent_server().await;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(600);
        let call =
            tokio::spawn(async move { conn.call("Svc.m", request(), deadline, None).await.err() });
        assert_eq!(server.next().await.unwrap().unwrap().kind, Kind::Request);
        let ping = server.next().await.unwrap().unwrap();
        let pinged = started.elapsed();
        assert_eq!(ping.kind, Kind::Ping);
        assert!(
            pinged >= Duration::from_secs(30) && pinged <= Duration::from_secs(40),
            "pinged after {pinged:?}"
        );
        let Some(CallError::Failed(err)) = call.await.unwrap() else {
            panic!("the call did not fail");
        };
        let gave_up = started.elapsed() - pinged;
        assert!(matches!(err, Error::Disconnected { .. }), "{err}");
        assert!(err.to_string().contains("keepalive"), "{err}");
        assert!(
            gave_up >= Duration::from_secs(20) && gave_up <= Duration::from_secs(30),
            "gave up {gave_up:?} after the ping"
        );
    }
}
