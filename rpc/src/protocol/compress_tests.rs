//! Unit tests of [`super`]: the layout of a compressed value, the decision
//! to compress, and what decompression refuses.

use super::*;
use crate::protocol::features;

const ALL: u32 = features::LZ4 | features::ZSTD;

/// A Response frame of status Ok and `value`, as `Call::reply` makes one.
fn response(value: &[u8]) -> BytesMut {
    let mut f = super::super::FrameBuf::new(Kind::Response, 7, 1 + value.len());
    f.extend_from_slice(&[0]);
    f.extend_from_slice(value);
    BytesMut::from(&f.finish()[..])
}

/// The frame in `buf` as the reader's codec would give it.
fn decoded(buf: &BytesMut) -> Frame {
    let mut codec = super::super::FrameCodec::new(1 << 30);
    codec.accept_flags(FLAG_COMPRESSED | FLAG_METADATA);
    tokio_util::codec::Decoder::decode(&mut codec, &mut buf.clone())
        .unwrap()
        .unwrap()
}

#[cfg_attr(not(any(feature = "lz4", feature = "zstd")), allow(dead_code))]
fn on(algorithm: Compression) -> Compressor {
    Compressor {
        algorithm,
        threshold: 1024,
    }
}

#[cfg_attr(not(any(feature = "lz4", feature = "zstd")), allow(dead_code))]
fn text(len: usize) -> Vec<u8> {
    b"{\"name\":\"widget\",\"count\":12},"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

#[cfg(feature = "lz4")]
#[test]
fn golden_layout_of_an_lz4_response() {
    let value = text(2000);
    let mut buf = response(&value);
    assert!(compress_value(&mut buf, 0, 15, on(Compression::Lz4)));
    let packed = lz4_flex::block::compress(&value);
    let mut want = Vec::new();
    want.extend_from_slice(&((HEADER_LEN + 1 + VALUE_HEAD + packed.len()) as u32).to_be_bytes());
    want.extend_from_slice(&[3, FLAG_COMPRESSED, 0, 0, 0, 0, 0, 0, 0, 7]); // kind, flags, id
    want.push(0); // status Ok, not compressed
    want.push(1); // algorithm: lz4
    want.extend_from_slice(&2000u32.to_be_bytes()); // decompressed length
    want.extend_from_slice(&packed);
    assert_eq!(&buf[..], &want[..]);
    let (frame, algorithm) = inflate(decoded(&buf), features::LZ4, 1 << 20).unwrap();
    assert_eq!(algorithm, Compression::Lz4);
    assert_eq!(frame.flags, 0);
    assert_eq!(frame.payload[0], 0);
    assert_eq!(&frame.payload[1..], &value[..]);
}

#[cfg(feature = "zstd")]
#[test]
fn golden_head_of_a_zstd_stream_item_and_round_trip() {
    let value = text(5000);
    let mut buf = BytesMut::from(&[0xEE, 0xEE][..]); // a frame before it in the batch
    crate::protocol::put_head(&mut buf, Kind::StreamItem, 9);
    buf.extend_from_slice(&value);
    crate::protocol::seal_at(&mut buf, 2);
    assert!(compress_value(&mut buf, 2, 16, on(Compression::Zstd)));
    assert_eq!(&buf[..2], &[0xEE, 0xEE], "what came before is untouched");
    assert_eq!(buf[2 + LEN_PREFIX + 1], FLAG_COMPRESSED);
    assert_eq!(&buf[16..21], &[2, 0, 0, 0x13, 0x88], "zstd, 5000 bytes");
    assert_eq!(&buf[21..25], &[0x28, 0xB5, 0x2F, 0xFD], "one zstd frame");
    let len = u32::from_be_bytes(buf[2..6].try_into().unwrap()) as usize;
    assert_eq!(len, buf.len() - 2 - LEN_PREFIX);
    let frame = decoded(&BytesMut::from(&buf[2..]));
    let (frame, _) = inflate(frame, features::ZSTD, 1 << 20).unwrap();
    assert_eq!(&frame.payload[..], &value[..]);
}

#[cfg(all(feature = "lz4", feature = "zstd"))]
#[test]
fn small_incompressible_or_unwanted_values_stay_as_they_are() {
    let small = response(&text(1023));
    let mut buf = small.clone();
    assert!(!compress_value(&mut buf, 0, 15, on(Compression::Zstd)));
    assert_eq!(buf, small, "under the threshold");
    // Bytes from a simple generator: no repeats for a compressor to find.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for algorithm in [Compression::Lz4, Compression::Zstd] {
        let raw = response(&noise);
        let mut buf = raw.clone();
        assert!(!compress_value(&mut buf, 0, 15, on(algorithm)));
        assert_eq!(buf, raw, "{algorithm:?}: not an eighth smaller");
    }
    let mut buf = response(&text(4096));
    let off = Compressor {
        algorithm: Compression::None,
        threshold: u32::MAX,
    };
    assert!(!compress_value(&mut buf, 0, 15, off));
}

