//! Taking an endpoint that keeps failing out of the rotation, and letting it
//! back in carefully: a circuit breaker per endpoint.
//!
//! The trigger is Envoy's `consecutive_5xx` outlier detection and Finagle's
//! failure accrual: some failed calls in a row (one success clears the
//! count), not a failure rate, because it needs no window and a dead server
//! trips it within a few calls. The way back is Finagle's and Linkerd's: the
//! ejection lasts a jittered exponential backoff; then the endpoint is
//! half-open and exactly one call, the probe, goes to it. A successful probe
//! readmits it and resets the backoff; a failed one ejects it again for
//! twice as long. A probe is one call risked, where gRPC's outlier detection
//! (A50) readmits blindly when the time is up.
//!
//! The set-level rules, from A50's and Envoy's `max_ejection_percent`, keep a
//! breaker from making an outage worse: never more than half of the set is
//! ejected ([`may_eject`]; a refused ejection leaves the endpoint in), and a
//! channel whose endpoints are all out of rotation still sends calls, across
//! all of them (see [`Admit`]).

use std::time::Duration;

use tokio::time::Instant;

use super::Ejection;
use crate::rng::Rng;

/// Whether an endpoint takes a call now.
///
/// The channel offers the picker the endpoints that answer `Yes` or `Probe`;
/// if none does, it offers all of them, since refusing every call helps no
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// In the rotation.
    Yes,
    /// Half-open: one call may go, as the probe. The channel should prefer it
    /// (say, give it cost 0: its load still holds the failures that ejected
    /// it) and call [`Breaker::begin_probe`] when it sends the call.
    Probe,
    /// Ejected, or half-open with its probe in flight.
    No,
}

/// Whether one more endpoint may be ejected, when `ejected` of the others in
/// a set of `total` are: never more than half of the set.
pub(crate) fn may_eject(ejected: usize, total: usize) -> bool {
    (ejected + 1) * 2 <= total
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: Ejection,
    state: State,
    /// The ejection time to use next (before jitter).
    backoff: Duration,
    rng: Rng,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    In { failures: u32 },
    Out { until: Instant },
    Probing,
}

impl Breaker {
    pub(crate) fn new(config: Ejection) -> Self {
        Breaker::with_rng(config, Rng::new())
    }

    pub(crate) fn with_rng(config: Ejection, rng: Rng) -> Self {
        Breaker {
            config,
            state: State::In { failures: 0 },
            backoff: config.base,
            rng,
        }
    }

    pub(crate) fn admits(&self, now: Instant) -> Admit {
        match self.state {
            State::In { .. } => Admit::Yes,
            State::Out { until } if now >= until => Admit::Probe,
            State::Out { .. } | State::Probing => Admit::No,
        }
    }

