//! The entry point of the `cargo fuzz` target (`fuzz/fuzz_targets/frames.rs`)
//! and of the randomized tests: everything a peer's bytes go through.

use std::collections::HashMap;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

use super::{FrameCodec, GoAwayReason, Hello, Kind, RequestHead, Status};
use crate::codec;

/// A frame limit small enough that fuzzed length fields hit it.
const FUZZ_MAX_FRAME: usize = 64 * 1024;

/// Nested and recursive shapes, as a service's argument types may be.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf(u8),
    Node(Vec<Tree>),
    Named {
        name: String,
        next: Option<Box<Tree>>,
    },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    tags: HashMap<String, Vec<u8>>,
    scores: Vec<(i128, f64)>,
    flag: Option<bool>,
    letter: char,
    tree: Tree,
}

/// Runs `bytes` through the frame decoder (fed in two pieces, as a socket
/// may deliver them), then every frame's payload through the parser of its
/// kind and the argument/value decoder as several types. Panics only on a bug:
/// hostile input must give errors, never a panic, an abort, a hang or an
/// allocation out of proportion to the input.
#[doc(hidden)]
#[cfg_attr(
    not(feature = "hooks"),
    allow(
        unreachable_pub,
        reason = "public through the `hooks` re-export; without it only the unit tests call it"
    )
)]
pub fn fuzz_decode(bytes: &[u8]) {
    let split = bytes
        .first()
        .map_or(0, |&b| usize::from(b))
        .min(bytes.len());
    let mut codec = FrameCodec::new(FUZZ_MAX_FRAME);
    let mut buf = BytesMut::from(&bytes[..split]);
    let mut rest = &bytes[split..];
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.payload.len() <= FUZZ_MAX_FRAME);
                payload(frame.kind, &frame.payload);
            }
            Ok(None) if !rest.is_empty() => {
                buf.extend_from_slice(rest);
                rest = &[];
            }
            Ok(None) | Err(_) => break,
        }
    }
}

fn payload(kind: Kind, payload: &bytes::Bytes) {
    match kind {
        Kind::Hello => {
            let _ = Hello::parse(payload.clone());
        }
        Kind::Request => {
            if let Some((_, args)) = RequestHead::parse(payload.clone()) {
                values(&args);
            }
        }
        Kind::Response => {
            if let Some((&status, body)) = payload.split_first()
                && Status::from_u8(status) == Some(Status::Ok)
            {
                values(body);
            }
        }
        Kind::GoAway => {
            let _ = GoAwayReason::parse(payload);
        }
        _ => {}
    }
}

/// Decodes `bytes` as several types; what decodes must encode back to a value
/// that decodes to the same thing.
fn values(bytes: &[u8]) {
    let _ = codec::decode::<(String, u64)>(bytes);
    let _ = codec::decode::<Vec<()>>(bytes);
    let _ = codec::decode::<(Vec<Option<String>>, crate::bytes::ByteBuf)>(bytes);
    if let Ok(record) = codec::decode::<Record>(bytes) {
        let mut again = BytesMut::new();
        codec::encode_into(&record, &mut again, usize::MAX).expect("a decoded value encodes");
        let twice: Record = codec::decode(&again).expect("an encoded value decodes");
        // NaN is the one value not equal to itself.
        if record.scores.iter().all(|(_, f)| !f.is_nan()) {
            assert_eq!(twice, record);
        }
    }
    let _ = codec::decode::<Tree>(bytes);
    // The same bytes as JSON: no panic, whatever they are.
    #[cfg(feature = "json")]
    {
        let json = crate::Format::Json;
        let _ = codec::decode_as::<(String, u64)>(json, bytes);
        let _ = codec::decode_as::<Record>(json, bytes);
        let _ = codec::decode_as::<Tree>(json, bytes);
        let _ = codec::reply_decoder::<(u64,)>(json)(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameBuf;
    use bytes::BufMut;

    fn request(args: &[u8]) -> Vec<u8> {
        let mut f = FrameBuf::new(Kind::Request, 1, args.len());
        f.payload_mut().put_bytes(0, RequestHead::LEN);
        f.payload_mut().put_slice(args);
        let mut bytes = vec![0]; // feed in one piece
        bytes.extend_from_slice(&f.finish());
        bytes
    }

    #[test]
    fn hostile_payloads_are_errors_not_crashes() {
        let mut bomb = vec![253];
        bomb.extend_from_slice(&(1u64 << 40).to_le_bytes());
        fuzz_decode(&request(&bomb));
        // Tree::Node (variant 1) holding one element (length 1), 30,000 deep.
        fuzz_decode(&request(&[1u8; 60_000]));
        fuzz_decode(&request(&[2, 3, b'a', b'b', b'c', 0, 0, 0]));
        fuzz_decode(&[]);
        fuzz_decode(&[0xFF; 64]);
        fuzz_decode(&[3, 0, 0, 0, 10, 4, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    }

    #[test]
    fn a_valid_record_round_trips() {
        let record = Record {
            id: 7,
            tags: HashMap::from([("k".into(), vec![1, 2])]),
            scores: vec![(-1, 0.5)],
            flag: Some(true),
            letter: 'é',
            tree: Tree::Node(vec![
                Tree::Leaf(1),
                Tree::Named {
                    name: "n".into(),
                    next: Some(Box::new(Tree::Leaf(2))),
                },
            ]),
        };
        let mut args = BytesMut::new();
        codec::encode_into(&record, &mut args, usize::MAX).unwrap();
        fuzz_decode(&request(&args));
    }
}
