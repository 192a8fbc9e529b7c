//! A small shared pseudo-random generator: the balancer's choices, and
//! the ids of trace spans.
//!
//! Balancing needs cheap, statistically decent randomness (which two
//! endpoints to compare, where a weighted draw lands, jitter), not
//! unpredictability, so a dependency on `rand` buys nothing. SplitMix64
//! (Steele, Lea and Flood, 2014; the seeder of Java's `SplittableRandom`) fits
//! a generator shared by every call of a channel: its state is a counter
//! advanced by a constant, so one `fetch_add` on an atomic draws a number
//! without a lock, and the output function does the mixing.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug)]
pub(crate) struct Rng {
    state: AtomicU64,
}

impl Rng {
    /// A generator seeded differently per instance (and per process), so two
    /// channels do not make the same choices in lockstep.
    pub(crate) fn new() -> Self {
        Rng::with_seed(RandomState::new().hash_one(0u8))
    }

    /// A generator whose sequence is fixed by `seed`, for deterministic tests.
    pub(crate) fn with_seed(seed: u64) -> Self {
        Rng {
            state: AtomicU64::new(seed),
        }
    }

    pub(crate) fn next_u64(&self) -> u64 {
        // Relaxed: each caller only needs a distinct counter value; nothing
        // else is published through this atomic.
        let s = self.state.fetch_add(GAMMA, Ordering::Relaxed);
        mix(s.wrapping_add(GAMMA))
    }

    /// Uniform in `[0, 1)`, from the top 53 bits (the precision of an `f64`).
    pub(crate) fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)`; `n` must not be 0. Lemire's multiply-shift: no
    /// division, and a bias of at most n / 2^64, far below what any test or
    /// balancing decision can notice.
    pub(crate) fn below(&self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The SplitMix64 finalizer: a bijection on `u64` whose every output bit
/// depends on every input bit. Also the hash behind rendezvous hashing.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_roughly_uniform() {
        let rng = Rng::with_seed(7);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[rng.below(4)] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn unit_stays_in_range_and_seeds_repeat() {
        let (a, b) = (Rng::with_seed(1), Rng::with_seed(1));
        for _ in 0..1000 {
            let x = a.unit();
            assert!((0.0..1.0).contains(&x));
            assert_eq!(x, b.unit());
        }
    }
}