    /// Out of the rotation (ejected, or half-open) at `now`.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.admits(now) != Admit::Yes
    }

    /// When an ejected endpoint becomes half-open.
    #[cfg(test)]
    pub(crate) fn next_retry_at(&self) -> Option<Instant> {
        match self.state {
            State::Out { until } => Some(until),
            _ => None,
        }
    }

    /// Failed calls in a row while in the rotation.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        match self.state {
            State::In { failures } => failures,
            _ => 0,
        }
    }

    /// The probe is being sent: true if this call is it, false if another
    /// call took the probe since [`admits`](Self::admits) said `Probe`
    /// (then this call goes as any other to this endpoint).
    pub(crate) fn begin_probe(&mut self, now: Instant) -> bool {
        let due = self.admits(now) == Admit::Probe;
        if due {
            self.state = State::Probing;
        }
        due
    }

    /// The probe ended without an answer either way (the caller gave up on
    /// it): the next call may probe instead.
    pub(crate) fn probe_abandoned(&mut self, now: Instant) {
        if self.state == State::Probing {
            self.state = State::Out { until: now };
        }
    }

    /// A call to the endpoint succeeded.
    pub(crate) fn on_success(&mut self, _now: Instant) {
        match self.state {
            State::In { .. } => self.state = State::In { failures: 0 },
            State::Probing => {
                self.state = State::In { failures: 0 };
                self.backoff = self.config.base;
            }
            // A call sent before the ejection: the probe decides, not it.
            State::Out { .. } => {}
        }
    }

    /// A call to the endpoint failed. `may_eject` is the set's verdict
    /// ([`may_eject`]) on one more ejection. Returns whether this failure
    /// ejected the endpoint.
    pub(crate) fn on_failure(&mut self, now: Instant, may_eject: bool) -> bool {
        let threshold = self.config.consecutive_failures;
        let failures = match self.state {
            State::In { failures } => failures.saturating_add(1),
            // A failed probe counts as a full run of failures.
            State::Probing => threshold,
            // Stragglers from before the ejection change nothing.
            State::Out { .. } => return false,
        };
        if threshold == 0 || failures < threshold || !may_eject {
            self.state = State::In { failures };
            return false;
        }
        self.eject(now);
        true
    }

    fn eject(&mut self, now: Instant) {
        let delay = self.jittered(self.backoff).min(self.config.max);
        self.state = State::Out {
            until: crate::deadline::after(now, delay),
        };
        self.backoff = self.backoff.saturating_mul(2).min(self.config.max);
    }

    /// `d` scaled by a random factor within `1 ± jitter`.
    fn jittered(&self, d: Duration) -> Duration {
        let j = self.config.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - j + 2.0 * j * self.rng.unit();
        Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn breaker() -> Breaker {
        Breaker::with_rng(Ejection::default(), Rng::with_seed(3))
    }

    /// Fails `n` calls at `now`, the set allowing ejection.
    fn fail(b: &mut Breaker, now: Instant, n: u32) -> bool {
        (0..n).fold(false, |ejected, _| b.on_failure(now, true) || ejected)
    }

    /// The ejection time `b` chose at `now`.
    fn ejected_for(b: &Breaker, now: Instant) -> Duration {
        b.next_retry_at().expect("ejected") - now
    }

    #[test]
    fn five_failures_in_a_row_eject_and_a_success_clears_the_count() {
        let now = Instant::now();
        let mut b = breaker();
        assert!(!fail(&mut b, now, 4));
        b.on_success(now);
        assert_eq!(b.consecutive_failures(), 0);
        assert!(!fail(&mut b, now, 4));
        assert_eq!(b.admits(now), Admit::Yes);
        assert!(fail(&mut b, now, 1));
        assert!(b.is_ejected(now));
        assert_eq!(b.admits(now), Admit::No);
        let d = ejected_for(&b, now);
        assert!(d >= SEC * 8 / 10 && d <= SEC * 12 / 10, "{d:?}");
    }

    #[test]
    fn after_the_backoff_exactly_one_probe_goes_out() {
        let now = Instant::now();
        let mut b = breaker();
        fail(&mut b, now, 5);
        let later = b.next_retry_at().unwrap();
        assert_eq!(b.admits(later), Admit::Probe);
        b.begin_probe(later);
        assert_eq!(b.admits(later), Admit::No);
        assert!(b.is_ejected(later));
        // A probe given up on lets another go.
        b.probe_abandoned(later);
        assert_eq!(b.admits(later), Admit::Probe);
    }

    #[test]
    fn a_successful_probe_readmits_and_resets_the_backoff() {
        let mut now = Instant::now();
        let mut b = breaker();
        fail(&mut b, now, 5);
        now = b.next_retry_at().unwrap();
        assert!(b.begin_probe(now));
        assert!(!b.begin_probe(now), "two calls took the one probe");
        assert!(b.on_failure(now, true)); // ejected again, for ~2 s
        now = b.next_retry_at().unwrap();
        b.begin_probe(now);
        b.on_success(now);
        assert_eq!(b.admits(now), Admit::Yes);
        fail(&mut b, now, 5);
        let d = ejected_for(&b, now);
        assert!(d <= SEC * 12 / 10, "backoff not reset: {d:?}");
    }

    #[test]
    fn failed_probes_double_the_backoff_up_to_the_max() {
        let mut now = Instant::now();
        let mut b = breaker();
        fail(&mut b, now, 5);
        let mut times = vec![ejected_for(&b, now)];
        for _ in 0..8 {
            now = b.next_retry_at().unwrap();
            b.begin_probe(now);
            assert!(b.on_failure(now, true));
            times.push(ejected_for(&b, now));
        }
        for (i, d) in times.iter().enumerate() {
            let nominal = (SEC * 2u32.pow(i as u32)).min(30 * SEC);
            assert!(
                *d >= nominal * 8 / 10 && *d <= nominal * 12 / 10,
                "{times:?}"
            );
            assert!(*d <= 30 * SEC, "{times:?}");
        }
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_varies() {
        let now = Instant::now();
        let mut seen = Vec::new();
        for seed in 0..200 {
            let mut b = Breaker::with_rng(Ejection::default(), Rng::with_seed(seed));
            fail(&mut b, now, 5);
            let d = ejected_for(&b, now);
            assert!(d >= SEC * 8 / 10 && d <= SEC * 12 / 10, "{d:?}");
            seen.push(d);
        }
        let (min, max) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
        assert!(*max - *min > SEC * 3 / 10, "{min:?}..{max:?}");
    }

    #[test]
    fn stragglers_do_not_change_an_ejection() {
        let now = Instant::now();
        let mut b = breaker();
        fail(&mut b, now, 5);
        let until = b.next_retry_at();
        b.on_success(now);
        assert!(!b.on_failure(now, true));
        assert_eq!(b.next_retry_at(), until);
    }

    #[test]
    fn a_refused_ejection_leaves_the_endpoint_in() {
        let now = Instant::now();
        let mut b = breaker();
        for _ in 0..10 {
            assert!(!b.on_failure(now, false));
        }
        assert_eq!(b.admits(now), Admit::Yes);
        // The next failure the set allows ejects at once.
        assert!(b.on_failure(now, true));
    }

    #[test]
    fn zero_failures_turns_ejection_off() {
        let config = Ejection {
            consecutive_failures: 0,
            ..Ejection::default()
        };
        let mut b = Breaker::with_rng(config, Rng::with_seed(1));
        assert!(!fail(&mut b, Instant::now(), 100));
    }

    #[test]
    fn at_most_half_the_set_is_ejected() {
        assert!(!may_eject(0, 1), "a lone endpoint is never ejected");
        assert!(may_eject(0, 2));
        assert!(!may_eject(1, 2));
        assert!(may_eject(0, 3));
        assert!(!may_eject(1, 3));
        assert!(may_eject(4, 10));
        assert!(!may_eject(5, 10));
    }
}
