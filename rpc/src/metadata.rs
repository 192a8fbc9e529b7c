//! Per-call metadata: small key/value pairs that travel with a call (an auth
//! token, a request id, a trace context) beside its arguments, and back
//! with its reply.
//!
//! ```no_run
//! # #[rpc::service] trait Calc { async fn add(&self, a: i32, b: i32) -> i32; }
//! # async fn client(calc: CalcClient) -> Result<(), rpc::Error> {
//! // Client: every call made through this handle carries the pair.
//! let calc = calc.with_metadata("authorization", "Bearer s3cret");
//! // What the handler sent back, if you want it:
//! let (sum, reply) = rpc::metadata::capture(calc.add(2, 3)).await;
//! println!("{} (served by {:?})", sum?, reply.get_str("served-by"));
//! # Ok(()) }
//! # struct CalcImpl;
//! # impl Calc for CalcImpl {
//! async fn add(&self, a: i32, b: i32) -> i32 {
//!     // Server: the caller's metadata, and some sent back with the reply.
//!     let token = rpc::context::current().metadata().get_str("authorization").map(str::to_owned);
//!     rpc::context::set_reply_metadata("served-by", "node-1");
//!     a + b
//! }
//! # }
//! ```
//!
//! Keys are 1 to 255 bytes of lowercase ASCII letters, digits, `-`, `_` and
//! `.` (as gRPC's); values are any bytes. A key may appear more than once.
//! Each side bounds the metadata it sends and accepts per call
//! ([`DEFAULT_MAX_METADATA`], `max_metadata` on both builders): a call whose
//! metadata is over the limit or malformed fails with
//! [`Error::InvalidMetadata`](crate::Error::InvalidMetadata), and the
//! connection stays up. Deadlines are not metadata: they travel in their
//! own field.
//!
//! On the wire (see [`crate::protocol`]) a Request or Response flagged as
//! carrying metadata has a block of `u32 BE length` and then, per pair,
//! `key length u8, key, value length u32 BE, value`.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BufMut;

/// Bytes of metadata per call (the pairs as encoded, lengths included)
/// each side sends and accepts unless its builder's `max_metadata` says
/// otherwise: 8 KiB, gRPC's default limit on a call's metadata
/// (`grpc.max_metadata_size`), which HTTP/2 servers commonly match with
/// their header list limit.
pub const DEFAULT_MAX_METADATA: usize = 8 * 1024;

/// Key/value pairs of one call, in the order they were added.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, Vec<u8>)>,
}

impl Metadata {
    /// No pairs.
    pub const fn new() -> Self {
        Metadata {
            entries: Vec::new(),
        }
    }

    /// Adds a pair (after any with the same key). The key is checked when a
    /// call sends it: one that is not lowercase ASCII fails the call.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.entries.push((key.into(), value.into()));
        self
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        let (_, value) = self.entries.iter().find(|(k, _)| k == key)?;
        Some(value)
    }

    /// The first value of `key`, if it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Removes every pair of `key`.
    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    /// Every pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No pairs at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every pair of `other` after these.
    pub(crate) fn extend(&mut self, other: &Metadata) {
        self.entries.extend(other.entries.iter().cloned());
    }

    /// Bytes of the pairs as encoded (the block without its length).
    fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v)| 1 + k.len() + 4 + v.len())
            .sum()
    }

    /// Checks the pairs against the rules and `max` bytes; why not, if not.
    pub(crate) fn check(&self, max: usize) -> Result<(), String> {
        for (key, _) in &self.entries {
            check_key(key.as_bytes())?;
        }
        let len = self.encoded_len();
        if len > max {
            return Err(format!(
                "the metadata is {len} bytes, over the limit of {max} (`max_metadata`)"
            ));
        }
        Ok(())
    }

    /// Appends the block (length, then the pairs) to `buf`; the pairs must
    /// have passed [`check`](Self::check).
    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u32(self.encoded_len() as u32);
        for (key, value) in &self.entries {
            buf.put_u8(key.len() as u8);
            buf.put_slice(key.as_bytes());
            buf.put_u32(value.len() as u32);
            buf.put_slice(value);
        }
    }

    /// Reads a block from the start of `bytes`: the metadata and the bytes
    /// it took. Refuses a block over `max` bytes before reading its pairs.
    pub(crate) fn decode(bytes: &[u8], max: usize) -> Result<(Metadata, usize), String> {
        let Some((len, rest)) = split_u32(bytes) else {
            return Err("the metadata block is cut short".into());
        };
        if len > max {
            return Err(format!(
                "the metadata is {len} bytes, over the limit of {max} (`max_metadata`)"
            ));
        }
        let mut pairs = rest
            .get(..len)
            .ok_or("the metadata block is longer than the frame")?;
        let mut metadata = Metadata::new();
        while let Some((&key_len, rest)) = pairs.split_first() {
            let key_len = usize::from(key_len);
            let (key, rest) = (rest.get(..key_len), rest.get(key_len..));
            let (Some(key), Some(rest)) = (key, rest) else {
                return Err("a metadata key runs past the block".into());
            };
            check_key(key)?;
            let (value_len, rest) = split_u32(rest).ok_or("a metadata value is cut short")?;
            let value = rest
                .get(..value_len)
                .ok_or("a metadata value runs past the block")?;
            // Checked above: lowercase ASCII.
            let key = String::from_utf8_lossy(key).into_owned();
            metadata.entries.push((key, value.to_vec()));
            pairs = &rest[value_len..];
        }
        Ok((metadata, 4 + len))
    }
}

