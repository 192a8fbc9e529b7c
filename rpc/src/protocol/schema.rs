//! The schema fingerprint a Request may carry ([`FLAG_SCHEMA`]): 8 bytes,
//! the u64 BE fingerprint of the method's shape as the client was built,
//! right after the request head (method id, budget) and before the metadata
//! block (if flagged) and the args:
//!
//! ```text
//!  +-----------+-----------+---------------+------------+---------+
//!  | method id | budget µs | fingerprint   | (metadata) | args    |
//!  |  u64 BE   |  u64 BE   | u64 BE        |            |         |
//!  +-----------+-----------+---------------+------------+---------+
//!   only with FLAG_SCHEMA:  ^^^^^^^^^^^^^
//! ```
//!
//! A client writes it into every request and takes it out again (with the
//! flag) only for a server whose Hello did not advertise
//! [`features::SCHEMA`](super::features::SCHEMA): that is rare (an older
//! server), and the common call pays nothing for it.

use super::{FLAG_SCHEMA, FrameBuf, HEADER_LEN, Kind, LEN_PREFIX, Payload, RequestHead};

/// Bytes of the fingerprint.
const LEN: usize = 8;

/// Bytes the fingerprint takes after the head of a Request with `flags`.
#[inline]
pub(crate) fn fingerprint_len(flags: u8) -> usize {
    if flags & FLAG_SCHEMA != 0 { LEN } else { 0 }
}

/// The fingerprint at the front of `rest` (what follows a flagged
/// request's head), taken off it; `None` if `rest` is too short.
pub(crate) fn take_fingerprint(rest: &mut Payload) -> Option<u64> {
    let bytes: [u8; LEN] = rest.get(..LEN)?.try_into().ok()?;
    rest.advance(LEN);
    Some(u64::from_be_bytes(bytes))
}

/// The encoded Request `frame` without its fingerprint and flag, if it has
/// one: what a server that does not check fingerprints is sent (it would
/// take the flag for a broken frame).
pub(crate) fn strip_fingerprint(frame: &[u8]) -> Option<FrameBuf> {
    let head = frame.get(..LEN_PREFIX + HEADER_LEN)?;
    let flags = head[LEN_PREFIX + 1];
    if head[LEN_PREFIX] != Kind::Request as u8 || flags & FLAG_SCHEMA == 0 {
        return None;
    }
    let call_id = u64::from_be_bytes(head[LEN_PREFIX + 2..].try_into().ok()?);
    let head_end = LEN_PREFIX + HEADER_LEN + RequestHead::LEN;
    let request_head = frame.get(LEN_PREFIX + HEADER_LEN..head_end)?;
    let rest = frame.get(head_end + LEN..)?;
    let mut f = FrameBuf::new(Kind::Request, call_id, RequestHead::LEN + rest.len());
    f.extend_from_slice(request_head);
    f.extend_from_slice(rest);
    f.set_flags(flags & !FLAG_SCHEMA);
    Some(f)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::FLAG_METADATA;

    /// A flagged request: the head, then the fingerprint, then the args.
    fn flagged(fingerprint: u64, args: &[u8]) -> FrameBuf {
        let mut f = FrameBuf::new(Kind::Request, 5, 0);
        RequestHead {
            method_id: 0x1122_3344_5566_7788,
            budget: Duration::from_millis(1500),
        }
        .write(&mut f);
        f.extend_from_slice(&fingerprint.to_be_bytes());
        f.extend_from_slice(args);
        f.set_flags(FLAG_SCHEMA);
        f
    }

    #[test]
    fn golden_bytes_of_a_request_with_a_fingerprint() {
        let bytes = flagged(0xA1B2_C3D4_E5F6_0718, &[42]).finish();
        assert_eq!(
            &bytes[..],
            &[
                0, 0, 0, 35, 2, 0x04, 0, 0, 0, 0, 0, 0, 0, 5, // prefix, kind, FLAG_SCHEMA, id
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // method id
                0, 0, 0, 0, 0, 0x16, 0xE3, 0x60, // 1_500_000 µs
                0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18, // fingerprint
                42,   // one byte of args
            ]
        );
        let (head, mut rest) = RequestHead::split(bytes.slice(14..).into()).unwrap();
        assert_eq!(head.method_id, 0x1122_3344_5566_7788);
        assert_eq!(take_fingerprint(&mut rest), Some(0xA1B2_C3D4_E5F6_0718));
        assert_eq!(&rest[..], &[42]);
    }

    #[test]
    fn a_short_fingerprint_is_none() {
        let mut rest = Payload::copy_small(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!(take_fingerprint(&mut rest), None);
        assert_eq!(rest.len(), 7, "nothing taken");
        assert_eq!(fingerprint_len(FLAG_SCHEMA | FLAG_METADATA), 8);
        assert_eq!(fingerprint_len(FLAG_METADATA), 0);
    }

    #[test]
    fn stripping_gives_the_unflagged_request_other_flags_kept() {
        let mut with = flagged(7, &[0, 0, 0, 0, 9, 9]);
        with.set_flags(FLAG_SCHEMA | FLAG_METADATA);
        let mut without = strip_fingerprint(with.seal()).unwrap();
        let mut plain = FrameBuf::new(Kind::Request, 5, 0);
        RequestHead {
            method_id: 0x1122_3344_5566_7788,
            budget: Duration::from_millis(1500),
        }
        .write(&mut plain);
        plain.extend_from_slice(&[0, 0, 0, 0, 9, 9]);
        plain.set_flags(FLAG_METADATA);
        assert_eq!(without.seal(), plain.seal());
        // Nothing to strip: an unflagged request, another kind, a stub.
        assert!(strip_fingerprint(plain.seal()).is_none());
        assert!(strip_fingerprint(&FrameBuf::new(Kind::Ping, 1, 0).finish()).is_none());
        assert!(strip_fingerprint(&with.seal()[..20]).is_none());
    }

    /// A compressed value stays where it is found: after the fingerprint
    /// while there is one, after the head once it is taken out; either way
    /// it decompresses for a peer that does not accept the algorithm.
    #[cfg(feature = "lz4")]
    #[test]
    fn a_compressed_value_is_found_with_and_without_the_fingerprint() {
        use crate::Compression;
        use crate::protocol::{Compressor, raw_unless_accepted};
        let value = vec![7u8; 4000];
        let mut f = flagged(9, &[]);
        let value_at = f.len();
        f.extend_from_slice(&value);
        assert!(f.compress_value(value_at, Compressor::new(Compression::Lz4, 1)));
        // Inflated in place, the fingerprint kept.
        let mut raw = raw_unless_accepted(f.seal(), super::super::features::SCHEMA).unwrap();
        let raw = raw.seal();
        assert_eq!(raw[LEN_PREFIX + 1], FLAG_SCHEMA);
        assert_eq!(&raw[30..38], &9u64.to_be_bytes());
        assert_eq!(&raw[38..], &value[..]);
        // Stripped, then inflated.
        let mut stripped = strip_fingerprint(f.seal()).unwrap();
        let mut raw = raw_unless_accepted(stripped.seal(), 0).unwrap();
        let raw = raw.seal();
        assert_eq!(raw[LEN_PREFIX + 1], 0);
        assert_eq!(&raw[30..], &value[..]);
    }
}
