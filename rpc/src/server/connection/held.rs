//! Requests held back while every handler slot of the connection is taken.
//!
//! At the cap the driver keeps reading, so that Cancels, Pings and GoAways
//! behind the waiting requests are seen and acted on; the requests it reads
//! meanwhile wait here, in arrival order, for a slot. The hold is bounded:
//! at most [`HOLD_MAX`] requests, each holding a grant from the server's
//! frame budget for its bytes (a large request keeps the grant it arrived
//! with). Once either runs out the driver stops reading the connection
//! (backpressure) until a handler finishes.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::time::Instant;

use super::Parked;
use crate::observe::metrics;
use crate::protocol::{Payload, Status};
use crate::transport::Outbox;
use crate::transport::budget::{FREE_BYTES, FrameBudget};

/// Requests one connection may hold back: enough that a client with a
/// burst of calls queued behind the handler cap still has its Cancels read.
pub(super) const HOLD_MAX: usize = 1024;

/// Bytes counted for a held request besides its payload: its routed
/// handler future and its place in the queue.
const HELD_OVERHEAD: usize = 512;

pub(super) struct HeldBack {
    queue: VecDeque<Parked>,
    budget: FrameBudget,
    /// Held requests the budget had no room for: while there is one, the
    /// driver reads no more (what they hold is outside the budget, so
    /// there is at most one per connection).
    ungranted: usize,
}

impl HeldBack {
    pub(super) fn new(budget: FrameBudget) -> Self {
        HeldBack {
            queue: VecDeque::new(),
            budget,
            ungranted: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// No more requests may be read until one starts.
    pub(super) fn is_full(&self) -> bool {
        self.ungranted > 0 || self.queue.len() >= HOLD_MAX
    }

    /// A copy of `payload` that owns its bytes: a payload sliced out of
    /// the read buffer would keep that whole buffer alive while it waits.
    /// (A large frame was read into a buffer of its own, so it stays.)
    pub(super) fn own(payload: &mut Payload) {
        if let Payload::Shared(b) = payload
            && b.len() <= FREE_BYTES
        {
            *b = Bytes::copy_from_slice(b);
        }
    }

    /// Holds `request`, charging the budget for `size` bytes unless it
    /// already holds a grant. Accepted even when the budget is out (the
    /// request has been read, and nothing read is lost): then the driver
    /// reads no more until it starts.
    pub(super) fn push(&mut self, mut request: Parked, size: usize) {
        if request.grant.is_none() {
            request.grant = self.budget.try_grant(size + HELD_OVERHEAD);
            self.ungranted += usize::from(request.grant.is_none());
        }
        self.queue.push_back(request);
    }

    pub(super) fn pop(&mut self) -> Option<Parked> {
        let request = self.queue.pop_front()?;
        self.forget(&request);
        Some(request)
    }

    /// `request` leaves the hold.
    fn forget(&mut self, request: &Parked) {
        if request.grant.is_none() {
            self.ungranted -= 1;
        }
    }

    /// Drops the held request `id` (its caller cancelled it). True if one
    /// was held.
    pub(super) fn cancel(&mut self, id: u64) -> bool {
        match self.queue.iter().position(|r| r.id == id) {
            Some(at) => {
                if let Some(request) = self.queue.remove(at) {
                    self.forget(&request);
                }
                true
            }
            None => false,
        }
    }

    /// Answers and drops the held requests whose deadline has passed: their
    /// callers stopped waiting, and a slot freeing up later would only find
    /// them expired.
    pub(super) fn expire(&mut self, now: Instant, outbox: &Outbox) {
        let ungranted = &mut self.ungranted;
        self.queue.retain(|r| {
            let live = r.deadline > now;
            if !live {
                if r.grant.is_none() {
                    *ungranted -= 1;
                }
                let message = format!(
                    "the {:?} budget ran out before a handler was free",
                    r.budget
                );
                let _ = outbox.send(Status::DeadlineExceeded.reply(r.id, &message));
                metrics::refused(Some(r.method), Status::DeadlineExceeded.name());
            }
            live
        });
    }
}
