//! What a connection's callers and its reader share, under one lock: the
//! calls in flight and their outcomes, the in-flight cap, the deadline timer,
//! and whether the connection still takes calls.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::admission::Admission;
use super::slots::Slots;
use crate::protocol::Payload;
use crate::stream::Flow;
use crate::transport::{Lane, Pending};

/// What a waiting caller receives: the Response payload, or why it never came.
pub(crate) type Reply = Result<Payload, Failure>;

/// Why a call got no Response.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The connection died, for this reason.
    Closed(Arc<str>),
    /// Its deadline passed (the reader's timer found it).
    Deadline,
}

/// A call in flight, from when its request is queued until its caller takes
/// the outcome. No channel per call: the reader hands the outcome over in
/// this entry, under the lock it takes per batch of Responses anyway.
pub(super) struct Entry {
    pub(super) deadline: Instant,
    pub(super) outcome: Outcome,
    /// A streaming call's flow, and whether the server answers with a
    /// stream (then the entry stays after the Response, until the stream
    /// ends or is dropped).
    pub(super) stream: Option<(Arc<Flow>, bool)>,
}

pub(super) enum Outcome {
    /// No outcome yet: wake the caller when it comes.
    Waiting(Waker),
    /// The outcome, for the caller to take (and remove the entry).
    Done(Reply),
    /// The Response was taken and the server's stream follows it.
    Streaming,
}

impl Entry {
    /// Puts the outcome in place of the caller's waker and returns the waker,
    /// to wake once the lock is released; nothing if an outcome is already
    /// there (the first one stands).
    #[inline]
    pub(super) fn settle(&mut self, reply: Reply) -> Option<Waker> {
        match &self.outcome {
            Outcome::Waiting(_) => {}
            Outcome::Done(_) | Outcome::Streaming => return None,
        }
        match std::mem::replace(&mut self.outcome, Outcome::Done(reply)) {
            Outcome::Waiting(waker) => Some(waker),
            _ => unreachable!("checked above"),
        }
    }

    pub(super) fn is_waiting(&self) -> bool {
        matches!(self.outcome, Outcome::Waiting(_))
    }

    /// Whether the server may still be running the call: no Response yet,
    /// or its stream has not ended. (The flow's end is read without its
    /// lock: see the lock order in `stream/flow.rs`.)
    pub(super) fn is_open(&self) -> bool {
        match self.outcome {
            Outcome::Waiting(_) => true,
            Outcome::Done(_) => false,
            Outcome::Streaming => self.stream.as_ref().is_some_and(|(f, _)| !f.ended()),
        }
    }
}

/// Wakes `waker`, if there is one (after the lock is released).
pub(super) fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// A call's outcome, taken by its caller.
pub(super) struct Taken {
    pub(super) reply: Reply,
    /// The next caller in line for a slot, to wake.
    pub(super) next: Option<Waker>,
    /// The entry stays: a stream follows.
    pub(super) kept: bool,
    /// The flow of a streaming call that is over, to close.
    pub(super) flow: Option<Arc<Flow>>,
}

impl Taken {
    fn gone(reply: Reply, next: Option<Waker>, flow: Option<Arc<Flow>>) -> Self {
        Taken {
            reply,
            next,
            kept: false,
            flow,
        }
    }
}

/// The state and the reader's wake-up call for an earlier deadline.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Wakes the reader to re-arm its deadline timer earlier.
    pub(super) timer_moved: Notify,
}

impl Shared {
    pub(super) fn new(max_in_flight: usize) -> Self {
        Shared {
            state: Mutex::new(State {
                calls: Slots::default(),
                admission: Admission::new(max_in_flight),
                timer: None,
                closed: None,
                draining: false,
                out: Pending::default(),
            }),
            timer_moved: Notify::new(),
        }
    }

    /// The state, also after a panic elsewhere while it was held (every
    /// change to it is complete before anything that can panic).
    #[inline]
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) struct State {
    /// The calls in flight, by call id.
    pub(super) calls: Slots<Entry>,
    pub(super) admission: Admission,
    /// When the reader's timer fires: no later than any call's deadline
    /// (see `deadlines.rs`).
    pub(super) timer: Option<Instant>,
    /// Set once the connection is dead; no call may be added after.
    pub(super) closed: Option<Arc<str>>,
    /// Set by GoAway: calls in flight finish, new calls go elsewhere.
    pub(super) draining: bool,
    /// The frames waiting for the writer: under this lock (see
    /// [`StateLane`]).
    pub(super) out: Pending,
}

impl State {
    /// Whether new calls may be queued here.
    #[inline]
    pub(super) fn takes_calls(&self) -> bool {
        self.closed.is_none() && !self.draining
    }

