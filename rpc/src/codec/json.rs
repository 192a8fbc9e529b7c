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
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::{EncodeError, LimitedWriter, MAX_DEPTH, SPARE_ELEMENTS, Sink, guard};

/// The bincode writer's rule, for serde_json's `io::Write`: bytes past the
/// limit are counted, not stored, so a value too large is reported with its
/// real size without being held.
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
    let mut w = LimitedWriter::new(buf, limit);
    let written = serde_json::to_writer(&mut w, value);
    w.outcome(written.map_err(|e| e.to_string()))
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

/// Decodes a Response's value: as [`decode`], except that a 1-tuple at the
/// top is also read from its bare element. Generated clients decode a
/// method's scalar return value (`5`, as the server sends it) as a 1-tuple
/// (in bincode the same bytes); a value that is a 1-tuple (a method that
/// returns `(u64,)`) is an array (`[5]`), and a bare scalar never begins
/// with `[`, so the first byte tells the two apart.
pub(crate) fn decode_reply<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return decode(bytes);
    }
    let limits = guard::Limits {
        max_depth: MAX_DEPTH,
        max_elements: bytes.len().saturating_add(SPARE_ELEMENTS),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = guard::deserialize(BareTuple(&mut de), limits).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A deserializer that reads a 1-tuple as its bare element, and anything
/// else as `D` does.
struct BareTuple<D>(D);

/// Forwards `deserialize_*` methods to the inner deserializer.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for BareTuple<D> {
    type Error = D::Error;

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if len == 1 {
            visitor.visit_seq(OneElement(Some(self.0)))
        } else {
            self.0.deserialize_tuple(len, visitor)
        }
    }

    forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The one element of a bare 1-tuple: the whole input.
struct OneElement<D>(Option<D>);

impl<'de, D: Deserializer<'de>> SeqAccess<'de> for OneElement<D> {
    type Error = D::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, D::Error> {
        self.0.take().map(|de| seed.deserialize(de)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.0.is_some()))
    }
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
    fn a_scalar_reply_is_the_bare_value_and_a_tuple_reply_an_array() {
        assert_eq!(decode_reply::<(i64,)>(b" -5").unwrap(), (-5,));
        assert_eq!(decode_reply::<(i64,)>(b"[5]").unwrap(), (5,));
        assert_eq!(decode_reply::<Vec<u8>>(b"[5]").unwrap(), vec![5]);
        decode_reply::<()>(b"null").unwrap();
        assert_eq!(decode_reply::<(u8, u8)>(b"[1,2]").unwrap(), (1, 2));
        assert_eq!(decode_reply::<Option<u8>>(b"7").unwrap(), Some(7));
        assert!(decode_reply::<(i64,)>(b"5 x").is_err());
        assert!(decode_reply::<(i64,)>(b"").is_err());
        let err = decode_reply::<(String,)>(b"5").unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
        let deep = "{\"a\":".repeat(100_000);
        assert!(decode_reply::<serde_json::Value>(deep.as_bytes()).is_err());
    }
}
