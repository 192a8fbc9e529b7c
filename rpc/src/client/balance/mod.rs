//! The decisions behind a channel over many servers, each pure and
//! synchronous so it can be tested without sockets or a runtime: time comes in
//! as an argument and randomness from a seedable [`crate::rng::Rng`].
//!
//! One call flows through them in this order:
//!
//! 1. `load.rs`: every endpoint keeps a [`load::Load`], a peak-EWMA latency
//!    weighted by its calls in flight, updated as calls start and end;
//! 2. `eject.rs`: an [`eject::Breaker`] per endpoint says whether it takes
//!    calls ([`eject::Admit`]); the channel passes only those that do (or all
//!    of them, if none does) on to
//! 3. `policy.rs`: a [`policy::Picker`] chooses one of them by the configured
//!    [`Policy`] (power of two choices on the load by default), excluding the
//!    endpoints a retry or hedge already tried;
//! 4. `retry_budget.rs`: a [`retry_budget::Budget`] shared by the channel
//!    decides whether a retry or a hedge may be sent at all, and
//!    `hedge.rs` when a hedge is due ([`Hedge`], [`hedge::Latencies`]).
//!
//! The outcome of each attempt goes back into the endpoint's `Load` and
//! `Breaker`, and a new call into the `Budget`.

pub(crate) mod eject;
pub(crate) mod hedge;
pub(crate) mod load;
pub(crate) mod policy;
pub(crate) mod retry_budget;

use std::time::Duration;

pub use hedge::Hedge;
pub use policy::Policy;

/// When an endpoint that keeps failing is taken out of the rotation, and for
/// how long.
///
/// After `consecutive_failures` failed calls in a row the endpoint is ejected
/// for `base`, scaled by a random factor within `±jitter`; each ejection that
/// follows a failed probe doubles the time, up to `max`. When the time is up
/// the endpoint is half-open: one call (the probe) goes to it; if it
/// succeeds the endpoint is back in and the backoff starts again from `base`.
/// At most half of a channel's endpoints are ever ejected.
///
/// ```ignore
/// let ejection = rpc::balance::Ejection { consecutive_failures: 3, ..Default::default() };
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ejection {
    /// Failed calls in a row that eject an endpoint. Default 5, as Envoy's
    /// outlier detection (`consecutive_5xx`) and Finagle's failure accrual.
    /// 0 turns ejection off.
    pub consecutive_failures: u32,
    /// The first ejection time. Default 1 s, as Linkerd's failure accrual:
    /// the sets behind one client are small, so a restarted server is worth
    /// trying again soon, and a probe risks only one call.
    pub base: Duration,
    /// The longest ejection time. Default 30 s: reached after five failed
    /// probes, it bounds how long a recovered server sits idle while costing
    /// a dead one only one call every half minute.
    pub max: Duration,
    /// The spread of each ejection time, as a fraction: 0.2 means ±20%, as
    /// gRPC's connection backoff, so endpoints ejected together are not all
    /// probed at the same instant.
    pub jitter: f64,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            consecutive_failures: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

/// How many retries and hedges a channel may send, so that retrying cannot
/// multiply the load on servers that are already failing.
///
/// Each call earns `ratio` of a retry, for `window`; on top of that,
/// `min_per_sec` retries per second are always allowed (at most one second's
/// worth saved up), so a channel with few calls can still retry an occasional
/// failure. Over any stretch of time, retries stay below `ratio × calls +
/// min_per_sec × seconds`. This is Finagle's `RetryBudget`; gRPC's retry
/// throttling (A6) has the same aim.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// Retries allowed per call. Default 0.2, as Finagle: at worst a failing
    /// set sees 1.2 times its normal load.
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic. Default 10, as
    /// Finagle.
    pub min_per_sec: u32,
    /// How long the retry a call earns can be spent. Default 10 s, as
    /// Finagle.
    pub window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            ratio: 0.2,
            min_per_sec: 10,
            window: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::load::Load;
    use super::policy::{Candidate, Picker};
    use super::*;
    use crate::rng::Rng;

    /// The default path end to end: loads fed by simulated calls, picked by
    /// power of two choices. A call starts every 100 µs; endpoint 1 takes
    /// 10 ms where the others take 1 ms.
    #[test]
    fn power_of_two_on_the_load_avoids_a_slow_endpoint() {
        let t0 = Instant::now();
        let rtts = [1, 10, 1].map(Duration::from_millis);
        let loads: Vec<Load> = rtts.iter().map(|_| Load::new(t0)).collect();
        let picker = Picker::with_rng(Policy::default(), Rng::with_seed(5));
        let mut pending: Vec<(Instant, usize)> = Vec::new();
        let mut picks = [0u32; 3];
        for i in 0..10_000 {
            let now = t0 + Duration::from_micros(100) * i;
            pending.retain(|&(done, e)| {
                if done <= now {
                    loads[e].success(rtts[e], done);
                }
                done > now
            });
            let candidates: Vec<Candidate> = (0..3)
                .map(|e| Candidate {
                    cost: loads[e].cost(now),
                    in_flight: loads[e].in_flight(),
                    weight: 1,
                    id: e as u64,
                })
                .collect();
            let e = picker.pick(&candidates, None).unwrap();
            loads[e].start();
            pending.push((now + rtts[e], e));
            picks[e] += 1;
        }
        assert!(picks[1] < 1_000, "{picks:?}");
        assert!(picks[0] > 4_000 && picks[2] > 4_000, "{picks:?}");
    }
}
