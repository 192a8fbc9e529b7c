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
    FLAG_COMPRESSED, Frame, FrameCodec, FrameError, HEADER_LEN, INLINE_PAYLOAD, ItemRun, Kind,
    LEN_PREFIX, Payload, inflate,
};

/// Room for the first reads; the buffer grows as frames need.
const INITIAL_CAPACITY: usize = 8 * 1024;

/// What [`FrameReader::poll_incoming`] gives.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A frame of the kind asked for: its call id and payload.
    Of(u64, Payload),
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
            if let Some((call_id, payload)) = r.next_buffered(kind) {
                return Some(Ok(Incoming::Of(call_id, payload)));
            }
            if let Some(run) = ItemRun::take(&mut r.buf, r.codec.max_frame()) {
                return Some(Ok(Incoming::Items(run)));
            }
            // A frame the fast paths left: one with flags (decompressed
            // here) or a bad one. Decompressed and with no other flag, it
            // is handed out as the fast path would have.
            r.decode().transpose().map(|frame| {
                frame.map(|f| match f.flags {
                    0 if f.kind == kind => Incoming::Of(f.call_id, f.payload.into()),
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
        let head = self.buf.get(..LEN_PREFIX + HEADER_LEN)?;
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        // A flagged frame (metadata, compression) is left for `poll_frame`,
        // which decompresses it and hands it on flags and all.
        let flagged = head[LEN_PREFIX + 1] != 0;
        if head[LEN_PREFIX] != kind as u8 || flagged || self.buf.len() < LEN_PREFIX + len {
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
            return Some((call_id, payload));
        }
        match self.codec.decode(&mut self.buf) {
            Ok(Some(frame)) => Some((frame.call_id, frame.payload.into())),
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
mod tests {
    use super::*;
    use crate::protocol::{FrameBuf, Kind};
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    async fn closed<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>, limit: usize) {
        std::future::poll_fn(|cx| reader.poll_closed(cx, limit)).await
    }

    fn frame(id: u64, payload: &[u8]) -> bytes::Bytes {
        let mut f = FrameBuf::new(Kind::Request, id, payload.len());
        f.payload_mut().extend_from_slice(payload);
        f.finish()
    }

    #[tokio::test]
    async fn frames_split_across_reads_come_out_whole_and_in_order() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        let big = vec![7u8; 100_000];
        let writer = tokio::spawn(async move {
            let mut bytes = frame(1, b"one").to_vec();
            bytes.extend_from_slice(&frame(2, &big));
            bytes.extend_from_slice(&frame(3, b""));
            // Byte by byte for the first frame, then in odd chunks.
            for b in &bytes[..20] {
                w.write_all(&[*b]).await.unwrap();
            }
            for chunk in bytes[20..].chunks(777) {
                w.write_all(chunk).await.unwrap();
            }
        });
        let one = reader.next().await.unwrap().unwrap();
        assert_eq!((one.call_id, &one.payload[..]), (1, &b"one"[..]));
        let two = reader.next().await.unwrap().unwrap();
        assert_eq!((two.call_id, two.payload.len()), (2, 100_000));
        assert!(two.payload.iter().all(|&b| b == 7));
        let three = reader.next().await.unwrap().unwrap();
        assert_eq!((three.call_id, three.payload.len()), (3, 0));
        writer.await.unwrap();
        assert!(
            reader.next().await.is_none(),
            "a close between frames ends the stream"
        );
    }

    #[tokio::test]
    async fn only_a_whole_buffered_frame_of_the_kind_asked_for_is_taken_without_reading() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        let ping = FrameBuf::new(Kind::Ping, 9, 0).finish();
        let mut bytes = frame(1, b"first").to_vec();
        bytes.extend_from_slice(&frame(2, b"second"));
        bytes.extend_from_slice(&ping);
        bytes.extend_from_slice(&frame(3, b"third")[..10]);
        w.write_all(&bytes).await.unwrap();
        assert!(
            reader.next_buffered(Kind::Request).is_none(),
            "nothing read yet"
        );
        assert_eq!(reader.next().await.unwrap().unwrap().call_id, 1);
        let (id, payload) = reader.next_buffered(Kind::Request).unwrap();
        assert_eq!((id, &payload[..]), (2, &b"second"[..]));
        // A frame of another kind stays for the next poll.
        assert!(reader.next_buffered(Kind::Request).is_none());
        assert_eq!(reader.next().await.unwrap().unwrap().kind, Kind::Ping);
        // So does a frame not yet whole.
        assert!(reader.next_buffered(Kind::Request).is_none());
        // And a bad one (flags set) behind the rest of it, in the same read:
        // it stays, and the next poll reports it.
        let mut rest = frame(3, b"third")[10..].to_vec();
        let mut bad = FrameBuf::new(Kind::Request, 4, 0).finish().to_vec();
        bad[LEN_PREFIX + 1] = 0xFF; // the flags byte
        rest.extend_from_slice(&bad);
        w.write_all(&rest).await.unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().call_id, 3);
        assert!(!reader.read_buffer().is_empty(), "the bad frame was read");
        assert!(reader.next_buffered(Kind::Request).is_none());
        let err = reader.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("flags"), "{err}");
    }

    /// Taken from the buffer, a payload up to the inline size is copied out
    /// and a larger one is a slice of the buffer; either way the bytes, the
    /// ids and the frames after are as sent. The same limits hold as for
    /// frames read any other way: a small frame over `max_frame` is refused.
    #[tokio::test]
    async fn buffered_frames_small_and_large_come_out_whole() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        let payloads: Vec<Vec<u8>> = [0, 1, INLINE_PAYLOAD, INLINE_PAYLOAD + 1, 5000]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 + n) as u8).collect())
            .collect();
        let mut bytes = frame(100, b"first").to_vec();
        for (i, p) in payloads.iter().enumerate() {
            bytes.extend_from_slice(&frame(i as u64 + 1, p));
        }
        w.write_all(&bytes).await.unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().call_id, 100);
        for (i, p) in payloads.iter().enumerate() {
            let (id, payload) = reader.next_buffered(Kind::Request).expect("buffered");
            assert_eq!((id, &payload[..]), (i as u64 + 1, &p[..]));
            assert_eq!(
                matches!(payload, Payload::Inline { .. }),
                p.len() <= INLINE_PAYLOAD,
                "{} bytes",
                p.len()
            );
        }
        assert!(reader.read_buffer().is_empty());

        // A limit below even a small frame: refused, not copied out.
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(r, FrameCodec::new(HEADER_LEN + 2));
        let mut bytes = frame(1, b"ok").to_vec();
        bytes.extend_from_slice(&frame(2, b"too long"));
        w.write_all(&bytes).await.unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().call_id, 1);
        assert!(reader.next_buffered(Kind::Request).is_none());
        let err = reader.next().await.unwrap().unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }

    /// `poll_incoming`: Responses come out as id and payload, small or
    /// large; any other frame whole, in order; a bad Response is an error.
    #[tokio::test]
    async fn incoming_responses_come_out_as_ids_and_payloads_and_other_frames_whole() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        let response = |id: u64, payload: &[u8]| {
            let mut f = FrameBuf::new(Kind::Response, id, payload.len());
            f.payload_mut().extend_from_slice(payload);
            f.finish().to_vec()
        };
        let large = vec![7u8; 5000];
        let mut bytes = response(1, b"small");
        bytes.extend_from_slice(&FrameBuf::new(Kind::Ping, 9, 0).finish());
        bytes.extend_from_slice(&response(2, &large));
        let mut bad = response(3, b"flagged");
        bad[LEN_PREFIX + 1] = 1;
        bytes.extend_from_slice(&bad);
        w.write_all(&bytes).await.unwrap();
        async fn next<R: AsyncRead + Unpin>(
            reader: &mut FrameReader<R>,
        ) -> Option<Result<Incoming, FrameError>> {
            std::future::poll_fn(|cx| reader.poll_incoming(cx, Kind::Response)).await
        }
        match next(&mut reader).await {
            Some(Ok(Incoming::Of(1, p))) => assert_eq!(&p[..], b"small"),
            other => panic!("{other:?}"),
        }
        match next(&mut reader).await {
            Some(Ok(Incoming::Frame(f))) => assert_eq!((f.kind, f.call_id), (Kind::Ping, 9)),
            other => panic!("{other:?}"),
        }
        match next(&mut reader).await {
            Some(Ok(Incoming::Of(2, p))) => assert_eq!(&p[..], &large[..]),
            other => panic!("{other:?}"),
        }
        match next(&mut reader).await {
            Some(Err(e)) => assert!(e.to_string().contains("flags"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_close_inside_a_frame_is_an_error() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        w.write_all(&frame(1, b"whole")).await.unwrap();
        w.write_all(&frame(2, b"cut short")[..12]).await.unwrap();
        drop(w);
        assert_eq!(reader.next().await.unwrap().unwrap().call_id, 1);
        let err = reader.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("12 bytes into a frame"), "{err}");
    }

    #[tokio::test]
    async fn a_reader_taking_no_frames_still_sees_the_peer_leave_and_keeps_what_came_first() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        w.write_all(&frame(1, b"before")).await.unwrap();
        let closed = tokio::spawn(async move {
            closed(&mut reader, 1 << 16).await;
            reader
        });
        tokio::task::yield_now().await;
        assert!(!closed.is_finished(), "ready while the peer is still there");
        drop(w);
        let mut reader = tokio::time::timeout(std::time::Duration::from_secs(5), closed)
            .await
            .expect("the close went unnoticed")
            .unwrap();
        let first = reader.next().await.unwrap().unwrap();
        assert_eq!((first.call_id, &first.payload[..]), (1, &b"before"[..]));
        assert!(reader.next().await.is_none());
    }

    #[tokio::test]
    async fn reading_ahead_stops_at_its_limit() {
        let (mut w, r) = tokio::io::duplex(1 << 20);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        w.write_all(&vec![0u8; 200_000]).await.unwrap();
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            closed(&mut reader, 10_000),
        )
        .await;
        assert!(waited.is_err(), "no close happened");
        let buffered = reader.read_buffer().len();
        assert_eq!(buffered, 10_000);
    }
}
