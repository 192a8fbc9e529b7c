//! The load of one endpoint: how long its calls take and how many it has in
//! flight, folded into one number, its cost, that the picker compares.
//!
//! This is the peak-EWMA of Finagle's `PeakEwma` balancer and Linkerd's proxy
//! (tower-balance's `PeakEwma`): a moving average of call latency that jumps
//! straight up to any sample above it and decays down towards faster samples
//! with a time constant, so one slow call makes an endpoint look slow at once,
//! and it takes many fast ones to win it back. Multiplied by calls in flight
//! plus one, it steers new calls away from an endpoint that is slow *or* busy,
//! which is what power of two choices needs to avoid herding.
//!
//! Two things are added to that scheme. A failed call counts as a sample of at
//! least `penalty`, so a server that fails fast does not look like the fastest
//! one and draw all the traffic (the "black hole"). And an endpoint that has
//! never answered costs nothing while idle (so it gets tried) but a huge
//! amount once a call is in flight on it, as Finagle does, so a new or
//! readmitted endpoint gets one call, not a flood, until it has answered.
//!
//! Concurrency: calls in flight are an atomic, touched on every call start and
//! end. The average and the time of its last update must change together, so
//! they sit under a `Mutex` (as in tower): it is held for a few arithmetic
//! operations, on call completion and when the picker reads a cost.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Default time constant of the average: 10 s, Finagle's and Linkerd's.
pub(crate) const DEFAULT_DECAY: Duration = Duration::from_secs(10);
/// Default latency a failed call counts as, if it did not take longer.
pub(crate) const DEFAULT_PENALTY: Duration = Duration::from_secs(1);
/// The cost of an endpoint that has never answered and has a call in flight:
/// larger than any real cost, so it is chosen only when nothing else is.
const UNKNOWN_BUSY: f64 = 1e9;

#[derive(Debug)]
pub(crate) struct Load {
    in_flight: AtomicU32,
    ewma: Mutex<Ewma>,
    decay_secs: f64,
    penalty: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Ewma {
    /// Seconds; `None` until the first sample (or after a reset).
    estimate: Option<f64>,
    updated_at: Instant,
}

impl Ewma {
    /// The estimate at `now`: decayed towards zero over the time since the
    /// last sample, so an endpoint that was slow and then left alone is
    /// eventually tried again rather than shunned forever.
    fn at(&self, now: Instant, decay_secs: f64) -> Option<f64> {
        let idle = now.saturating_duration_since(self.updated_at).as_secs_f64();
        self.estimate.map(|e| e * (-idle / decay_secs).exp())
    }
}

impl Load {
    pub(crate) fn new(now: Instant) -> Self {
        Load::with_settings(DEFAULT_DECAY, DEFAULT_PENALTY, now)
    }

    /// `decay`: the time constant of the average (after it, an old value
    /// weighs e^-1 against a new one). `penalty`: the least latency a
    /// failed call counts as.
    pub(crate) fn with_settings(decay: Duration, penalty: Duration, now: Instant) -> Self {
        Load {
            in_flight: AtomicU32::new(0),
            ewma: Mutex::new(Ewma {
                estimate: None,
                updated_at: now,
            }),
            decay_secs: decay.as_secs_f64().max(1e-9),
            penalty,
        }
    }

    /// A call was sent to this endpoint. Pair with exactly one of
    /// [`success`](Self::success), [`failure`](Self::failure) or
    /// [`abandon`](Self::abandon).
    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A call answered after `rtt`.
    pub(crate) fn success(&self, rtt: Duration, now: Instant) {
        self.end();
        self.sample(rtt.as_secs_f64(), now);
    }

    /// A call failed after `rtt`: counted as taking at least the penalty.
    pub(crate) fn failure(&self, rtt: Duration, now: Instant) {
        self.end();
        self.sample(rtt.max(self.penalty).as_secs_f64(), now);
    }

    /// A call ended without saying anything about the endpoint (the caller
    /// dropped it, or another attempt won): no sample.
    pub(crate) fn abandon(&self) {
        self.end();
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The latency estimate at `now`, if the endpoint has answered yet.
    pub(crate) fn latency(&self, now: Instant) -> Option<Duration> {
        let e = self.lock().at(now, self.decay_secs)?;
        Some(Duration::from_secs_f64(e))
    }

    /// What the picker minimises: latency estimate × (calls in flight + 1).
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let in_flight = self.in_flight();
        match self.lock().at(now, self.decay_secs) {
            Some(e) => e * f64::from(in_flight + 1),
            None if in_flight == 0 => 0.0,
            None => UNKNOWN_BUSY + f64::from(in_flight),
        }
    }

