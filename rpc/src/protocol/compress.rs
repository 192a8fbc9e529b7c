//! Compressed values ([`FLAG_COMPRESSED`]): the one function that decides
//! whether to compress an encoded frame's value and rewrites it in place
//! ([`compress_value`]), and the one that undoes it on arrival
//! ([`inflate`]), which the frame reader calls before anything else sees
//! the frame.
//!
//! A compressed value is `algorithm u8, decompressed length u32 BE`, then
//! the compressed bytes (LZ4: a block without its own size prefix; zstd:
//! one frame).

use bytes::{BufMut, Bytes, BytesMut};

use super::{FLAG_COMPRESSED, FLAG_METADATA, Frame, HEADER_LEN, Kind, LEN_PREFIX, RequestHead};
use crate::Compression;

/// Bytes in front of the compressed bytes: algorithm, decompressed length.
pub(crate) const VALUE_HEAD: usize = 5;

/// zstd's own default level: most of its ratio at several hundred MB/s.
#[cfg(feature = "zstd")]
const ZSTD_LEVEL: i32 = 3;

/// How a side compresses what it sends to one peer: the algorithm (already
/// one the peer advertised, or `None`) and the smallest value worth it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compressor {
    pub(crate) algorithm: Compression,
    /// Bytes (a `u32`: requests and replies carry this by value).
    pub(crate) threshold: u32,
}

impl Compressor {
    pub(crate) fn new(algorithm: Compression, threshold: usize) -> Self {
        Compressor {
            algorithm,
            threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
        }
    }

    /// Sends everything as it is (the bench hooks' replies).
    #[cfg(feature = "hooks")]
    pub(crate) const OFF: Compressor = Compressor {
        algorithm: Compression::None,
        threshold: u32::MAX,
    };

    /// Whether a value of `len` bytes is one to try.
    #[inline]
    pub(crate) fn wants(&self, len: usize) -> bool {
        self.algorithm != Compression::None && len >= self.threshold as usize
    }
}

/// Compresses the value of the frame that starts at `start` in `buf` and
/// runs to its end, the value starting at `value_at` (both indexes into
/// `buf`), if `with` wants a value that long and the result is at least an
/// eighth smaller (the flag and the 5 bytes in front included); then sets
/// [`FLAG_COMPRESSED`] and the frame's length. Otherwise (or if the
/// algorithm fails) the frame stays exactly as it was. True if compressed.
pub(crate) fn compress_value(
    buf: &mut BytesMut,
    start: usize,
    value_at: usize,
    with: Compressor,
) -> bool {
    let len = buf.len() - value_at;
    if !with.wants(len) || u32::try_from(len).is_err() {
        return false;
    }
    // Anything that does not fit here is not worth sending (zstd stops as
    // soon as it runs out of room).
    let room = (len - len / 8).saturating_sub(VALUE_HEAD);
    let Some(packed) = pack(with.algorithm, &buf[value_at..], room) else {
        return false;
    };
    buf.truncate(value_at);
    buf.reserve(VALUE_HEAD + packed.len());
    buf.put_u8(with.algorithm.wire_id());
    buf.put_u32(len as u32);
    buf.extend_from_slice(&packed);
    buf[start + LEN_PREFIX + 1] |= FLAG_COMPRESSED;
    let frame_len = (buf.len() - start - LEN_PREFIX) as u32;
    buf[start..start + LEN_PREFIX].copy_from_slice(&frame_len.to_be_bytes());
    true
}

/// `value` compressed with `algorithm` in at most `room` bytes, if it fits.
fn pack(algorithm: Compression, value: &[u8], room: usize) -> Option<Vec<u8>> {
    let _ = (value, room);
    match algorithm {
        #[cfg(feature = "lz4")]
        Compression::Lz4 => {
            // LZ4 wants room for its worst case, and cannot stop early.
            let out = lz4_flex::block::compress(value);
            (out.len() <= room).then_some(out)
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let mut out = Vec::with_capacity(room);
            let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?;
            zstd.compress_to_buffer(value, &mut out).ok()?;
            Some(out)
        }
        _ => None,
    }
}

/// Where the value starts in the payload of a `kind` frame with `flags`:
/// after a Request's head (and schema fingerprint if flagged), a Response's
/// status, and the metadata block if one is flagged.
fn value_offset(kind: Kind, flags: u8, payload: &[u8]) -> Result<usize, String> {
    let fixed = match kind {
        Kind::Request => RequestHead::LEN + super::fingerprint_len(flags),
        Kind::Response => 1,
        Kind::StreamItem => 0,
        other => return Err(format!("a {other:?} frame may not be compressed")),
    };
    if flags & FLAG_METADATA == 0 || kind == Kind::StreamItem {
        return Ok(fixed);
    }
    let len = payload
        .get(fixed..fixed + 4)
        .ok_or("the frame ends inside its metadata block's length")?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    Ok(fixed + 4 + len)
}

