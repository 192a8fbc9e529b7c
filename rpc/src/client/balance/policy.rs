//! Choosing one endpoint for a call, among those the ejection filter lets
//! through.
//!
//! The default is power of two choices (Mitzenmacher, 2001), as Finagle's
//! `P2C` balancers, Linkerd and Envoy's `LEAST_REQUEST`: compare two endpoints
//! drawn at random and take the cheaper. It avoids slow endpoints almost as
//! well as always taking the cheapest, without every client rushing to the
//! same one while costs are stale. The others are the usual alternatives
//! (gRPC's `round_robin`, Envoy's `RANDOM` and weighted policies) and
//! rendezvous hashing (Thaler and Ravishankar, 1998) for affinity: a key goes
//! to the endpoint that scores highest for it, so when an endpoint leaves only
//! its keys move, and a new one takes about 1/n of the keys.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::rng::{Rng, mix};

/// How a balanced channel chooses the server for each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Two endpoints drawn at random; the one with the lower latency average
    /// × (calls in flight + 1) wins. Avoids slow and busy servers. The default.
    #[default]
    PowerOfTwo,
    /// Each endpoint in turn.
    RoundRobin,
    /// An endpoint drawn at random.
    Random,
    /// An endpoint drawn at random in proportion to its weight.
    Weighted,
    /// The endpoint with the fewest calls in flight.
    LeastInFlight,
    /// The same endpoint for the same key, as long as it is in the set
    /// (rendezvous hashing); calls without a key are balanced as
    /// [`PowerOfTwo`](Policy::PowerOfTwo).
    Affinity,
}

/// What the picker knows of one eligible endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    /// From [`Load::cost`](super::load::Load::cost).
    pub(crate) cost: f64,
    pub(crate) in_flight: u32,
    /// Relative share for `Weighted` and `Affinity`; 0 takes no share unless
    /// every candidate is 0.
    pub(crate) weight: u32,
    /// Stable for the endpoint across set changes (say, a hash of its
    /// address): what affinity hashes keys against.
    pub(crate) id: u64,
}

/// A [`Policy`] with the state it needs: shared by all calls of a channel.
#[derive(Debug)]
pub(crate) struct Picker {
    policy: Policy,
    rng: Rng,
    next: AtomicUsize,
}

impl Picker {
    pub(crate) fn new(policy: Policy) -> Self {
        Picker::with_rng(policy, Rng::new())
    }

