//! Maps keyed by call or method ids, with a multiplicative hash instead of
//! SipHash: the per-call maps are on the hot path, where SipHash cost about
//! as much as a timer (measured with callgrind on the comparison bench).
//!
//! HashDoS: call ids come from the peer, so a hostile one can make its ids
//! collide. Each map is bounded (the server's by the handler cap, 256 by
//! default; the client's holds only ids it chose itself), so the worst case
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
