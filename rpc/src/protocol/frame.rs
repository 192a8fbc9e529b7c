//! Framing: the length prefix and fixed header, decoded without allocating
//! for claimed lengths, and encoded in place.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::{Frame, FrameError, Kind};

/// Bytes of the length prefix.
pub(crate) const LEN_PREFIX: usize = 4;
/// Bytes of the fixed header after the length prefix: kind, flags, call id.
pub(crate) const HEADER_LEN: usize = 10;

/// Decodes frames, refusing any whose length field exceeds `max_frame` before
/// reading (or reserving room for) its body.
#[derive(Debug)]
pub(crate) struct FrameCodec {
    max_frame: usize,
    /// Flags a frame may carry; any other refuses it.
    flags: u8,
}

impl FrameCodec {
    /// A codec that refuses frames over `max_frame` and every flag.
    pub(crate) fn new(max_frame: usize) -> Self {
        FrameCodec {
            max_frame,
            flags: 0,
        }
    }

    /// Accepts frames that carry `flags` (what the Hello said this side
    /// accepts), and refuses any other flag.
    pub(crate) fn accept_flags(&mut self, flags: u8) {
        self.flags = flags;
    }

    /// The largest frame length field accepted.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Whether a frame of `kind` may carry `flags`: only those accepted,
    /// metadata on Requests and Responses only, a schema fingerprint on
    /// Requests only.
    #[inline]
    pub(crate) fn allows(&self, kind: Kind, flags: u8) -> bool {
        let allowed = match kind {
            Kind::Request => self.flags,
            Kind::Response => self.flags & !super::FLAG_SCHEMA,
            _ => self.flags & !(super::FLAG_METADATA | super::FLAG_SCHEMA),
        };
        flags & !allowed == 0
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len < HEADER_LEN {
            return Err(FrameError::TooShort(len));
        }
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                size: len,
                limit: self.max_frame,
            });
        }
        if src.len() < LEN_PREFIX + len {
            // Deliberately no `reserve(len)`: a peer that claims 16 MiB and sends
            // nothing must not make us hold 16 MiB. The buffer grows as bytes arrive.
            return Ok(None);
        }
        let kind = Kind::from_u8(src[4]).ok_or(FrameError::UnknownKind(src[4]))?;
        let flags = src[5];
        if !self.allows(kind, flags) {
            return Err(FrameError::Flags(flags));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&src[LEN_PREFIX + 2..LEN_PREFIX + HEADER_LEN]);
        let call_id = u64::from_be_bytes(id);
        src.advance(LEN_PREFIX + HEADER_LEN);
        let payload = src.split_to(len - HEADER_LEN).freeze();
        Ok(Some(Frame {
            kind,
            flags,
            call_id,
            payload,
        }))
    }
}

/// Appends the head of a frame (length prefix, kind, flags, call id) to
/// `buf`, its length left 0 for [`seal_at`] to write once the payload
/// follows: frames encoded one after another into one buffer.
#[inline]
pub(crate) fn put_head(buf: &mut BytesMut, kind: Kind, call_id: u64) {
    let mut head = [0u8; LEN_PREFIX + HEADER_LEN];
    head[LEN_PREFIX] = kind as u8;
    head[LEN_PREFIX + 2..].copy_from_slice(&call_id.to_be_bytes());
    buf.extend_from_slice(&head);
}

