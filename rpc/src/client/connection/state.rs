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
}

pub(super) enum Outcome {
    /// No outcome yet: wake the caller when it comes.
    Waiting(Waker),
    /// The outcome, for the caller to take (and remove the entry).
    Done(Reply),
}

impl Entry {
    /// Puts the outcome in place of the caller's waker and returns the waker,
    /// to wake once the lock is released; nothing if an outcome is already
    /// there (the first one stands).
    #[inline]
    pub(super) fn settle(&mut self, reply: Reply) -> Option<Waker> {
        match std::mem::replace(&mut self.outcome, Outcome::Done(reply)) {
            Outcome::Waiting(waker) => Some(waker),
            first @ Outcome::Done(_) => {
                self.outcome = first;
                None
            }
        }
    }

    pub(super) fn is_waiting(&self) -> bool {
        matches!(self.outcome, Outcome::Waiting(_))
    }
}

/// Wakes `waker`, if there is one (after the lock is released).
pub(super) fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
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

    /// The server sent GoAway: no new calls here. Returns the callers in
    /// line for a slot, to wake: they go elsewhere.
    pub(super) fn drain(&mut self) -> Vec<Waker> {
        self.draining = true;
        self.admission.everyone_in_line()
    }

    /// The connection is dead: fails every call still waiting for an
    /// outcome. Returns their wakers and those of the callers in line.
    pub(super) fn close(&mut self, reason: Arc<str>) -> Vec<Waker> {
        self.closed = Some(reason.clone());
        let failed = self
            .calls
            .iter_mut()
            .filter_map(|(_, e)| e.settle(Err(Failure::Closed(reason.clone()))));
        let mut wake: Vec<Waker> = failed.collect();
        wake.extend(self.admission.everyone_in_line());
        wake
    }

    /// Takes call `id`'s outcome if it came (removing its entry and giving
    /// back its slot), or keeps `cx`'s waker to be woken when it does. The
    /// second waker returned is the next caller in line for the slot.
    #[inline]
    pub(super) fn poll_outcome(
        &mut self,
        id: u64,
        cx: &mut Context<'_>,
    ) -> Poll<(Reply, Option<Waker>)> {
        let Some(entry) = self.calls.get_mut(id) else {
            // Entries leave only through their caller; never expected.
            let lost = Err(Failure::Closed("the call's entry was lost".into()));
            return Poll::Ready((lost, None));
        };
        if let Outcome::Waiting(waker) = &mut entry.outcome {
            if !waker.will_wake(cx.waker()) {
                waker.clone_from(cx.waker());
            }
            return Poll::Pending;
        }
        let Some(Entry {
            outcome: Outcome::Done(reply),
            ..
        }) = self.calls.remove(id)
        else {
            unreachable!("just seen done")
        };
        Poll::Ready((reply, self.admission.release()))
    }

    /// Forgets call `id`, whose caller gave up before taking its outcome.
    /// Returns whether the server may still be running it (it had no
    /// outcome yet), and the next caller in line for the slot.
    pub(super) fn abandon(&mut self, id: u64) -> (bool, Option<Waker>) {
        match self.calls.remove(id) {
            Some(entry) => (entry.is_waiting(), self.admission.release()),
            None => (false, None),
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
