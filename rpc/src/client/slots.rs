//! The cap on calls in flight on one connection. Taking and giving back a
//! slot is one atomic operation each while slots are free (a semaphore takes
//! a lock to give a permit back); only callers at the cap wait, on a
//! `Notify`.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub(super) struct Slots {
    used: AtomicUsize,
    max: usize,
    /// Callers waiting for a slot: a slot given back wakes one of them.
    waiting: AtomicUsize,
    freed: Notify,
}

/// One call's slot, given back when dropped.
#[derive(Debug)]
pub(super) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(super) fn new(max: usize) -> Self {
        Slots {
            used: AtomicUsize::new(0),
            max: max.max(1),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    /// A slot if one is free.
    pub(super) fn try_take(&self) -> Option<Slot<'_>> {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            if used >= self.max {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(Slot(self)),
                Err(now) => used = now,
            }
        }
    }

    /// Waits for a slot. Cancel safe: a caller that stops waiting after being
    /// woken passes the wake-up on (tokio's `Notify` does for `notify_one`).
    pub(super) async fn take(&self) -> Slot<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(self);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a slot given back after the look
            // wakes us.
            freed.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return slot;
            }
            freed.await;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let slots = self.0;
        slots.used.fetch_sub(1, Ordering::SeqCst);
        // Either a waiter sees the slot free when it looks, or we see it
        // counted here and wake it.
        if slots.waiting.load(Ordering::SeqCst) > 0 {
            slots.freed.notify_one();
        }
    }
}

struct Waiting<'a>(&'a Slots);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn callers_beyond_the_cap_wait_for_a_slot_given_back() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first");
        let _b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none(), "the cap is 2");
        let quick = tokio::time::timeout(Duration::from_millis(20), slots.take()).await;
        assert!(quick.is_err(), "a slot appeared from nowhere");
        let waiter = async {
            let _slot = slots.take().await;
        };
        let release = async {
            tokio::task::yield_now().await;
            drop(a);
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            futures::future::join(waiter, release),
        )
        .await
        .expect("the slot given back never reached the waiter");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_strand_the_next_one() {
        let slots = Slots::new(1);
        let held = slots.try_take().unwrap();
        let mut first = Box::pin(slots.take());
        let mut second = Box::pin(slots.take());
        // Both wait.
        assert!(futures::poll!(first.as_mut()).is_pending());
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(held);
        // The first is woken, then gives up without taking the slot.
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second waiter was stranded");
    }
}
