//! Payload serialization: bincode 2 over serde, behind this one seam, and
//! JSON beside it (feature `json`, see [`Format`] and `json.rs`). Which one
//! a value goes through is a connection's choice, made at the handshake: a
//! `match` on the [`Format`] per encode or decode, nothing boxed.
//!
//! Peer bytes are never trusted. Every decode here:
//! - caps what bincode may allocate with `with_limit`: bincode 2 trusts length
//!   prefixes, and without a limit a 13-byte frame claiming a 2^40-byte string
//!   aborts the whole process. bincode counts every primitive at its in-memory
//!   size (a one-byte varint `u128` claims 16 bytes), so the cap is 16x the
//!   payload, rounded up to a power of four, and at least 64 KiB;
//! - refuses nesting deeper than [`MAX_DEPTH`] (a 200,000-deep recursive value
//!   in 200 KB would otherwise overflow the stack and abort the process), and
//!   more sequence elements than the payload could hold (a `Vec<()>` claiming
//!   2^63 elements would otherwise spin forever): see [`guard`];
//! - refuses trailing bytes.

mod format;
mod guard;
#[cfg(feature = "json")]
mod json;

pub use format::Format;
pub(crate) use format::{Formats, refused};

use bytes::BytesMut;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The deepest nesting a decoded value may have. serde_json uses 128.
pub(crate) const MAX_DEPTH: usize = 128;
/// Sequence elements allowed beyond one per payload byte (for zero-sized elements).
const SPARE_ELEMENTS: usize = 4096;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Why a value could not be encoded.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// The encoding would have made the buffer `size` bytes long in all,
    /// more than `limit`.
    TooLarge { size: usize, limit: usize },
    /// serde refused the value (for example a sequence of unknown length).
    Serde(String),
}

/// Where encoded bytes go: a plain buffer, or a frame being built.
pub(crate) trait Sink {
    fn len(&self) -> usize;
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    #[inline]
    fn len(&self) -> usize {
        BytesMut::len(self)
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for crate::protocol::FrameBuf {
    #[inline]
    fn len(&self) -> usize {
        crate::protocol::FrameBuf::len(self)
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Writes into a buffer up to a limit. Past it, bytes are counted and not
/// stored, so that a value too large is reported with its real size (a user
/// raising the limit needs to know by how much) without holding it.
struct LimitedWriter<'a, S: ?Sized> {
    buf: &'a mut S,
    limit: usize,
    /// Bytes that did not fit.
    skipped: usize,
}

impl<'a, S: Sink + ?Sized> LimitedWriter<'a, S> {
    fn new(buf: &'a mut S, limit: usize) -> Self {
        LimitedWriter {
            buf,
            limit,
            skipped: 0,
        }
    }

    /// What writing a value came to, given what its serializer said.
    fn outcome(&self, written: Result<(), String>) -> Result<(), EncodeError> {
        match written {
            Ok(()) if self.skipped == 0 => Ok(()),
            Ok(()) => Err(EncodeError::TooLarge {
                size: self.buf.len() + self.skipped,
                limit: self.limit,
            }),
            Err(e) => Err(EncodeError::Serde(e)),
        }
    }
}

impl<S: Sink + ?Sized> bincode::enc::write::Writer for LimitedWriter<'_, S> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        if self.buf.len() + bytes.len() > self.limit {
            // Later, smaller pieces may still fit and be stored: the buffer
            // is garbage once anything was skipped, but the count is exact.
            self.skipped += bytes.len();
            return Ok(());
        }
        // bincode writes a value a primitive at a time, most of them one
        // byte (small varints, tags): a copy of known length is one store,
        // not a call to memcpy.
        match *bytes {
            [b] => self.buf.put(&[b]),
            _ => self.buf.put(bytes),
        }
        Ok(())
    }
}

/// Appends `value` to `buf`, failing if `buf` would exceed `limit` bytes in
/// all. Past the limit `buf` does not grow, and its contents are garbage.
pub(crate) fn encode_into<T: Serialize + ?Sized, S: Sink + ?Sized>(
    value: &T,
    buf: &mut S,
    limit: usize,
) -> Result<(), EncodeError> {
    let mut w = LimitedWriter::new(buf, limit);
    let written = bincode::serde::encode_into_writer(value, &mut w, config());
    w.outcome(written.map_err(|e| e.to_string()))
}

/// [`encode_into`] in `format`.
#[inline]
pub(crate) fn encode_as<T: Serialize + ?Sized, S: Sink + ?Sized>(
    format: Format,
    value: &T,
    buf: &mut S,
    limit: usize,
) -> Result<(), EncodeError> {
    match format {
        Format::Bincode => encode_into(value, buf, limit),
        #[cfg(feature = "json")]
        Format::Json => json::encode_into(value, buf, limit),
    }
}