#[cfg(feature = "lz4")]
#[test]
fn a_claimed_length_over_the_frame_limit_is_refused_before_allocating() {
    let mut buf = response(&text(4096));
    assert!(compress_value(&mut buf, 0, 15, on(Compression::Lz4)));
    // Claim 1 GiB.
    buf[16..20].copy_from_slice(&(1u32 << 30).to_be_bytes());
    let err = inflate(decoded(&buf), ALL, 16 << 20).unwrap_err();
    assert!(err.contains("claims 1073741824 bytes"), "{err}");
    // A claim that fits but is not what the data gives.
    buf[16..20].copy_from_slice(&4000u32.to_be_bytes());
    let err = inflate(decoded(&buf), ALL, 16 << 20).unwrap_err();
    assert!(err.contains("LZ4") || err.contains("4000"), "{err}");
    // Exactly at the limit is fine: header, status and value.
    buf[16..20].copy_from_slice(&4096u32.to_be_bytes());
    assert!(inflate(decoded(&buf), ALL, HEADER_LEN + 1 + 4096).is_ok());
    assert!(inflate(decoded(&buf), ALL, HEADER_LEN + 4096).is_err());
}

#[test]
fn unknown_or_unadvertised_algorithms_and_other_kinds_are_refused() {
    let mut buf = response(&[2, 0, 0, 0, 10, 1, 2, 3]);
    buf[LEN_PREFIX + 1] = FLAG_COMPRESSED;
    let err = inflate(decoded(&buf), features::LZ4, 1 << 20).unwrap_err();
    assert!(
        err.contains("Zstd, which this side did not advertise"),
        "{err}"
    );
    buf[15] = 9;
    let err = inflate(decoded(&buf), ALL, 1 << 20).unwrap_err();
    assert!(err.contains("unknown compression algorithm 9"), "{err}");
    let mut short = response(&[1, 0, 0]);
    short[LEN_PREFIX + 1] = FLAG_COMPRESSED;
    assert!(inflate(decoded(&short), ALL, 1 << 20).is_err());
    let mut ping = buf.clone();
    ping[LEN_PREFIX] = Kind::Ping as u8;
    let err = inflate(decoded(&ping), ALL, 1 << 20).unwrap_err();
    assert!(err.contains("Ping frame may not be compressed"), "{err}");
}

/// The metadata block (a u32 length and that many bytes) is skipped: the
/// value starts after it, and it is not compressed.
#[cfg(feature = "lz4")]
#[test]
fn the_value_starts_after_a_request_head_and_its_metadata_block() {
    let value = text(3000);
    let mut f = super::super::FrameBuf::new(Kind::Request, 1, 0);
    f.extend_from_slice(&[0xAB; RequestHead::LEN]);
    f.extend_from_slice(&[0, 0, 0, 3, b'k', b'=', b'v']);
    f.extend_from_slice(&value);
    let mut buf = BytesMut::from(&f.finish()[..]);
    buf[LEN_PREFIX + 1] = FLAG_METADATA;
    let value_at = LEN_PREFIX + HEADER_LEN + RequestHead::LEN + 7;
    assert!(compress_value(&mut buf, 0, value_at, on(Compression::Lz4)));
    assert_eq!(buf[LEN_PREFIX + 1], FLAG_METADATA | FLAG_COMPRESSED);
    let (frame, _) = inflate(decoded(&buf), ALL, 1 << 20).unwrap();
    assert_eq!(frame.flags, FLAG_METADATA);
    assert_eq!(
        &frame.payload[..RequestHead::LEN],
        &[0xAB; RequestHead::LEN]
    );
    assert_eq!(
        &frame.payload[RequestHead::LEN..RequestHead::LEN + 7],
        b"\0\0\0\x03k=v"
    );
    assert_eq!(&frame.payload[RequestHead::LEN + 7..], &value[..]);
    // Sent to a peer that takes only zstd: made raw again.
    let raw = raw_unless_accepted(&buf, features::ZSTD).unwrap().finish();
    assert_eq!(&raw[LEN_PREFIX + HEADER_LEN..], &frame.payload[..]);
    assert_eq!(raw[LEN_PREFIX + 1], FLAG_METADATA);
    assert!(raw_unless_accepted(&buf, features::LZ4).is_none());
}
