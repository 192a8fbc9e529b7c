//! How many retries and hedges a channel may send: a budget shared by all its
//! calls, so that when servers fail, retrying adds at most a fixed fraction
//! to their load instead of multiplying it.
//!
//! The shape is Finagle's `RetryBudget`: each call earns `ratio` of a retry,
//! its deposit expiring after `window`, and a small floor per second lets a
//! quiet channel still retry the odd failure. gRPC's retry throttling (A6)
//! spends tokens the same way but earns them from successes, which stops
//! retries entirely in a full outage; earning per call keeps the bound simple:
//! over any stretch of time, retries stay below `ratio × calls + floor ×
//! seconds` (plus one second of floor).
//!
//! Two parts: the earned retries live in a ring of time slots covering the
//! window (deposits and withdrawals counted per slot, a slot cleared when time
//! comes round to it again), and the floor is a token bucket holding at most
//! one second's worth, refilled continuously. A retry spends an earned token
//! first, keeping the floor for quiet times.
//!
//! One `Mutex` guards both: a slot is cleared and counted in one step, and
//! the lock is held for a few additions once per call and once per retry.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::RetryBudget;

/// Slots in the window: deposits expire in steps of a tenth of it.
const SLOTS: usize = 10;

#[derive(Debug)]
pub(crate) struct Budget {
    settings: RetryBudget,
    slot_len: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: Instant,
    slots: [Slot; SLOTS],
    floor_tokens: f64,
    floor_at: Instant,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which slot-length interval since `origin` the counts belong to.
    epoch: u64,
    deposits: u64,
    withdrawals: u64,
}

impl Budget {
    pub(crate) fn new(settings: RetryBudget, now: Instant) -> Self {
        let slot_len = (settings.window / SLOTS as u32).max(Duration::from_millis(1));
        Budget {
            settings,
            slot_len,
            inner: Mutex::new(Inner {
                origin: now,
                slots: [Slot::default(); SLOTS],
                floor_tokens: f64::from(settings.min_per_sec),
                floor_at: now,
            }),
        }
    }

    /// A call was made (once per call, not per attempt).
    pub(crate) fn deposit(&self, now: Instant) {
        let mut inner = self.lock();
        let slot = inner.slot(now, self.slot_len);
        slot.deposits = slot.deposits.saturating_add(1);
    }

    /// Whether a retry or hedge may be sent now; if so, it is paid for.
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        let earned = inner.earned(now, self.slot_len, self.settings.ratio);
        if earned >= 1.0 {
            let slot = inner.slot(now, self.slot_len);
            slot.withdrawals = slot.withdrawals.saturating_add(1);
            return true;
        }
        inner.refill_floor(now, self.settings.min_per_sec);
        if inner.floor_tokens >= 1.0 {
            inner.floor_tokens -= 1.0;
            return true;
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain counters, valid whatever a panicking holder did.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn epoch(&self, now: Instant, slot_len: Duration) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        (since.as_nanos() / slot_len.as_nanos()) as u64
    }

    /// The slot for `now`, cleared if it last counted an older interval.
    fn slot(&mut self, now: Instant, slot_len: Duration) -> &mut Slot {
        let epoch = self.epoch(now, slot_len);
        let slot = &mut self.slots[(epoch % SLOTS as u64) as usize];
        if slot.epoch != epoch {
            *slot = Slot {
                epoch,
                ..Slot::default()
            };
        }
        slot
    }

    /// Retries earned over the window and not yet spent.
    fn earned(&self, now: Instant, slot_len: Duration, ratio: f64) -> f64 {
        let epoch = self.epoch(now, slot_len);
        let live = |s: &&Slot| s.epoch <= epoch && epoch - s.epoch < SLOTS as u64;
        let (d, w) = self
            .slots
            .iter()
            .filter(live)
            .fold((0, 0), |(d, w), s| (d + s.deposits, w + s.withdrawals));
        ratio * d as f64 - w as f64
    }

    fn refill_floor(&mut self, now: Instant, per_sec: u32) {
        let elapsed = now.saturating_duration_since(self.floor_at).as_secs_f64();
        let cap = f64::from(per_sec);
        self.floor_tokens = (self.floor_tokens + elapsed * cap).min(cap);
        self.floor_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs `secs` seconds of `calls_per_sec` calls that all fail, each
    /// retried until the budget says no; returns (calls, retries).
    fn all_failing(settings: RetryBudget, calls_per_sec: u32, secs: u32) -> (u64, u64) {
        let t0 = Instant::now();
        let budget = Budget::new(settings, t0);
        let (mut calls, mut retries) = (0, 0);
        let step = Duration::from_secs(1) / calls_per_sec;
        for i in 0..calls_per_sec * secs {
            let now = t0 + step * i;
            budget.deposit(now);
            calls += 1;
            while budget.try_withdraw(now) {
                retries += 1;
            }
        }
        (calls, retries)
    }

    #[test]
    fn retries_stay_within_the_ratio_and_the_floor() {
        let settings = RetryBudget::default();
        for (rate, secs) in [(1_000, 60), (100, 30), (5, 30)] {
            let (calls, retries) = all_failing(settings, rate, secs);
            let attempts = (calls + retries) as f64;
            let bound = 1.2 * calls as f64 + 10.0 * f64::from(secs + 1);
            assert!(
                attempts <= bound,
                "{rate}/s: {calls} calls, {retries} retries"
            );
            // And the budget is not stingy: most of the allowance is usable.
            assert!(
                retries as f64 >= 0.9 * 0.2 * calls as f64,
                "{rate}/s: {retries}"
            );
        }
    }

    #[test]
    fn the_floor_alone_allows_about_min_per_sec() {
        let settings = RetryBudget {
            ratio: 0.0,
            ..RetryBudget::default()
        };
        let t0 = Instant::now();
        let budget = Budget::new(settings, t0);
        let mut retries = 0;
        // Someone tries to retry every millisecond for a minute.
        for i in 0..60_000 {
            if budget.try_withdraw(t0 + MS * i) {
                retries += 1;
            }
        }
        assert!((600..=611).contains(&retries), "{retries}");
    }

    #[test]
    fn deposits_expire_after_the_window() {
        let settings = RetryBudget {
            min_per_sec: 0,
            ..RetryBudget::default()
        };
        let t0 = Instant::now();
        let budget = Budget::new(settings, t0);
        for _ in 0..100 {
            budget.deposit(t0);
        }
        assert!(budget.try_withdraw(t0 + Duration::from_secs(9)));
        assert!(!budget.try_withdraw(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn spending_is_shared_across_threads() {
        let t0 = Instant::now();
        let budget = std::sync::Arc::new(Budget::new(RetryBudget::default(), t0));
        for _ in 0..1_000 {
            budget.deposit(t0);
        }
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = budget.clone();
                std::thread::spawn(move || (0..1_000).filter(|_| b.try_withdraw(t0)).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 200 earned plus the floor's 10 in hand.
        assert_eq!(total, 210);
    }
}