/// `frame` with its value decompressed in place and [`FLAG_COMPRESSED`]
/// cleared (and the algorithm it used), or why it cannot be: an algorithm
/// not in `accepted` (Hello feature bits), a claimed length that would make
/// the frame longer than `max_frame` (refused before anything is
/// allocated), or bytes that do not decompress to exactly that length.
pub(crate) fn inflate(
    frame: Frame,
    accepted: u32,
    max_frame: usize,
) -> Result<(Frame, Compression), String> {
    let at = value_offset(frame.kind, frame.flags, &frame.payload)?;
    let value = frame
        .payload
        .get(at..)
        .filter(|v| v.len() >= VALUE_HEAD)
        .ok_or("the frame is too short for its compressed value's head")?;
    let algorithm = Compression::from_wire(value[0])
        .ok_or_else(|| format!("unknown compression algorithm {}", value[0]))?;
    if accepted & algorithm.feature() == 0 {
        return Err(format!(
            "compressed with {algorithm:?}, which this side did not advertise"
        ));
    }
    let claimed = u32::from_be_bytes([value[1], value[2], value[3], value[4]]) as usize;
    if HEADER_LEN + at + claimed > max_frame {
        return Err(format!(
            "the value claims {claimed} bytes decompressed, over the {max_frame}-byte frame limit"
        ));
    }
    // Zeroed memory: large buffers come from fresh pages, which cost
    // nothing until the decompressor writes them.
    let mut out = vec![0u8; at + claimed];
    out[..at].copy_from_slice(&frame.payload[..at]);
    let n = unpack(algorithm, &value[VALUE_HEAD..], &mut out[at..])?;
    if n != claimed {
        return Err(format!(
            "the value decompressed to {n} bytes, not the {claimed} it claimed"
        ));
    }
    let frame = Frame {
        flags: frame.flags & !FLAG_COMPRESSED,
        payload: Bytes::from(out),
        ..frame
    };
    Ok((frame, algorithm))
}

/// Decompresses `packed` into `out`; the bytes written.
fn unpack(algorithm: Compression, packed: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let _ = (packed, &out);
    match algorithm {
        #[cfg(feature = "lz4")]
        Compression::Lz4 => {
            lz4_flex::block::decompress_into(packed, out).map_err(|e| format!("bad LZ4 data: {e}"))
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => zstd::bulk::Decompressor::new()
            .and_then(|mut z| z.decompress_to_buffer(packed, out))
            .map_err(|e| format!("bad zstd data: {e}")),
        other => Err(format!("{other:?} is not built in")),
    }
}

/// The whole encoded frame `frame` with its value decompressed again, if it
/// is compressed with an algorithm that `peer_features` does not include: a
/// request compressed for one server and then sent to another (a reconnect,
/// a retry elsewhere) goes out as the new peer accepts it.
pub(crate) fn raw_unless_accepted(frame: &[u8], peer_features: u32) -> Option<super::FrameBuf> {
    let head = frame.get(..LEN_PREFIX + HEADER_LEN)?;
    if head[LEN_PREFIX + 1] & FLAG_COMPRESSED == 0 {
        return None;
    }
    let kind = Kind::from_u8(head[LEN_PREFIX])?;
    let flags = head[LEN_PREFIX + 1];
    let payload = &frame[LEN_PREFIX + HEADER_LEN..];
    let at = value_offset(kind, flags, payload).ok()?;
    let algorithm = Compression::from_wire(*payload.get(at)?)?;
    if peer_features & algorithm.feature() != 0 {
        return None;
    }
    let call_id = u64::from_be_bytes(head[LEN_PREFIX + 2..].try_into().ok()?);
    let compressed = Frame {
        kind,
        flags,
        call_id,
        payload: Bytes::copy_from_slice(payload),
    };
    // Our own frame: it decompresses, and fits (it was at most this long).
    let (raw, _) = inflate(compressed, crate::compression::built_features(), usize::MAX).ok()?;
    let mut f = super::FrameBuf::new(kind, call_id, raw.payload.len());
    f.payload_mut().extend_from_slice(&raw.payload);
    f.payload_mut()[LEN_PREFIX + 1] = raw.flags;
    Some(f)
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
