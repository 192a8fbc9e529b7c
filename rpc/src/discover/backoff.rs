//! The wait between attempts of a source that failed (a name that did not
//! resolve, an etcd that did not answer).

use std::time::Duration;

/// Exponential backoff with jitter: the first retry comes soon, so a blip
/// costs little; later ones space out so a registry that is down is not
/// hammered; jitter keeps many clients from retrying in step.
// Only the etcd source starts over after a success.
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait before the next attempt: x1.6 each time up to the maximum,
    /// +-20% (the client's reconnect backoff, for the same reasons).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = self.next.mul_f64(1.6).min(self.max);
        base.mul_f64(0.8 + 0.4 * jitter())
    }

    /// After a success: the next failure starts over from the first wait.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A number in [0, 1) that differs between processes and calls: good enough
/// to spread retries, no random-number crate needed.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_millis(1200));
        }
        assert!(b.next_delay() >= Duration::from_millis(800));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