/// Bytes of the block at the start of `bytes` (its length field included),
/// if the block fits in them.
pub(crate) fn block_len(bytes: &[u8]) -> Option<usize> {
    let (len, rest) = split_u32(bytes)?;
    (len <= rest.len()).then_some(4 + len)
}

fn split_u32(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*len) as usize, rest))
}

fn check_key(key: &[u8]) -> Result<(), String> {
    let allowed = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.');
    if key.is_empty() || key.len() > 255 || !key.iter().all(allowed) {
        return Err(format!(
            "the metadata key {:?} is not 1 to 255 bytes of lowercase ASCII letters, digits, \
             '-', '_' or '.'",
            String::from_utf8_lossy(key)
        ));
    }
    Ok(())
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (a token): their sizes only.
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(k, v)| (k, format!("<{} bytes>", v.len()))),
            )
            .finish()
    }
}

thread_local! {
    /// Where a call finishing on this thread puts its reply's metadata:
    /// set around each poll of a [`Captured`] future.
    static CAPTURE: RefCell<Option<Metadata>> = const { RefCell::new(None) };
}

/// Runs `call` and gives its output with the metadata its reply carried
/// (empty if none). Works with any future that makes calls: the metadata is
/// that of the last reply it received, from a call it awaited (a call
/// spawned elsewhere is not seen). Captures nest: a reply goes to the
/// innermost one around its call only.
///
/// Reply metadata that breaks the rules or this client's `max_metadata` is
/// dropped (and logged at debug level), not the reply: the handler ran.
pub fn capture<F: Future>(call: F) -> Captured<F> {
    Captured {
        call,
        metadata: Some(Metadata::new()),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`capture`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    #[derive(Debug)]
    pub struct Captured<F> {
        #[pin]
        call: F,
        metadata: Option<Metadata>,
    }
}

impl<F: Future> Future for Captured<F> {
    type Output = (F::Output, Metadata);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let previous = CAPTURE.with(|c| c.replace(this.metadata.take()));
        // Put back however the poll ends (a panic included).
        struct Restore<'a>(&'a mut Option<Metadata>, Option<Metadata>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                *self.0 = CAPTURE.with(|c| c.replace(self.1.take()));
            }
        }
        let restore = Restore(this.metadata, previous);
        let poll = this.call.poll(cx);
        drop(restore);
        match poll {
            Poll::Ready(out) => Poll::Ready((out, this.metadata.take().unwrap_or_default())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A reply's metadata, for the [`capture`] polling this call (if any).
pub(crate) fn deliver(metadata: Metadata) {
    CAPTURE.with(|c| {
        if let Some(slot) = c.borrow_mut().as_mut() {
            *slot = metadata;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        let mut m = Metadata::new();
        m.insert("authorization", "Bearer t")
            .insert("x-id", vec![0, 255]);
        m
    }

    #[test]
    fn golden_bytes_of_a_block() {
        let mut buf = Vec::new();
        let mut m = Metadata::new();
        m.insert("ab", "xyz");
        m.encode(&mut buf);
        assert_eq!(
            buf,
            [0, 0, 0, 10, 2, b'a', b'b', 0, 0, 0, 3, b'x', b'y', b'z']
        );
    }

    #[test]
    fn a_block_round_trips_and_says_how_long_it_was() {
        let mut buf = Vec::new();
        sample().encode(&mut buf);
        buf.extend_from_slice(b"args");
        let (back, used) = Metadata::decode(&buf, 1024).unwrap();
        assert_eq!(back, sample());
        assert_eq!(&buf[used..], b"args");
        assert_eq!(back.get_str("authorization"), Some("Bearer t"));
        assert_eq!(back.get("x-id"), Some(&[0, 255][..]));
    }

    #[test]
    fn bad_keys_and_oversize_blocks_are_refused() {
        for key in ["", "Upper", "sp ace", "ünï"] {
            let mut m = Metadata::new();
            m.insert(key, "v");
            assert!(m.check(1024).is_err(), "{key:?}");
        }
        assert!(Metadata::new().insert("k", vec![0; 100]).check(50).is_err());
        let mut buf = Vec::new();
        Metadata::new().insert("k", vec![0; 100]).encode(&mut buf);
        let err = Metadata::decode(&buf, 50).unwrap_err();
        assert!(err.contains("over the limit of 50"), "{err}");
    }

    #[test]
    fn hostile_blocks_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            &[],
            &[0, 0],
            &[0, 0, 0, 5, 1],
            &[0, 0, 0, 2, 9, b'a'],
            &[0, 0, 0, 6, 1, b'a', 0, 0, 0, 9],
            &[0, 0, 0, 3, 1, b'A', 0],
            &[0xff, 0xff, 0xff, 0xff],
        ];
        for bytes in cases {
            assert!(Metadata::decode(bytes, 1 << 20).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn debug_shows_keys_and_sizes_not_values() {
        let shown = format!("{:?}", sample());
        assert!(
            shown.contains("authorization") && !shown.contains("Bearer"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn capture_sees_what_a_call_delivers_and_nothing_outside_it() {
        let (out, got) = capture(async {
            deliver(sample());
            7
        })
        .await;
        assert_eq!((out, got), (7, sample()));
        deliver(sample()); // no capture: dropped
        let (_, nothing) = capture(async {}).await;
        assert!(nothing.is_empty());
    }
}
