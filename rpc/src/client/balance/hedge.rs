//! When to send a hedge: a second copy of an idempotent call, to another
//! endpoint, if the first has not answered in time; the first answer wins.
//!
//! gRPC (A6) hedges after a fixed `hedgingDelay`. Finagle's backup requests
//! and "The Tail at Scale" (Dean and Barroso, 2013) wait for a high percentile
//! of recent latency instead, so the delay follows the service: at p95, about
//! one call in twenty is hedged, whatever "slow" means for that method. Both
//! are offered; hedges are also paid for from the retry budget.
//!
//! The percentile comes from [`Latencies`], one per method: a log-scale
//! histogram (16 buckets per power of two, so a bucket's midpoint is within
//! about 3% of any value in it, from 1 µs to 71 minutes) over a sliding
//! window of two halves, the older dropped as time moves on. Memory is fixed
//! (two arrays of 464 counters), and recording is one increment under a
//! `Mutex` that rotation needs (the halves swap and clear together).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When a balanced channel sends a second attempt of an idempotent call that
/// has not answered yet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Hedge {
    /// Never. The default: a hedge adds load, so it is asked for.
    #[default]
    Off,
    /// After this long without an answer.
    Fixed(Duration),
    /// After the given quantile (0.95 for p95) of the channel's recent
    /// latency (its idempotent calls' together: a channel whose methods
    /// differ much in latency is better served by `Fixed`). No hedge until enough calls have been seen to know it: at
    /// least five beyond the quantile (100 for p95). Clamped to 0.999.
    Percentile(f64),
}

impl Hedge {
    /// How long a call of the method whose latency is `latencies` waits
    /// before hedging; `None`: it does not hedge.
    pub(crate) fn delay(&self, latencies: &Latencies, now: Instant) -> Option<Duration> {
        match *self {
            Hedge::Off => None,
            Hedge::Fixed(d) => Some(d),
            Hedge::Percentile(q) => latencies.quantile(q, now),
        }
    }
}

/// Default span of [`Latencies`]: the quantile reflects the last 10 to 20 s.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Values below this many microseconds get a bucket each.
const LINEAR: usize = 16;
/// Powers of two from 2^4 to 2^31 µs, 16 buckets each.
const BUCKETS: usize = LINEAR + 28 * LINEAR;
const MAX_MICROS: u64 = (1 << 32) - 1;

/// Recent latencies of one method; shared by its calls.
#[derive(Debug)]
pub(crate) struct Latencies {
    window: Duration,
    inner: Mutex<Halves>,
}

#[derive(Debug)]
struct Halves {
    current: Histogram,
    previous: Histogram,
    current_since: Instant,
}

#[derive(Debug, Clone)]
struct Histogram {
    counts: Box<[u32]>,
    total: u64,
}

impl Latencies {
    pub(crate) fn new(now: Instant) -> Self {
        Latencies::with_window(DEFAULT_WINDOW, now)
    }

    pub(crate) fn with_window(window: Duration, now: Instant) -> Self {
        Latencies {
            window,
            inner: Mutex::new(Halves {
                current: Histogram::new(),
                previous: Histogram::new(),
                current_since: now,
            }),
        }
    }

    /// One attempt's latency (each attempt's own, hedges included).
    pub(crate) fn record(&self, latency: Duration, now: Instant) {
        let mut h = self.lock(now);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        h.current.add(bucket(micros.min(MAX_MICROS)));
    }

    /// The `q` quantile of recent latency, if enough has been seen.
    pub(crate) fn quantile(&self, q: f64, now: Instant) -> Option<Duration> {
        let q = q.clamp(0.0, 0.999);
        let h = self.lock(now);
        let n = h.current.total + h.previous.total;
        // Five samples beyond the quantile, so one outlier cannot set it.
        let needed = (5.0 / (1.0 - q)).ceil().max(20.0) as u64;
        if n < needed {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for i in 0..BUCKETS {
            seen += u64::from(h.current.counts[i]) + u64::from(h.previous.counts[i]);
            if seen >= rank {
                return Some(Duration::from_micros(midpoint(i)));
            }
        }
        None
    }

    /// The halves, rotated to `now`.
    fn lock(&self, now: Instant) -> std::sync::MutexGuard<'_, Halves> {
        // Plain counters, valid whatever a panicking holder did.
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let age = now.saturating_duration_since(h.current_since);
        if age >= self.window {
            let old = std::mem::replace(&mut h.current, Histogram::new());
            // After two windows of silence the old half is stale as well.
            h.previous = if age >= 2 * self.window {
                Histogram::new()
            } else {
                old
            };
            h.current_since = now;
        }
        h
    }
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }

    fn add(&mut self, i: usize) {
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total += 1;
    }
}