/// [`decode`] in `format`.
#[inline]
pub(crate) fn decode_as<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T, String> {
    match format {
        Format::Bincode => decode(bytes),
        #[cfg(feature = "json")]
        Format::Json => json::decode(bytes),
    }
}

/// [`decode_flat`] in `format`, for arguments (in JSON, a tuple is an array
/// like any other, and the guard costs little beside the parsing).
#[inline]
pub(crate) fn decode_flat_as<T: FlatArgs>(format: Format, bytes: &[u8]) -> Result<T, String> {
    match format {
        Format::Bincode => decode_flat(bytes),
        #[cfg(feature = "json")]
        Format::Json => json::decode(bytes),
    }
}

/// The decoder of a `T` in `format`, for a call or stream to keep.
#[inline]
pub(crate) fn decoder<T: DeserializeOwned>(format: Format) -> fn(&[u8]) -> Result<T, String> {
    match format {
        Format::Bincode => decode::<T>,
        #[cfg(feature = "json")]
        Format::Json => json::decode::<T>,
    }
}

/// The decoder of a Response's value `T` in `format`: in JSON, a 1-tuple
/// may be its bare element (see `json::decode_reply`), as generated clients
/// decode a scalar return value.
#[inline]
pub(crate) fn reply_decoder<T: DeserializeOwned>(format: Format) -> fn(&[u8]) -> Result<T, String> {
    match format {
        Format::Bincode => decode::<T>,
        #[cfg(feature = "json")]
        Format::Json => json::decode_reply::<T>,
    }
}

/// As [`reply_decoder`], for a value of primitive scalars: in bincode
/// without the guard ([`decode_flat`]).
#[inline]
pub(crate) fn flat_reply_decoder<T: FlatArgs>(format: Format) -> fn(&[u8]) -> Result<T, String> {
    match format {
        Format::Bincode => decode_flat::<T>,
        #[cfg(feature = "json")]
        Format::Json => json::decode_reply::<T>,
    }
}

/// Decodes a `T` that must fill `bytes` exactly, safely against hostile input.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let claim = bytes.len().saturating_mul(16);
    // One branch per power of four: `with_limit` takes a const.
    if claim <= 0x1_0000 {
        decode_limited::<T, 0x1_0000>(bytes)
    } else if claim <= 0x4_0000 {
        decode_limited::<T, 0x4_0000>(bytes)
    } else if claim <= 0x10_0000 {
        decode_limited::<T, 0x10_0000>(bytes)
    } else if claim <= 0x40_0000 {
        decode_limited::<T, 0x40_0000>(bytes)
    } else if claim <= 0x100_0000 {
        decode_limited::<T, 0x100_0000>(bytes)
    } else if claim <= 0x400_0000 {
        decode_limited::<T, 0x400_0000>(bytes)
    } else if claim <= 0x1000_0000 {
        decode_limited::<T, 0x1000_0000>(bytes)
    } else if claim <= 0x4000_0000 {
        decode_limited::<T, 0x4000_0000>(bytes)
    } else {
        // Payloads past 64 MiB (a raised frame limit) get a 16 GiB cap: still far
        // from the 2^40-byte claims that abort the process.
        decode_limited::<T, { 1 << 34 }>(bytes)
    }
}

/// Decodes a `T` of scalars only (see [`FlatArgs`]) that must fill `bytes`
/// exactly. Such a value nests nothing and holds nothing to allocate, so it
/// needs neither the guard nor a limit: a read past the end is an error.
pub(crate) fn decode_flat<T: FlatArgs>(bytes: &[u8]) -> Result<T, String> {
    let (value, read) =
        bincode::serde::decode_from_slice::<T, _>(bytes, config()).map_err(|e| e.to_string())?;
    if read != bytes.len() {
        return Err(format!(
            "{} unexpected trailing bytes after the value",
            bytes.len() - read
        ));
    }
    Ok(value)
}

mod sealed {
    pub trait Sealed {}
}

/// A primitive scalar: `bool`, `char`, a float or an integer.
#[doc(hidden)]
pub trait Scalar: sealed::Sealed {}

/// Method arguments that are all primitive scalars, as the tuple the
/// client sends: generated servers decode these without the guard (nothing
/// in them can nest or claim a length). Implemented only here, so a name
/// that only looks like a primitive fails to compile rather than skip the
/// guard.
#[doc(hidden)]
pub trait FlatArgs: DeserializeOwned + sealed::Sealed {}

macro_rules! scalars {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Scalar for $t {}
    )*};
}

scalars!(
    bool, char, f32, f64, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
);