/// Writes the length of the frame whose head [`put_head`] wrote at `start`
/// and whose payload runs to the end of `buf`.
#[inline]
pub(crate) fn seal_at(buf: &mut BytesMut, start: usize) {
    let len = (buf.len() - start - LEN_PREFIX) as u32;
    buf[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// Frames up to this many bytes, length prefix included, are built in place
/// rather than on the heap, so that a small request or reply, the common
/// case, costs no allocation and no free. A request's head takes 38 of
/// them (prefix, header, method id, budget, schema fingerprint).
pub(crate) const INLINE_FRAME: usize = 72;

/// A frame being encoded: the header is written first with a zero length and
/// patched by [`FrameBuf::seal`], so payloads are serialized straight into
/// the frame without a copy. Small frames stay in place; one that outgrows
/// [`INLINE_FRAME`] moves to the heap once.
#[derive(Debug)]
pub(crate) struct FrameBuf {
    store: Store,
}

#[derive(Debug)]
enum Store {
    Inline { len: u8, bytes: [u8; INLINE_FRAME] },
    Heap(BytesMut),
}

impl FrameBuf {
    #[inline]
    pub(crate) fn new(kind: Kind, call_id: u64, payload_hint: usize) -> Self {
        // One copy of the whole head (not four writes that each check room):
        // length (patched by `seal`), kind, flags, call id.
        const HEAD: usize = LEN_PREFIX + HEADER_LEN;
        let mut head = [0u8; HEAD];
        head[LEN_PREFIX] = kind as u8;
        head[LEN_PREFIX + 2..].copy_from_slice(&call_id.to_be_bytes());
        let store = if HEAD + payload_hint <= INLINE_FRAME {
            let mut bytes = [0; INLINE_FRAME];
            bytes[..HEAD].copy_from_slice(&head);
            Store::Inline {
                len: HEAD as u8,
                bytes,
            }
        } else {
            let mut buf = BytesMut::with_capacity(HEAD + payload_hint);
            buf.extend_from_slice(&head);
            Store::Heap(buf)
        };
        FrameBuf { store }
    }

    /// Takes back a frame that was finished but not sent (copies if shared).
    pub(crate) fn from_bytes(bytes: bytes::Bytes) -> Self {
        FrameBuf {
            store: Store::Heap(BytesMut::from(bytes)),
        }
    }

    /// Appends payload bytes.
    #[inline]
    pub(crate) fn extend_from_slice(&mut self, src: &[u8]) {
        if let Store::Inline { len, bytes } = &mut self.store {
            let at = usize::from(*len);
            if let Some(room) = bytes.get_mut(at..at + src.len()) {
                room.copy_from_slice(src);
                *len += src.len() as u8;
                return;
            }
        }
        self.heap(src.len()).extend_from_slice(src);
    }

    /// The frame's buffer, positioned after what was written so far (on the
    /// heap: a frame still in place moves there).
    pub(crate) fn payload_mut(&mut self) -> &mut BytesMut {
        self.heap(0)
    }

    /// The frame on the heap, moved there if it was in place, with room for
    /// `more` bytes then.
    fn heap(&mut self, more: usize) -> &mut BytesMut {
        if let Store::Inline { len, bytes } = &self.store {
            let len = usize::from(*len);
            let mut heap = BytesMut::with_capacity((len + more).max(4 * INLINE_FRAME));
            heap.extend_from_slice(&bytes[..len]);
            self.store = Store::Heap(heap);
        }
        match &mut self.store {
            Store::Heap(heap) => heap,
            Store::Inline { .. } => unreachable!("moved to the heap above"),
        }
    }

    /// The frame's bytes so far (its length not yet written).
    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.store {
            Store::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Store::Heap(heap) => heap,
        }
    }

    #[inline]
    fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.store {
            Store::Inline { len, bytes } => &mut bytes[..usize::from(*len)],
            Store::Heap(heap) => heap,
        }
    }

    /// Bytes of the whole frame so far, length prefix included.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::Inline { len, .. } => usize::from(*len),
            Store::Heap(heap) => heap.len(),
        }
    }

    /// Sets the frame's flags (see [`FLAG_METADATA`](super::FLAG_METADATA)).
    #[inline]
    pub(crate) fn set_flags(&mut self, flags: u8) {
        self.as_mut_slice()[LEN_PREFIX + 1] = flags;
    }

    /// Compresses the value, from `value_at` (counted from the start of the
    /// frame) to the end, if `with` says so (see
    /// [`compress_value`](super::compress_value)); true if it did.
    pub(crate) fn compress_value(&mut self, value_at: usize, with: super::Compressor) -> bool {
        if !with.wants(self.len().saturating_sub(value_at)) {
            return false;
        }
        super::compress_value(self.payload_mut(), 0, value_at, with)
    }

    /// Rewrites the call id (the client learns it only when the call is sent).
    #[inline]
    pub(crate) fn set_call_id(&mut self, call_id: u64) {
        self.patch_u64(6, call_id);
    }

    /// Overwrites 8 bytes at `offset` (from the start of the frame) with `v`, big-endian.
    #[inline]
    pub(crate) fn patch_u64(&mut self, offset: usize, v: u64) {
        self.as_mut_slice()[offset..offset + 8].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes the length field and returns the frame's bytes.
    pub(crate) fn finish(mut self) -> bytes::Bytes {
        self.seal();
        match self.store {
            Store::Inline { len, bytes } => {
                bytes::Bytes::copy_from_slice(&bytes[..usize::from(len)])
            }
            Store::Heap(heap) => heap.freeze(),
        }
    }

    /// Writes the length field and returns the whole frame, keeping the
    /// buffer (to copy it out, and to patch and send it again).
    #[inline]
    pub(crate) fn seal(&mut self) -> &[u8] {
        let frame = self.as_mut_slice();
        let len = (frame.len() - LEN_PREFIX) as u32;
        frame[0..4].copy_from_slice(&len.to_be_bytes());
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn decode_all(max: usize, bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        FrameCodec::new(max).decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn golden_bytes_of_a_cancel_frame() {
        let frame = FrameBuf::new(Kind::Cancel, 0x0102_0304_0506_0708, 0).finish();
        assert_eq!(
            &frame[..],
            &[0, 0, 0, 10, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            "length 10, kind 4 (Cancel), flags 0, call id big-endian"
        );
    }

    #[test]
    fn golden_bytes_of_a_frame_with_payload_and_patched_id() {
        let mut f = FrameBuf::new(Kind::Response, 0, 3);
        f.payload_mut().extend_from_slice(&[0xAA, 0xBB, 0xCC]);
        f.set_call_id(7);
        assert_eq!(
            &f.finish()[..],
            &[0, 0, 0, 13, 3, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0xAA, 0xBB, 0xCC]
        );
    }

    /// A frame built in place and one that outgrew it are the same bytes as
    /// one built on the heap from the start, patched the same way.
    #[test]
    fn frames_in_place_and_on_the_heap_are_the_same_bytes() {
        for size in [0, 1, INLINE_FRAME - 14, INLINE_FRAME - 13, 1000] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut small = FrameBuf::new(Kind::Response, 1, 0);
            for chunk in payload.chunks(7) {
                small.extend_from_slice(chunk);
            }
            small.set_call_id(42);
            let mut heap = FrameBuf::new(Kind::Response, 1, 10_000);
            heap.payload_mut().extend_from_slice(&payload);
            heap.set_call_id(42);
            assert_eq!(small.len(), 14 + size);
            let sealed = small.seal().to_vec();
            assert_eq!(sealed, heap.seal(), "{size} bytes");
            assert_eq!(&small.finish()[..], &sealed[..]);
            assert_eq!(&heap.finish()[..], &sealed[..]);
            let mut len = [0; 4];
            len.copy_from_slice(&sealed[..4]);
            assert_eq!(u32::from_be_bytes(len) as usize, 10 + size);
        }
    }

    #[test]
    fn decodes_a_frame_and_leaves_the_next_one() {
        let mut f = FrameBuf::new(Kind::Ping, 9, 0).finish().to_vec();
        f.extend_from_slice(&[0, 0]); // start of another frame
        let mut buf = BytesMut::from(&f[..]);
        let frame = FrameCodec::new(64).decode(&mut buf).unwrap().unwrap();
        assert_eq!((frame.kind, frame.call_id), (Kind::Ping, 9));
        assert_eq!(frame.payload, Bytes::new());
        assert_eq!(&buf[..], &[0, 0]);
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        let whole = FrameBuf::new(Kind::Cancel, 1, 0).finish();
        for cut in 0..whole.len() {
            assert!(
                decode_all(64, &whole[..cut]).unwrap().is_none(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn oversized_length_is_refused_from_the_prefix_alone() {
        // Claims 4 GiB and sends 4 bytes: refused without waiting or allocating.
        let err = decode_all(1 << 20, &[0xFF, 0xFF, 0xFF, 0xFF]).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                size: 0xFFFF_FFFF,
                limit: 1_048_576
            }
        ));
    }

    #[test]
    fn short_length_unknown_kind_and_flags_are_refused() {
        assert!(matches!(
            decode_all(64, &[0, 0, 0, 3, 1, 0, 0]),
            Err(FrameError::TooShort(3))
        ));
        let mut f = FrameBuf::new(Kind::Ping, 0, 0).finish().to_vec();
        f[4] = 99;
        assert!(matches!(
            decode_all(64, &f),
            Err(FrameError::UnknownKind(99))
        ));
        f[4] = Kind::Ping as u8;
        f[5] = 1;
        assert!(matches!(decode_all(64, &f), Err(FrameError::Flags(1))));
    }
}
