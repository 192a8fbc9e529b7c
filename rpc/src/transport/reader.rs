//! The read half of a connection, decoded into frames.
//!
//! Like tokio-util's `FramedRead` over [`FrameCodec`], plus one thing it
//! cannot do: [`FrameReader::poll_closed`] reads ahead without handing out
//! frames, so a server that has stopped taking requests (every handler slot of
//! the connection is busy) still learns at once that the peer has gone, and
//! drops that peer's handlers then rather than when a write to the dead socket
//! fails.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use futures::Stream;
use tokio::io::AsyncRead;
use tokio_util::codec::Decoder;

use super::budget::{FREE_BYTES, Grant, ReadBudget};
use crate::Compression;
use crate::protocol::{
    FLAG_COMPRESSED, FLAG_SCHEMA, Frame, FrameCodec, FrameError, HEADER_LEN, INLINE_PAYLOAD,
    ItemRun, Kind, LEN_PREFIX, Payload, inflate,
};

/// Room for the first reads; the buffer grows as frames need.
const INITIAL_CAPACITY: usize = 8 * 1024;

/// What [`FrameReader::poll_incoming`] gives.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A frame of the kind asked for: its call id, its flags (none, or
    /// only [`FLAG_SCHEMA`]) and its payload.
    Of(u64, u8, Payload),
    /// StreamItem frames of one call, in a row (see [`ItemRun`]).
    Items(ItemRun),
    /// A frame of another kind.
    Frame(Frame),
}

/// Frames decoded from `io`, read into one buffer.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    codec: FrameCodec,
    /// The peer closed its side: a read returned nothing.
    eof: bool,
    /// A read failed: reported with the next frame asked for.
    failed: Option<std::io::Error>,
    /// The server's budget for frames still arriving (none on a client).
    budget: Option<ReadBudget>,
    /// The compression algorithms this side advertised (Hello feature
    /// bits): a compressed frame in any other is refused.
    compression: u32,
    /// The algorithm the frame handed out last came compressed with.
    inflated: Option<Compression>,
}

impl<R> FrameReader<R> {
    /// Bytes read and not yet handed out as frames.
    pub(crate) fn read_buffer(&self) -> &BytesMut {
        &self.buf
    }

    /// The frame being read waits for the server's budget.
    #[inline]
    pub(crate) fn waiting_for_budget(&self) -> bool {
        self.budget.as_ref().is_some_and(ReadBudget::waiting)
    }

    /// The budget's grant for the frame handed out last, if it needed one:
    /// held by its request until a handler starts.
    #[inline]
    pub(crate) fn take_grant(&mut self) -> Option<Grant> {
        self.budget.as_mut()?.take_grant()
    }

