//! The frame reader against byte streams split, flagged and cut short.
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
        Some(Ok(Incoming::Of(1, 0, p))) => assert_eq!(&p[..], b"small"),
        other => panic!("{other:?}"),
    }
    match next(&mut reader).await {
        Some(Ok(Incoming::Frame(f))) => assert_eq!((f.kind, f.call_id), (Kind::Ping, 9)),
        other => panic!("{other:?}"),
    }
    match next(&mut reader).await {
        Some(Ok(Incoming::Of(2, 0, p))) => assert_eq!(&p[..], &large[..]),
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

/// A Request flagged with a schema fingerprint (every request a client of
/// this build sends) takes the fast path, small (copied out) or large, with
/// its flag, once the side accepts the flag; with metadata too it comes
/// whole; not accepted, it is an error.
#[tokio::test]
async fn requests_with_a_fingerprint_take_the_fast_path_with_their_flag() {
    use crate::protocol::{FLAG_METADATA, FLAG_SCHEMA};
    let flagged = |id: u64, flags: u8, payload: &[u8]| {
        let mut f = FrameBuf::new(Kind::Request, id, payload.len());
        f.payload_mut().extend_from_slice(payload);
        f.set_flags(flags);
        f.finish().to_vec()
    };
    async fn next<R: AsyncRead + Unpin>(
        reader: &mut FrameReader<R>,
    ) -> Option<Result<Incoming, FrameError>> {
        std::future::poll_fn(|cx| reader.poll_incoming(cx, Kind::Request)).await
    }
    let large = vec![3u8; 5000];
    let (mut w, r) = tokio::io::duplex(1 << 16);
    let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
    reader.accept_flags(FLAG_SCHEMA | FLAG_METADATA);
    let mut bytes = flagged(1, FLAG_SCHEMA, &[1; 24]);
    bytes.extend_from_slice(&flagged(2, FLAG_SCHEMA, &large));
    bytes.extend_from_slice(&flagged(3, FLAG_SCHEMA | FLAG_METADATA, &[2; 28]));
    w.write_all(&bytes).await.unwrap();
    match next(&mut reader).await {
        Some(Ok(Incoming::Of(1, FLAG_SCHEMA, p @ Payload::Inline { .. }))) => {
            assert_eq!(&p[..], &[1; 24])
        }
        other => panic!("{other:?}"),
    }
    match next(&mut reader).await {
        Some(Ok(Incoming::Of(2, FLAG_SCHEMA, p))) => assert_eq!(&p[..], &large[..]),
        other => panic!("{other:?}"),
    }
    match next(&mut reader).await {
        Some(Ok(Incoming::Frame(f))) => {
            assert_eq!((f.call_id, f.flags), (3, FLAG_SCHEMA | FLAG_METADATA))
        }
        other => panic!("{other:?}"),
    }

    let (mut w, r) = tokio::io::duplex(1 << 16);
    let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
    reader.accept_flags(FLAG_METADATA);
    w.write_all(&flagged(4, FLAG_SCHEMA, &[1; 24]))
        .await
        .unwrap();
    match next(&mut reader).await {
        Some(Err(e)) => assert!(e.to_string().contains("flags"), "{e}"),
        other => panic!("{other:?}"),
    }
}