    /// Forget the latency history, as when an ejected endpoint is readmitted:
    /// the failures that ejected it must not keep its probe from being sent.
    pub(crate) fn reset(&self, now: Instant) {
        *self.lock() = Ewma {
            estimate: None,
            updated_at: now,
        };
    }

    fn end(&self) {
        // Saturating: an unpaired end must not wrap to four billion calls.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    fn sample(&self, secs: f64, now: Instant) {
        let mut ewma = self.lock();
        let current = ewma.estimate.map(|_| ewma.at(now, self.decay_secs));
        ewma.estimate = Some(match current.flatten() {
            // The peak: a slower sample is believed at once.
            Some(e) if secs <= e => {
                let idle = now.saturating_duration_since(ewma.updated_at);
                let w = (-idle.as_secs_f64() / self.decay_secs).exp();
                // `e` already decayed by `w` towards zero; move the weight
                // that decay took onto the new sample instead.
                e + (1.0 - w) * secs
            }
            _ => secs,
        });
        ewma.updated_at = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ewma> {
        // The data is two plain numbers, valid whatever a panicking holder
        // did, so a poisoned lock is still usable.
        self.ewma.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A load that has seen `n` calls of `rtt`, one every 100 ms from `t0`.
    fn warmed(t0: Instant, rtt: Duration, n: u32) -> (Load, Instant) {
        let load = Load::new(t0);
        let mut now = t0;
        for _ in 0..n {
            now += 100 * MS;
            load.start();
            load.success(rtt, now);
        }
        (load, now)
    }

    #[test]
    fn a_slow_endpoint_costs_more_than_a_fast_one() {
        let t0 = Instant::now();
        let (fast, now) = warmed(t0, MS, 20);
        let (slow, _) = warmed(t0, 10 * MS, 20);
        assert!(slow.cost(now) > 5.0 * fast.cost(now));
    }

    #[test]
    fn calls_in_flight_raise_the_cost() {
        let t0 = Instant::now();
        let (load, now) = warmed(t0, MS, 5);
        let idle = load.cost(now);
        load.start();
        load.start();
        assert_eq!(load.in_flight(), 2);
        assert!((load.cost(now) - 3.0 * idle).abs() < 1e-12);
        load.abandon();
        load.abandon();
        load.abandon(); // unpaired: stays at zero
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn a_slow_sample_is_believed_at_once_and_decays_slowly() {
        let t0 = Instant::now();
        let (load, mut now) = warmed(t0, MS, 20);
        now += 100 * MS;
        load.start();
        load.success(50 * MS, now);
        assert_eq!(load.latency(now), Some(50 * MS));
        // Fast samples pull it down, but gradually: after one second of
        // them (a tenth of the time constant) it is still well above 1 ms.
        for _ in 0..10 {
            now += 100 * MS;
            load.start();
            load.success(MS, now);
        }
        let l = load.latency(now).unwrap();
        assert!(l > 40 * MS && l < 50 * MS, "{l:?}");
    }

    #[test]
    fn an_idle_estimate_decays_by_e_per_time_constant() {
        let t0 = Instant::now();
        let (load, now) = warmed(t0, 10 * MS, 1);
        let later = load.latency(now + DEFAULT_DECAY).unwrap();
        let expected = 10.0e-3 / std::f64::consts::E;
        assert!((later.as_secs_f64() - expected).abs() < 1e-9, "{later:?}");
    }

    #[test]
    fn a_fast_failure_counts_as_the_penalty() {
        let t0 = Instant::now();
        let (load, now) = warmed(t0, MS, 5);
        load.start();
        load.failure(Duration::from_micros(50), now);
        assert_eq!(load.latency(now), Some(DEFAULT_PENALTY));
    }

    #[test]
    fn an_unknown_endpoint_is_tried_once_then_waited_on() {
        let t0 = Instant::now();
        let (known, now) = warmed(t0, 10 * MS, 5);
        let new = Load::new(now);
        assert_eq!(new.cost(now), 0.0);
        new.start();
        assert!(new.cost(now) > 1000.0 * known.cost(now));
        new.success(MS, now);
        assert!(new.cost(now) < known.cost(now));
        // Readmission after an ejection forgets the penalties.
        new.start();
        new.failure(MS, now);
        new.reset(now);
        assert_eq!(new.cost(now), 0.0);
    }
}
