//! Byte buffers as one block instead of element by element.
//!
//! serde sees a `Vec<u8>` as a sequence of `u8`s and encodes it with one
//! serializer call per byte, where one copy would do. The generated code
//! already carries `Vec<u8>` and `&[u8]` arguments and return values as
//! bytes; for a byte field inside your own type, use this module:
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Blob {
//!     name: String,
//!     #[serde(with = "rpc::bytes")]
//!     data: Vec<u8>,
//! }
//! ```
//!
//! The encoding is the same as the element-by-element one (a length, then the
//! bytes), so a peer that does not use it still understands it.

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Serializes bytes as one block (for `#[serde(with = "rpc::bytes")]`).
///
/// # Errors
///
/// Whatever the serializer returns.
pub fn serialize<T: AsRef<[u8]> + ?Sized, S: Serializer>(
    bytes: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes.as_ref())
}

/// Deserializes bytes written by [`serialize`] or as a sequence of `u8`.
///
/// # Errors
///
/// Whatever the deserializer returns.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    // `deserialize_bytes`, not `_byte_buf`: decoding from a frame, bincode lends
    // the bytes and they are copied once; `_byte_buf` would zero-fill a new
    // buffer and then copy into it.
    deserializer.deserialize_bytes(ByteBufVisitor)
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// Borrowed bytes that serialize as one block (used by generated code).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct BytesRef<'a>(pub &'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Owned bytes that deserialize as one block (used by generated code).
#[doc(hidden)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByteBuf(pub Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(ByteBuf)
    }
}

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn block_encoding_is_the_same_bytes_as_element_by_element() {
        let data: Vec<u8> = (0..=255).chain(0..100).collect();
        let mut block = BytesMut::new();
        crate::codec::encode_into(&BytesRef(&data), &mut block, usize::MAX).unwrap();
        let mut plain = BytesMut::new();
        crate::codec::encode_into(&data, &mut plain, usize::MAX).unwrap();
        assert_eq!(block, plain);
        assert_eq!(crate::codec::decode::<ByteBuf>(&plain).unwrap().0, data);
        assert_eq!(crate::codec::decode::<Vec<u8>>(&block).unwrap(), data);
    }
}