macro_rules! flat_tuples {
    ($(($($t:ident),*))*) => {$(
        impl<$($t: Scalar + DeserializeOwned),*> sealed::Sealed for ($($t,)*) {}
        impl<$($t: Scalar + DeserializeOwned),*> FlatArgs for ($($t,)*) {}
    )*};
}

flat_tuples! {
    ()
    (A)
    (A, B)
    (A, B, C)
    (A, B, C, D)
    (A, B, C, D, E)
    (A, B, C, D, E, F)
    (A, B, C, D, E, F, G)
    (A, B, C, D, E, F, G, H)
    (A, B, C, D, E, F, G, H, I)
    (A, B, C, D, E, F, G, H, I, J)
    (A, B, C, D, E, F, G, H, I, J, K)
    (A, B, C, D, E, F, G, H, I, J, K, L)
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, String> {
    let limits = guard::Limits {
        max_depth: MAX_DEPTH,
        max_elements: bytes.len().saturating_add(SPARE_ELEMENTS),
    };
    let (value, read) = bincode::serde::seed_decode_from_slice(
        guard::Guarded::<T>::new(limits),
        bytes,
        config().with_limit::<LIMIT>(),
    )
    .map_err(|e| e.to_string())?;
    if read != bytes.len() {
        return Err(format!(
            "{} unexpected trailing bytes after the value",
            bytes.len() - read
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let mut buf = BytesMut::new();
        encode_into(&v, &mut buf, usize::MAX).unwrap();
        assert_eq!(decode::<T>(&buf).unwrap(), v);
    }

    #[test]
    fn values_round_trip() {
        round_trip((1i64, -2i32, "three".to_string()));
        round_trip(vec![u128::MAX, 0, 1]);
        round_trip(vec![0u64; 100_000]); // 1 byte each on the wire, 8 claimed
        round_trip(Some(BTreeMap::from([(1u8, vec!["a".to_string()])])));
        round_trip(());
    }

    #[test]
    fn string_length_bomb_is_an_error_not_an_abort() {
        // varint 253 = u64 follows: a string of 2^40 bytes, then nothing.
        let mut bytes = vec![253];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = decode::<String>(&bytes).unwrap_err();
        assert!(err.to_lowercase().contains("limit"), "{err}");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let err = decode::<u8>(&[1, 2]).unwrap_err();
        assert!(err.contains("trailing"), "{err}");
        assert!(decode::<u32>(&[]).is_err(), "truncated input");
    }

    /// Scalars decode alike with and without the guard, and the unguarded
    /// path refuses what the guarded one refuses: trailing bytes, input cut
    /// short anywhere.
    #[test]
    fn flat_decoding_matches_guarded_decoding() {
        fn both<T: FlatArgs + PartialEq + std::fmt::Debug + Serialize>(v: T) {
            let mut buf = BytesMut::new();
            encode_into(&v, &mut buf, usize::MAX).unwrap();
            assert_eq!(decode_flat::<T>(&buf).unwrap(), v);
            assert_eq!(decode::<T>(&buf).unwrap(), v);
            for cut in 0..buf.len() {
                assert!(decode_flat::<T>(&buf[..cut]).is_err(), "{v:?} cut at {cut}");
            }
            let mut longer = buf.to_vec();
            longer.push(0);
            let err = decode_flat::<T>(&longer).unwrap_err();
            assert!(err.contains("trailing"), "{err}");
        }
        both((i32::MIN, u64::MAX, true, 'é', -0.5f64));
        both((250u16, 251u32, -126i64, u128::MAX, i128::MIN));
        both((0u8, i8::MIN, usize::MAX, isize::MIN, f32::INFINITY));
        both(());
        both((7u32,));
    }

    /// A value over the limit is not stored past it, and is reported with
    /// the size it would have had.
    #[test]
    fn encode_stops_storing_at_the_limit_and_counts_the_real_size() {
        let mut exact = BytesMut::new();
        let big = (vec![7u8; 1000], "tail".to_string(), 1u8);
        encode_into(&big, &mut exact, usize::MAX).unwrap();
        let mut buf = BytesMut::from(&b"head"[..]);
        let err = encode_into(&big, &mut buf, 100).unwrap_err();
        assert!(buf.len() <= 100, "{} bytes stored", buf.len());
        let EncodeError::TooLarge { size, limit } = err else {
            panic!("{err:?}")
        };
        assert_eq!((size, limit), (4 + exact.len(), 100));
        // One byte over is over; the limit itself fits.
        let mut buf = BytesMut::new();
        let err = encode_into(&big, &mut buf, exact.len() - 1).unwrap_err();
        assert!(matches!(err, EncodeError::TooLarge { size, .. } if size == exact.len()));
        encode_into(&big, &mut BytesMut::new(), exact.len()).unwrap();
    }
}
