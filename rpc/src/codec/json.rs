//! The JSON format (feature `json`, [`Format::Json`](super::Format)):
//! serde_json behind the same seam and the same rules as bincode.
//!
//! Peer bytes are never trusted. Every decode here:
//! - runs under the [`guard`](super::guard) with bincode's limits, so a
//!   type decodes in JSON exactly when it would in bincode as far as depth
//!   goes ([`MAX_DEPTH`](super::MAX_DEPTH) values inside one another), and
//!   no element count beyond one per input byte is ever believed;
//!   serde_json's own limit of 128 nested arrays and objects stays on too
//!   (its `unbounded_depth` feature must never be enabled);
//! - reads a JSON text that must fill the bytes (whitespace after it
//!   aside), and must be UTF-8;
//! - allocates only for what it has read: JSON has no length prefixes, and
//!   sequences (byte buffers included) grow as elements arrive.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{EncodeError, FlatArgs, MAX_DEPTH, SPARE_ELEMENTS, Sink, guard};

/// The bincode writer's rule, for serde_json's `io::Write`: bytes past the
/// limit are counted, not stored, so a value too large is reported with its
/// real size without being held.
struct LimitedWriter<'a, S: ?Sized> {
    buf: &'a mut S,
    limit: usize,
    skipped: usize,
}

impl<S: Sink + ?Sized> std::io::Write for LimitedWriter<'_, S> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > self.limit {
            self.skipped += bytes.len();
        } else {
            self.buf.put(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `value` to `buf` as one JSON text, failing if `buf` would exceed
/// `limit` bytes in all (as [`super::encode_into`]).
pub(crate) fn encode_into<T: Serialize + ?Sized, S: Sink + ?Sized>(
    value: &T,
    buf: &mut S,
    limit: usize,
) -> Result<(), EncodeError> {
    let mut w = LimitedWriter {
        buf,
        limit,
        skipped: 0,
    };
    match serde_json::to_writer(&mut w, value) {
        Ok(()) if w.skipped == 0 => Ok(()),
        Ok(()) => Err(EncodeError::TooLarge {
            size: w.buf.len() + w.skipped,
            limit,
        }),
        Err(e) => Err(EncodeError::Serde(e.to_string())),
    }
}

/// Decodes a `T` from one JSON text that fills `bytes`, safely against
/// hostile input.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let limits = guard::Limits {
        max_depth: MAX_DEPTH,
        max_elements: bytes.len().saturating_add(SPARE_ELEMENTS),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = guard::deserialize(&mut de, limits).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Decodes the reply of a method returning primitive scalars, as
/// [`FlatArgs::from_json_reply`] says.
pub(crate) fn decode_flat_reply<T: FlatArgs>(bytes: &[u8]) -> Result<T, String> {
    T::from_json_reply(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use std::collections::BTreeMap;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let mut buf = BytesMut::new();
        encode_into(&v, &mut buf, usize::MAX).unwrap();
        assert_eq!(decode::<T>(&buf).unwrap(), v);
    }

    #[test]
    fn values_round_trip() {
        round_trip((1i64, -2i32, "three".to_string(), 'é'));
        round_trip(vec![u128::MAX, 0, 1]);
        round_trip(i128::MIN);
        round_trip(Some(BTreeMap::from([(1u8, vec!["a".to_string()])])));
        round_trip(Ok::<u8, String>(3));
        round_trip(Err::<u8, String>("no".into()));
        round_trip(());
        round_trip(crate::bytes::ByteBuf(vec![0, 1, 255]));
    }

    #[test]
    fn it_is_plain_json() {
        let mut buf = BytesMut::new();
        encode_into(&(1u8, "a", Some(true)), &mut buf, usize::MAX).unwrap();
        assert_eq!(&buf[..], br#"[1,"a",true]"#);
    }

    #[test]
    fn trailing_bytes_truncation_and_bad_utf8_are_refused() {
        let err = decode::<u8>(b"1 2").unwrap_err();
        assert!(err.contains("trailing"), "{err}");
        assert_eq!(decode::<u8>(b" 1 \n").unwrap(), 1);
        assert!(decode::<Vec<u8>>(b"[1,2").is_err());
        assert!(decode::<u32>(b"").is_err());
        let err = decode::<String>(b"\"a\xff\"").unwrap_err();
        assert!(err.contains("invalid unicode"), "{err}");
        let err = decode::<u8>(b"256").unwrap_err();
        assert!(err.contains("invalid value"), "{err}");
        let err = decode::<u64>(&[b'9'; 400]).unwrap_err();
        assert!(
            err.contains("out of range") || err.contains("invalid"),
            "{err}"
        );
        assert!(decode::<f64>(b"1e999999").is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    struct Endless(#[allow(dead_code)] Box<Endless>);

    /// Nesting far past the limit is an error, not a stack overflow, on a
    /// thread with a quarter of a tokio worker's 2 MiB stack too (in a
    /// debug build); nesting within it decodes.
    #[test]
    fn deep_nesting_is_an_error_even_on_a_small_stack() {
        let run = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(|| {
                let deep = [vec![b'['; 100_000], vec![b']'; 100_000]].concat();
                // serde_json's limit (128 arrays) or the guard's, whichever
                // comes first.
                let deeply = |e: &str| e.contains("recursion limit") || e.contains("nested deeper");
                let err = decode::<serde_json::Value>(&deep).unwrap_err();
                assert!(deeply(&err), "{err}");
                let err = decode::<Vec<Vec<Vec<u8>>>>(&deep).unwrap_err();
                assert!(err.contains("invalid type"), "{err}");
                let objects = "{\"a\":".repeat(100_000);
                assert!(decode::<serde_json::Value>(objects.as_bytes()).is_err());
                // A type that nests without brackets (a newtype of itself)
                // recurses without reading: only the guard stops it.
                let err = decode::<Endless>(b"1").unwrap_err();
                assert!(err.contains("nested deeper"), "{err}");
                let fine = [vec![b'['; 100], vec![b']'; 100]].concat();
                decode::<serde_json::Value>(&fine).unwrap();
            })
            .unwrap();
        run.join().unwrap();
    }

    #[test]
    fn encode_stops_storing_at_the_limit_and_counts_the_real_size() {
        let big = ("x".repeat(1000), 1u8);
        let mut exact = BytesMut::new();
        encode_into(&big, &mut exact, usize::MAX).unwrap();
        let mut buf = BytesMut::new();
        let err = encode_into(&big, &mut buf, 100).unwrap_err();
        assert!(buf.len() <= 100);
        assert!(
            matches!(err, EncodeError::TooLarge { size, limit: 100 } if size == exact.len()),
            "{err:?}"
        );
    }

    #[test]
    fn a_scalar_reply_is_the_bare_value() {
        assert_eq!(decode_flat_reply::<(i64,)>(b"-5").unwrap(), (-5,));
        decode_flat_reply::<()>(b"null").unwrap();
        assert!(decode_flat_reply::<(i64,)>(b"[5]").is_err());
        assert!(decode_flat_reply::<(i64,)>(b"5 x").is_err());
    }
}