/// The bucket of a value in microseconds: exact below 16, then 16 per power
/// of two, picked by the four bits after the leading one.
fn bucket(micros: u64) -> usize {
    if micros < LINEAR as u64 {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros() as usize; // >= 4
    let sub = (micros >> (exp - 4)) as usize & (LINEAR - 1);
    LINEAR + (exp - 4) * LINEAR + sub
}

/// The middle of bucket `i`, in microseconds: what a value in it reads back as.
fn midpoint(i: usize) -> u64 {
    if i < LINEAR {
        return i as u64;
    }
    let (exp, sub) = ((i - LINEAR) / LINEAR + 4, (i - LINEAR) % LINEAR);
    let width = 1u64 << (exp - 4);
    ((LINEAR + sub) as u64 * width) + width / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    const MS: Duration = Duration::from_millis(1);

    fn assert_near(got: Duration, want: Duration, tolerance: f64) {
        let (g, w) = (got.as_secs_f64(), want.as_secs_f64());
        assert!((g - w).abs() <= tolerance * w, "got {got:?}, want {want:?}");
    }

    #[test]
    fn buckets_cover_the_range_within_a_few_percent() {
        for micros in [1, 15, 16, 17, 100, 1_000, 12_345, 1 << 20, MAX_MICROS] {
            let back = midpoint(bucket(micros));
            let err = back.abs_diff(micros) as f64 / micros as f64;
            assert!(err <= 1.0 / 32.0, "{micros} reads back as {back}");
        }
        assert_eq!(bucket(MAX_MICROS), BUCKETS - 1);
    }

    #[test]
    fn p95_of_a_uniform_distribution() {
        let now = Instant::now();
        let l = Latencies::new(now);
        let rng = Rng::with_seed(9);
        for _ in 0..10_000 {
            l.record(MS * 10 + MS.mul_f64(90.0 * rng.unit()), now);
        }
        // Uniform on [10, 100) ms: p95 is 95.5 ms.
        assert_near(l.quantile(0.95, now).unwrap(), MS.mul_f64(95.5), 0.04);
    }

    #[test]
    fn p95_and_p99_of_an_exponential_distribution() {
        let now = Instant::now();
        let l = Latencies::new(now);
        let rng = Rng::with_seed(10);
        for _ in 0..20_000 {
            // Mean 5 ms: the quantile q is -5 ms × ln(1 - q).
            l.record(MS.mul_f64(-5.0 * (1.0 - rng.unit()).ln()), now);
        }
        assert_near(l.quantile(0.95, now).unwrap(), MS.mul_f64(14.98), 0.06);
        assert_near(l.quantile(0.99, now).unwrap(), MS.mul_f64(23.03), 0.08);
    }

    #[test]
    fn no_percentile_hedge_until_enough_samples() {
        let now = Instant::now();
        let l = Latencies::new(now);
        let hedge = Hedge::Percentile(0.95);
        for _ in 0..99 {
            l.record(MS, now);
        }
        assert_eq!(hedge.delay(&l, now), None);
        l.record(MS, now);
        assert_near(hedge.delay(&l, now).unwrap(), MS, 0.04);
        assert_eq!(Hedge::default().delay(&l, now), None);
        assert_eq!(
            Hedge::Fixed(7 * MS).delay(&Latencies::new(now), now),
            Some(7 * MS)
        );
    }

    #[test]
    fn old_latencies_age_out() {
        let t0 = Instant::now();
        let l = Latencies::new(t0);
        for _ in 0..200 {
            l.record(100 * MS, t0);
        }
        // Still counted in the next window, alongside the new ones...
        let t1 = t0 + DEFAULT_WINDOW;
        for _ in 0..200 {
            l.record(MS, t1);
        }
        assert_near(l.quantile(0.95, t1).unwrap(), 100 * MS, 0.04);
        // ...and gone in the one after.
        let t2 = t1 + DEFAULT_WINDOW;
        assert_near(l.quantile(0.95, t2).unwrap(), MS, 0.04);
        // After two silent windows, nothing is known any more.
        assert_eq!(l.quantile(0.95, t2 + 2 * DEFAULT_WINDOW), None);
    }
}
