//! Book-keeping of one connection: the handlers running, by call id, and the
//! abuse counter.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::id_map::IdMap;

/// The handlers running on one connection, by call id.
///
/// Each entry also carries a sequence number unique on the connection: a call
/// id can be reused once its call is over (or cancelled), and a handler that
/// ends late must remove its own entry, never its successor's.
#[derive(Debug, Default)]
pub(super) struct Calls {
    running: Mutex<IdMap<(u64, AbortHandle)>>,
    /// How many entries `running` has, stored under its lock at every
    /// change: the driver's check for a duplicate id before a handler's
    /// first poll takes no lock while nothing runs (the common case; a lock
    /// and an unlock per small call otherwise).
    count: AtomicUsize,
    /// Signalled whenever the map becomes empty (a drain waits for it).
    pub(super) emptied: Notify,
}

impl Calls {
    pub(super) fn is_empty(&self) -> bool {
        self.running.lock().unwrap().is_empty()
    }

    /// Whether `id` is in flight. For the driver only: it alone adds
    /// entries, so one it added is counted already; an entry removed
    /// meanwhile (by its task) only makes it take the lock for nothing.
    pub(super) fn contains(&self, id: u64) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.running.lock().unwrap().contains_key(&id)
    }

    fn counted(&self, running: &IdMap<(u64, AbortHandle)>) {
        self.count.store(running.len(), Ordering::Release);
    }

    /// Records a handler, unless `id` is already in flight (then `spawn` is
    /// not called and the result is false). `spawn` runs with the lock held,
    /// so the task cannot finish (and try to remove itself) before it is
    /// recorded.
    pub(super) fn insert_with(
        &self,
        id: u64,
        seq: u64,
        spawn: impl FnOnce() -> AbortHandle,
    ) -> bool {
        let mut running = self.running.lock().unwrap();
        if running.contains_key(&id) {
            return false;
        }
        running.insert(id, (seq, spawn()));
        self.counted(&running);
        true
    }

    /// Removes the entry of handler `seq` for `id`, if it is still there.
    pub(super) fn finish(&self, id: u64, seq: u64) {
        self.finish_with(id, seq, || {});
    }

    /// Removes the entry of handler `seq` for `id` and, if it was still there
    /// (not cancelled), runs `reply` under the same lock: whoever sees the map
    /// empty (a drain about to close) knows every reply is already queued, and
    /// a peer that reuses the id after reading the reply finds it free.
    pub(super) fn finish_with(&self, id: u64, seq: u64, reply: impl FnOnce()) {
        let mut running = self.running.lock().unwrap();
        if running.get(&id).is_some_and(|&(s, _)| s == seq) {
            running.remove(&id);
            self.counted(&running);
            reply();
            if running.is_empty() {
                self.emptied.notify_one();
            }
        }
    }

    /// Aborts the handler of `id`; false if there is none.
    pub(super) fn cancel(&self, id: u64) -> bool {
        let mut running = self.running.lock().unwrap();
        let Some((_, handle)) = running.remove(&id) else {
            return false;
        };
        self.counted(&running);
        handle.abort();
        if running.is_empty() {
            self.emptied.notify_one();
        }
        true
    }

    pub(super) fn abort_all(&self) {
        let mut running = self.running.lock().unwrap();
        for (_, (_, h)) in running.drain() {
            h.abort();
        }
        self.counted(&running);
        drop(running);
        self.emptied.notify_one();
    }
}

/// Removes a handler's entry when its task ends, however it ends: returning,
/// panicking while its future is dropped, or aborted.
pub(super) struct Finish<'a> {
    pub(super) calls: &'a Calls,
    pub(super) id: u64,
    pub(super) seq: u64,
    /// Cleared once the task removed its entry itself.
    pub(super) armed: bool,
}

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.calls.finish(self.id, self.seq);
        }
    }
}

/// Counts abuse (cancels of unknown calls, malformed requests) in a window.
#[derive(Debug)]
pub(super) struct Abuse {
    limit: u32,
    window: Duration,
    count: u32,
    since: Instant,
}

impl Abuse {
    pub(super) fn new(limit: u32, window: Duration) -> Self {
        Abuse {
            limit,
            window,
            count: 0,
            since: Instant::now(),
        }
    }

    /// Records one event; true once the budget is exceeded.
    pub(super) fn record(&mut self) -> bool {
        if self.since.elapsed() > self.window {
            self.count = 0;
            self.since = Instant::now();
        }
        self.count = self.count.saturating_add(1);
        self.count > self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_handler_does_not_remove_the_entry_of_a_reused_id() {
        let calls = Calls::default();
        let idle = || tokio::spawn(std::future::pending::<()>()).abort_handle();
        assert!(calls.insert_with(7, 1, idle));
        assert!(!calls.insert_with(7, 9, || unreachable!("7 is in flight")));
        assert!(calls.cancel(7));
        // The peer reuses id 7 for a new call...
        assert!(calls.insert_with(7, 2, idle));
        // ...and the cancelled handler, finishing late, leaves it alone.
        calls.finish(7, 1);
        assert!(calls.contains(7));
        calls.finish(7, 2);
        assert!(calls.is_empty());
        calls.abort_all();
    }

    #[tokio::test(start_paused = true)]
    async fn abuse_is_counted_per_window() {
        let mut abuse = Abuse::new(3, Duration::from_secs(10));
        assert!(!(0..3).any(|_| abuse.record()));
        assert!(
            abuse.record(),
            "the fourth event in the window is one too many"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!abuse.record(), "a new window starts afresh");
    }
}
