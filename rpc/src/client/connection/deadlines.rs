//! Deadlines on a connection: one timer for all its calls, in the reader,
//! not one per call. Each call's deadline is stored with it, and the timer is
//! armed for the earliest deadline seen since it last fired. Most calls end
//! long before their deadline, so the timer mostly fires at a deadline
//! already gone, scans what is in flight, and re-arms for the earliest one
//! left: one scan per timeout period instead of a timer entry per call.
//!
//! A call's deadline itself is fixed once, when the call starts (see
//! `client/call.rs`); the server is sent what is left of it.

use std::task::Waker;

use tokio::time::Instant;

use std::sync::Arc;

use super::state::{Failure, Outcome, State};
use crate::stream::Flow;

/// A call whose deadline passed.
pub(super) enum Expired {
    /// Its caller, waiting for the Response, to wake (it finds the failure).
    Caller(Waker),
    /// The flow of the stream it was reading, to fail.
    Stream(Arc<Flow>),
}

impl State {
    /// A call with deadline `at` was recorded: true if the timer must move
    /// earlier (the reader is to be woken to re-arm it).
    #[inline]
    pub(super) fn note_deadline(&mut self, at: Instant) -> bool {
        let earlier = self.timer.is_none_or(|t| at < t);
        if earlier {
            self.timer = Some(at);
        }
        earlier
    }

    /// Fails the calls whose deadline is `now` or before; returns their ids
    /// and what to tell of it once the lock is released (a caller's waker,
    /// or the flow of a stream being read), and points the timer at the
    /// earliest deadline left.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<(u64, Expired)> {
        let mut expired = Vec::new();
        let mut earliest: Option<Instant> = None;
        for (id, entry) in self.calls.iter_mut() {
            let streaming = matches!(entry.outcome, Outcome::Streaming);
            // A call waiting for its Response, or reading its stream (one
            // that expired already has no flow left).
            let open = entry.is_waiting() || (streaming && entry.stream.is_some());
            if !open {
                continue;
            }
            if entry.deadline > now {
                if earliest.is_none_or(|e| entry.deadline < e) {
                    earliest = Some(entry.deadline);
                }
            } else if streaming {
                // Taken out, so that it expires once; the stream's reader
                // learns of it through the flow.
                if let Some((flow, _)) = entry.stream.take() {
                    expired.push((id, Expired::Stream(flow)));
                }
            } else if let Some(caller) = entry.settle(Err(Failure::Deadline)) {
                expired.push((id, Expired::Caller(caller)));
            }
        }
        self.timer = earliest;
        expired
    }

    /// Whether any call still waits for its outcome or reads its stream
    /// (keepalive pings only then).
    pub(super) fn any_waiting(&self) -> bool {
        self.calls
            .iter()
            .any(|(_, e)| e.is_waiting() || matches!(e.outcome, Outcome::Streaming))
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{Entry, Outcome, Shared};
    use std::time::Duration;
    use tokio::time::Instant;

    /// The timer moves only for a deadline earlier than it; expiry fails the
    /// calls due and only them, and re-arms for the earliest left.
    #[test]
    fn the_timer_follows_the_earliest_deadline() {
        let shared = Shared::new(100);
        let mut st = shared.lock();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let add = |st: &mut super::State, ms: u64| {
            let id = st.calls.insert(Entry {
                deadline: at(ms),
                outcome: Outcome::Waiting(futures::task::noop_waker()),
                stream: None,
            });
            (id, st.note_deadline(at(ms)))
        };
        let (long, moved) = add(&mut st, 10_000);
        assert!(moved, "the first deadline arms the timer");
        let (_, moved) = add(&mut st, 20_000);
        assert!(!moved, "a later deadline leaves it");
        let (short, moved) = add(&mut st, 5_000);
        assert!(moved, "an earlier one moves it");
        assert_eq!(st.timer, Some(at(5_000)));
        assert!(st.expire(at(4_999)).is_empty());
        assert_eq!(st.timer, Some(at(5_000)));
        let mut due: Vec<u64> = st
            .expire(at(10_000))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        due.sort_unstable();
        let mut want = vec![long, short];
        want.sort_unstable();
        assert_eq!(due, want);
        assert_eq!(st.timer, Some(at(20_000)));
        assert!(st.any_waiting());
    }
}