    /// The algorithm the frame handed out last came compressed with (it
    /// was decompressed before it was handed out), if it was: a server
    /// answers a compressed request in kind.
    #[inline]
    pub(crate) fn take_compressed(&mut self) -> Option<Compression> {
        self.inflated.take()
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R, codec: FrameCodec) -> Self {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(INITIAL_CAPACITY),
            codec,
            eof: false,
            failed: None,
            budget: None,
            compression: 0,
            inflated: None,
        }
    }

    /// Reads frames longer than [`FREE_BYTES`] only as `budget` grants
    /// them (see [`super::budget`]).
    pub(crate) fn with_budget(mut self, budget: ReadBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Changes the frame limit (after the handshake, which has its own).
    pub(crate) fn set_max_frame(&mut self, max_frame: usize) {
        self.codec = FrameCodec::new(max_frame);
    }

    /// Accepts frames flagged with `flags` (after the handshake, which
    /// accepts none).
    pub(crate) fn accept_flags(&mut self, flags: u8) {
        self.codec.accept_flags(flags);
    }

    /// Accepts values compressed with the algorithms whose Hello feature
    /// bits are in `features` (what this side advertised).
    pub(crate) fn accept_compression(&mut self, features: u32) {
        self.compression = features;
    }

    /// The next whole frame in the buffer, a compressed value decompressed
    /// in place and its flag cleared: the one place frames are
    /// decompressed, so nothing after the reader sees a compressed value.
    fn decode(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(frame) = self.codec.decode(&mut self.buf)? else {
            return Ok(None);
        };
        if frame.flags & FLAG_COMPRESSED == 0 {
            return Ok(Some(frame));
        }
        let (frame, algorithm) = inflate(frame, self.compression, self.codec.max_frame())
            .map_err(FrameError::Compression)?;
        self.inflated = Some(algorithm);
        Ok(Some(frame))
    }

    /// One read of at most `room` bytes.
    fn poll_read_upto(
        &mut self,
        cx: &mut Context<'_>,
        room: usize,
    ) -> Poll<std::io::Result<usize>> {
        self.buf.reserve(1);
        let mut limited = (&mut self.buf).limit(room);
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut limited
        ))?;
        if n == 0 {
            self.eof = true;
        }
        Poll::Ready(Ok(n))
    }

    /// The next frame: `None` once the peer closed between frames, an error
    /// if it closed in the middle of one or the read failed.
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, FrameError>>> {
        self.poll_with(cx, |r| r.decode().transpose())
    }

    /// As [`poll_frame`](Self::poll_frame), but a frame of `kind` comes as
    /// its call id and payload, a small payload copied out (see
    /// [`next_buffered`](Self::next_buffered)), and StreamItems of one call
    /// in a row come together, copied out as one [`ItemRun`]. Then nothing
    /// holds on to the read buffer, so the next read reuses it in place: a
    /// frame sliced out of it and still held by its receiver would make the
    /// next read move to a new buffer (an allocation, and a second one to
    /// share it again).
    pub(crate) fn poll_incoming(
        &mut self,
        cx: &mut Context<'_>,
        kind: Kind,
    ) -> Poll<Option<Result<Incoming, FrameError>>> {
        self.poll_with(cx, |r| {
            // A schema fingerprint (every request from a client of this
            // build) takes the fast path too.
            if let Some((call_id, flags, payload)) = r.next_buffered_with(kind, FLAG_SCHEMA) {
                return Some(Ok(Incoming::Of(call_id, flags, payload)));
            }
            if let Some(run) = ItemRun::take(&mut r.buf, r.codec.max_frame()) {
                return Some(Ok(Incoming::Items(run)));
            }
            // A frame the fast paths left: one with flags (decompressed
            // here) or a bad one. Decompressed and with no other flag, it
            // is handed out as the fast path would have.
            r.decode().transpose().map(|frame| {
                frame.map(|f| match f.flags & !FLAG_SCHEMA {
                    0 if f.kind == kind => Incoming::Of(f.call_id, f.flags, f.payload.into()),
                    _ => Incoming::Frame(f),
                })
            })
        })
    }

    /// What is buffered as `take` finds it, reading more until it finds
    /// something, the peer closes, or a read fails.
    fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut take: impl FnMut(&mut Self) -> Option<Result<T, FrameError>>,
    ) -> Poll<Option<Result<T, FrameError>>> {
        loop {
            self.inflated = None;
            if let Some(frame) = take(self) {
                if let Some(budget) = &mut self.budget {
                    budget.frame_taken();
                }
                return Poll::Ready(Some(frame));
            }
            if let Some(e) = self.failed.take() {
                return Poll::Ready(Some(Err(e.into())));
            }
            if self.eof {
                return Poll::Ready(if self.buf.is_empty() {
                    None
                } else {
                    Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the peer closed the connection {} bytes into a frame",
                            self.buf.len()
                        ),
                    )
                    .into()))
                });
            }
            let room = match &mut self.budget {
                None => usize::MAX,
                Some(budget) => {
                    let frame = self.buf.get(..LEN_PREFIX).map(|prefix| {
                        LEN_PREFIX
                            + u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]])
                                as usize
                    });
                    let room = ready!(budget.poll_room(cx, self.buf.len(), frame));
                    if frame.is_some_and(|len| len > FREE_BYTES) {
                        // Granted: one allocation for the whole frame (and
                        // the start of the next).
                        self.buf.reserve(room);
                    }
                    // Never 0: a read of nothing would look like the end.
                    room.max(1)
                }
            };
            if let Err(e) = ready!(self.poll_read_upto(cx, room)) {
                return Poll::Ready(Some(Err(e.into())));
            }
        }
    }

    /// The next frame if it is of `kind` and already whole in the buffer:
    /// its call id and payload (a small one copied out, see [`Payload`]).
    /// No read, and nothing taken otherwise (an error included, which the
    /// next [`poll_frame`](Self::poll_frame) reports).
    pub(crate) fn next_buffered(&mut self, kind: Kind) -> Option<(u64, Payload)> {
        self.next_buffered_with(kind, 0)
            .map(|(call_id, _, payload)| (call_id, payload))
    }

    /// As [`next_buffered`](Self::next_buffered), also taking a frame
    /// flagged with no more than `pass` (if this side accepts that on a
    /// frame of `kind`), and giving its flags.
    fn next_buffered_with(&mut self, kind: Kind, pass: u8) -> Option<(u64, u8, Payload)> {
        let head = self.buf.get(..LEN_PREFIX + HEADER_LEN)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        // A frame with other flags (metadata, compression), or flags this
        // side refuses, is left for `poll_frame`, which decompresses it and
        // hands it on flags and all (or reports the error).
        let flags = head[LEN_PREFIX + 1];
        let passed = flags & !pass == 0 && (flags == 0 || self.codec.allows(kind, flags));
        if head[LEN_PREFIX] != kind as u8 || !passed || self.buf.len() < LEN_PREFIX + len {
            return None;
        }
        // Whole, so the codec's checks that need no more bytes decide; the
        // small case repeats them here, to copy the payload out instead.
        let small = len >= HEADER_LEN
            && len - HEADER_LEN <= INLINE_PAYLOAD
            && len <= self.codec.max_frame();
        if small {
            let call_id = u64::from_be_bytes(head[LEN_PREFIX + 2..].try_into().ok()?);
            let payload =
                Payload::copy_small(&self.buf[LEN_PREFIX + HEADER_LEN..LEN_PREFIX + len])?;
            self.buf.advance(LEN_PREFIX + len);
            return Some((call_id, flags, payload));
        }
        match self.codec.decode(&mut self.buf) {
            Ok(Some(frame)) => Some((frame.call_id, frame.flags, frame.payload.into())),
            // A bad frame of this kind: the error is found again (the codec
            // takes nothing from the buffer when it refuses a frame).
            _ => None,
        }
    }

    /// For a reader that takes no frames for now: reads ahead, up to `limit`
    /// bytes buffered, only to notice the peer leaving. Ready once the peer
    /// has closed its side or a read failed (the frames before that are
    /// still handed out by [`poll_frame`](Self::poll_frame)); with `limit`
    /// bytes buffered it reads no more, and waits for ever.
    pub(crate) fn poll_closed(&mut self, cx: &mut Context<'_>, limit: usize) -> Poll<()> {
        loop {
            if self.eof || self.failed.is_some() {
                return Poll::Ready(());
            }
            if self.buf.len() >= limit {
                return Poll::Pending;
            }
            match ready!(self.poll_read_upto(cx, limit - self.buf.len())) {
                Ok(_) => {}
                Err(e) => self.failed = Some(e),
            }
        }
    }
}

impl<R: AsyncRead + Unpin> Stream for FrameReader<R> {
    type Item = Result<Frame, FrameError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_frame(cx)
    }
}

#[cfg(test)]
mod tests;