    pub(crate) fn with_rng(policy: Policy, rng: Rng) -> Self {
        Picker {
            policy,
            rng,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn policy(&self) -> Policy {
        self.policy
    }

    /// The index in `candidates` of the endpoint for a call, `None` if there
    /// are none. `key` is the call's affinity key, if any.
    pub(crate) fn pick(&self, candidates: &[Candidate], key: Option<u64>) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let i = match (self.policy, key) {
            (Policy::PowerOfTwo, _) | (Policy::Affinity, None) => self.two_choices(candidates),
            (Policy::RoundRobin, _) => self.next.fetch_add(1, Ordering::Relaxed) % candidates.len(),
            (Policy::Random, _) => self.rng.below(candidates.len()),
            (Policy::Weighted, _) => self.weighted(candidates),
            (Policy::LeastInFlight, _) => self.least_in_flight(candidates),
            (Policy::Affinity, Some(key)) => rendezvous(candidates, key),
        };
        Some(i)
    }

    /// As [`pick`](Self::pick), never choosing an index in `exclude` (the
    /// endpoints a retry or hedge of the same call already tried) unless
    /// every candidate is excluded. For `Affinity`, the result is the key's
    /// next endpoint in its rendezvous order, so retries of a key are stable
    /// too.
    pub(crate) fn pick_excluding(
        &self,
        candidates: &[Candidate],
        key: Option<u64>,
        exclude: &[usize],
    ) -> Option<usize> {
        if exclude.is_empty() {
            return self.pick(candidates, key);
        }
        // Allocates, but only for retries and hedges, which the budget keeps
        // to a fraction of calls.
        let kept: Vec<usize> = (0..candidates.len())
            .filter(|i| !exclude.contains(i))
            .collect();
        if kept.is_empty() {
            return self.pick(candidates, key);
        }
        let sub: Vec<Candidate> = kept.iter().map(|&i| candidates[i]).collect();
        self.pick(&sub, key).map(|j| kept[j])
    }

    fn two_choices(&self, c: &[Candidate]) -> usize {
        if c.len() == 1 {
            return 0;
        }
        // Two distinct indices: draw the second from the n - 1 others.
        let a = self.rng.below(c.len());
        let mut b = self.rng.below(c.len() - 1);
        if b >= a {
            b += 1;
        }
        if c[b].cost < c[a].cost { b } else { a }
    }

    fn weighted(&self, c: &[Candidate]) -> usize {
        let total: u64 = c.iter().map(|c| u64::from(c.weight)).sum();
        if total == 0 {
            return self.rng.below(c.len());
        }
        let mut point = (self.rng.unit() * total as f64) as u64;
        for (i, cand) in c.iter().enumerate() {
            let w = u64::from(cand.weight);
            if point < w {
                return i;
            }
            point -= w;
        }
        // Only reachable through float rounding at the very top.
        c.len() - 1
    }

    /// The fewest in flight; ties are broken at random (reservoir sampling),
    /// so an idle set does not send everything to the first endpoint.
    fn least_in_flight(&self, c: &[Candidate]) -> usize {
        let (mut best, mut ties) = (0, 0);
        for (i, cand) in c.iter().enumerate() {
            if cand.in_flight < c[best].in_flight {
                (best, ties) = (i, 1);
            } else if cand.in_flight == c[best].in_flight {
                ties += 1;
                if self.rng.below(ties) == 0 {
                    best = i;
                }
            }
        }
        best
    }
}

/// Weighted rendezvous hashing: each (key, endpoint) pair gets a pseudo-random
/// score in (0, 1), stretched by the weight as `-weight / ln(u)` (Schindelhauer
/// and Schomaker's logarithmic method) so an endpoint wins a share of keys
/// proportional to its weight; the key goes to the top score. A score depends
/// only on the pair, never on the rest of the set.
fn rendezvous(c: &[Candidate], key: u64) -> usize {
    let all_zero = c.iter().all(|c| c.weight == 0);
    let score = |cand: &Candidate| {
        let weight = if all_zero {
            1.0
        } else {
            f64::from(cand.weight)
        };
        let h = mix(key ^ mix(cand.id));
        // In (0, 1): never 0 (ln would be -inf) nor 1 (ln would be 0).
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        -weight / u.ln()
    };
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (i, cand) in c.iter().enumerate() {
        let s = score(cand);
        if s > best_score {
            (best, best_score) = (i, s);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: u64, cost: f64) -> Candidate {
        Candidate {
            cost,
            in_flight: 0,
            weight: 1,
            id,
        }
    }

    fn counts(picker: &Picker, c: &[Candidate], n: usize) -> Vec<usize> {
        let mut counts = vec![0; c.len()];
        for _ in 0..n {
            counts[picker.pick(c, None).unwrap()] += 1;
        }
        counts
    }

    fn picker(policy: Policy) -> Picker {
        Picker::with_rng(policy, Rng::with_seed(42))
    }

    #[test]
    fn power_of_two_rarely_picks_a_slow_endpoint() {
        let c = [cand(1, 1.0), cand(2, 10.0), cand(3, 1.0)];
        let n = counts(&picker(Policy::PowerOfTwo), &c, 10_000);
        // It wins only when drawn with itself, which distinct draws prevent.
        assert!(n[1] < 1_000, "{n:?}");
        assert_eq!(n.iter().sum::<usize>(), 10_000);
    }

    #[test]
    fn power_of_two_spreads_over_equal_endpoints() {
        let c = [cand(1, 1.0), cand(2, 1.0), cand(3, 1.0)];
        for n in counts(&picker(Policy::PowerOfTwo), &c, 30_000) {
            assert!((9_000..11_000).contains(&n), "{n}");
        }
    }

    #[test]
    fn round_robin_takes_each_in_turn() {
        let c = [cand(1, 1.0), cand(2, 99.0), cand(3, 1.0)];
        assert_eq!(counts(&picker(Policy::RoundRobin), &c, 9_000), [3_000; 3]);
    }

    #[test]
    fn random_is_roughly_uniform() {
        let c = [cand(1, 1.0), cand(2, 99.0), cand(3, 1.0)];
        for n in counts(&picker(Policy::Random), &c, 30_000) {
            assert!((9_000..11_000).contains(&n), "{n}");
        }
    }

    #[test]
    fn least_in_flight_picks_the_minimum_and_breaks_ties_at_random() {
        let mut c = [cand(1, 1.0), cand(2, 1.0), cand(3, 1.0)];
        c[0].in_flight = 3;
        c[1].in_flight = 1;
        c[2].in_flight = 2;
        let p = picker(Policy::LeastInFlight);
        assert_eq!(counts(&p, &c, 100), [0, 100, 0]);
        c[2].in_flight = 1;
        let n = counts(&p, &c, 10_000);
        assert!(n[0] == 0 && n[1] > 4_000 && n[2] > 4_000, "{n:?}");
    }

    #[test]
    fn weighted_follows_the_weights() {
        let mut c = [cand(1, 1.0), cand(2, 1.0), cand(3, 1.0), cand(4, 1.0)];
        for (cand, w) in c.iter_mut().zip([1, 2, 7, 0]) {
            cand.weight = w;
        }
        let n = counts(&picker(Policy::Weighted), &c, 100_000);
        for (got, want) in n.iter().zip([10_000, 20_000, 70_000, 0]) {
            assert!(got.abs_diff(want) <= 1_000, "{n:?}");
        }
    }

    #[test]
    fn exclusions_are_honoured_until_everything_is_excluded() {
        let c = [cand(1, 1.0), cand(2, 50.0), cand(3, 1.0)];
        let p = picker(Policy::PowerOfTwo);
        for _ in 0..1_000 {
            assert_eq!(p.pick_excluding(&c, None, &[0, 2]), Some(1));
            assert_ne!(p.pick_excluding(&c, None, &[0]), Some(0));
        }
        assert!(p.pick_excluding(&c, None, &[0, 1, 2]).is_some());
        assert_eq!(p.pick_excluding(&[], None, &[0]), None);
    }

    /// Which endpoint id each of `keys` goes to.
    fn owners(ids: &[u64], keys: u64) -> Vec<u64> {
        let c: Vec<_> = ids.iter().map(|&id| cand(id, 1.0)).collect();
        let p = picker(Policy::Affinity);
        (0..keys)
            .map(|k| ids[p.pick(&c, Some(mix(k))).unwrap()])
            .collect()
    }

    #[test]
    fn affinity_moves_only_a_removed_endpoints_keys() {
        let before = owners(&[10, 20, 30, 40, 50], 10_000);
        let after = owners(&[10, 20, 40, 50], 10_000);
        for (b, a) in before.iter().zip(&after) {
            if *b != 30 {
                assert_eq!(a, b);
            }
        }
        let moved = before.iter().filter(|&&b| b == 30).count();
        assert!((1_700..2_300).contains(&moved), "{moved}");
    }

    #[test]
    fn affinity_gives_a_new_endpoint_about_its_share() {
        let before = owners(&[10, 20, 30, 40, 50], 12_000);
        let after = owners(&[10, 20, 30, 40, 50, 60], 12_000);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!((1_700..2_300).contains(&moved), "{moved} of 12000");
        assert!(before.iter().zip(&after).all(|(b, a)| a == b || *a == 60));
    }

    #[test]
    fn affinity_retries_go_to_the_keys_next_endpoint() {
        let c: Vec<_> = [10, 20, 30].iter().map(|&id| cand(id, 1.0)).collect();
        let p = picker(Policy::Affinity);
        let first = p.pick(&c, Some(7)).unwrap();
        let second = p.pick_excluding(&c, Some(7), &[first]).unwrap();
        assert_ne!(first, second);
        assert_eq!(p.pick_excluding(&c, Some(7), &[first]), Some(second));
        // Without a key, it balances.
        let n = counts(&p, &c, 3_000);
        assert!(n.iter().all(|&n| n > 500), "{n:?}");
    }
}