    /// Hands call `id` its outcome (see [`Entry::settle`]); nothing if the
    /// call is gone (its caller gave up).
    #[inline]
    pub(super) fn complete(&mut self, id: u64, reply: Reply) -> Option<Waker> {
        self.calls.get_mut(id)?.settle(reply)
    }

    /// The flow of streaming call `id`, if it is open.
    pub(super) fn stream_flow(&mut self, id: u64) -> Option<Arc<Flow>> {
        let (flow, _) = self.calls.get_mut(id)?.stream.as_ref()?;
        Some(flow.clone())
    }

    /// The server sent GoAway: no new calls here. Returns the callers in
    /// line for a slot, to wake: they go elsewhere.
    pub(super) fn drain(&mut self) -> Vec<Waker> {
        self.draining = true;
        self.admission.everyone_in_line()
    }

    /// The connection is dead: fails every call still waiting for an
    /// outcome. Returns their wakers and those of the callers in line, and
    /// the flows of its streams, to fail once the lock is released.
    pub(super) fn close(&mut self, reason: Arc<str>) -> (Vec<Waker>, Vec<Arc<Flow>>) {
        self.closed = Some(reason.clone());
        let mut wake = Vec::new();
        let mut flows = Vec::new();
        for (_, entry) in self.calls.iter_mut() {
            wake.extend(entry.settle(Err(Failure::Closed(reason.clone()))));
            if let Some((flow, _)) = &entry.stream {
                flows.push(flow.clone());
            }
        }
        wake.extend(self.admission.everyone_in_line());
        (wake, flows)
    }

    /// Takes call `id`'s outcome if it came (removing its entry and giving
    /// back its slot), or keeps `cx`'s waker to be woken when it does. What
    /// else it returns: the next caller in line for the slot, to wake; and
    /// the entry's fate: kept (a stream follows the Response) or gone.
    #[inline]
    pub(super) fn poll_outcome(&mut self, id: u64, cx: &mut Context<'_>) -> Poll<Taken> {
        let Some(entry) = self.calls.get_mut(id) else {
            // Entries leave only through their caller; never expected.
            let lost = Err(Failure::Closed("the call's entry was lost".into()));
            return Poll::Ready(Taken::gone(lost, None, None));
        };
        match &mut entry.outcome {
            Outcome::Waiting(waker) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                return Poll::Pending;
            }
            Outcome::Streaming => {
                let lost = Err(Failure::Closed("the call's Response was taken".into()));
                return Poll::Ready(Taken::gone(lost, None, None));
            }
            Outcome::Done(Ok(payload))
                if entry.stream.as_ref().is_some_and(|(_, back)| *back)
                    && payload.first() == Some(&0) =>
            {
                // An Ok Response: the server's stream follows it.
                let Outcome::Done(reply) =
                    std::mem::replace(&mut entry.outcome, Outcome::Streaming)
                else {
                    unreachable!("just matched")
                };
                return Poll::Ready(Taken {
                    reply,
                    next: None,
                    kept: true,
                    flow: None,
                });
            }
            Outcome::Done(_) => {}
        }
        let Some(Entry {
            outcome: Outcome::Done(reply),
            stream,
            ..
        }) = self.calls.remove(id)
        else {
            unreachable!("just seen done")
        };
        let flow = stream.map(|(flow, _)| flow);
        Poll::Ready(Taken::gone(reply, self.admission.release(), flow))
    }

    /// Forgets call `id`, whose caller gave up before taking its outcome
    /// (or whose stream is done with). Returns whether the server may still
    /// be running it, the next caller in line for the slot, and the call's
    /// flow, to close once the lock is released.
    pub(super) fn abandon(&mut self, id: u64) -> (bool, Option<Waker>, Option<Arc<Flow>>) {
        match self.calls.remove(id) {
            Some(entry) => {
                let open = entry.is_open();
                let flow = entry.stream.map(|(flow, _)| flow);
                (open, self.admission.release(), flow)
            }
            None => (false, None, None),
        }
    }
}

/// The writer's lane: the lock of the connection's state. A call records
/// itself and queues its request under this one lock, and GoAway marks the
/// connection draining under it too: a request is either queued before the
/// reader answers the server's drain Ping, or not sent here.
pub(super) struct StateLane(pub(super) Arc<Shared>);

impl Lane for StateLane {
    type Guard<'a> = OutGuard<'a>;

    #[inline]
    fn lock(&self) -> OutGuard<'_> {
        OutGuard(self.0.lock())
    }
}

/// The state, locked for the writer's frames.
pub(super) struct OutGuard<'a>(std::sync::MutexGuard<'a, State>);

impl std::ops::Deref for OutGuard<'_> {
    type Target = Pending;

    fn deref(&self) -> &Pending {
        &self.0.out
    }
}

impl std::ops::DerefMut for OutGuard<'_> {
    fn deref_mut(&mut self) -> &mut Pending {
        &mut self.0.out
    }
}
