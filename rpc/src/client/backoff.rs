//! Reconnect backoff: exponential with jitter, as gRPC-Go does it.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::time::Instant;

const MULTIPLIER: f64 = 1.6;
const JITTER: f64 = 0.2;

#[derive(Debug)]
pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    next_delay: Duration,
    retry_at: Option<Instant>,
    last_error: String,
    failures: u32,
}

impl Backoff {
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next_delay: initial,
            retry_at: None,
            last_error: String::new(),
            failures: 0,
        }
    }

    /// When the next attempt may be made, if the last one failed.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|&t| t > Instant::now())
    }

    pub(super) fn succeeded(&mut self) {
        *self = Backoff::new(self.initial, self.max);
    }

    pub(super) fn failed(&mut self, error: String) {
        let delay = jittered(self.next_delay);
        self.retry_at = Some(crate::deadline::after(Instant::now(), delay));
        self.next_delay = scale(self.next_delay, MULTIPLIER).min(self.max);
        self.last_error = error;
        self.failures += 1;
    }

    /// Why a call cannot wait for the next attempt.
    pub(super) fn describe(&self, retry_at: Instant) -> String {
        format!(
            "{} connection attempt(s) failed, the last with: {}; next attempt in {:?}",
            self.failures,
            self.last_error,
            retry_at.saturating_duration_since(Instant::now())
        )
    }
}

/// `d` scaled by a random factor in [1 - JITTER, 1 + JITTER], so clients that
/// lost the same server do not all come back at the same instant.
fn jittered(d: Duration) -> Duration {
    // RandomState is seeded randomly per instance: enough randomness for jitter
    // without a dependency.
    let r = RandomState::new().hash_one(Instant::now()) as f64 / u64::MAX as f64;
    scale(d, 1.0 - JITTER + 2.0 * JITTER * r)
}

/// `d * factor`, saturating instead of panicking (a configured maximum of
/// `Duration::MAX` must not take the client down).
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_grow_by_1_6_with_jitter_up_to_the_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        assert!(b.retry_at().is_none());
        let mut expected = 100.0;
        for _ in 0..20 {
            b.failed("refused".into());
            let wait = b.retry_at().unwrap() - Instant::now();
            let ms = wait.as_secs_f64() * 1000.0;
            assert!(
                ms >= expected * 0.8 - 1.0 && ms <= expected * 1.2 + 1.0,
                "{ms} vs {expected}"
            );
            expected = (expected * 1.6).min(10_000.0);
        }
        b.succeeded();
        assert!(b.retry_at().is_none());
    }
}
