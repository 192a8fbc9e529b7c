//! Maps keyed by call or method ids, with a multiplicative hash instead of
//! SipHash. They are on the server's hot path (every request is routed
//! through one, and every handler that gets a task of its own is recorded in
//! another), and a key is one u64 that a single multiplication spreads well,
//! where SipHash would run its rounds on every lookup.
//!
//! HashDoS: call ids come from the peer, so a hostile one can make its ids
//! collide. The map of calls in flight is bounded by the handler cap (256 by
//! default) and the router holds only the methods served, so the worst case
//! is a short linear probe, not an unbounded one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing: a bijection on u64 that spreads consecutive ids over
/// both the low bits (bucket) and the high bits (hashbrown's tag).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// A map from a u64 id to `V`.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_land_in_distinct_buckets() {
        let buckets: std::collections::HashSet<u64> = (0..1024u64)
            .map(|id| {
                let mut h = IdHasher::default();
                h.write_u64(id);
                h.finish() & 1023
            })
            .collect();
        assert!(
            buckets.len() > 600,
            "only {} of 1024 buckets used",
            buckets.len()
        );
    }
}
