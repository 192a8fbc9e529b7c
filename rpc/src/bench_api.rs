//! Hooks for the benchmarks in `benches/`: the library's own frame and payload
//! code paths, reachable from outside the crate. Not a public API: it changes
//! without notice.
//!
//! Each function runs exactly the code a call runs: the client's request
//! encoding (frame header, request head, bincode args), the server's reply
//! encoding ([`Call::reply`]), and the frame decoder both sides read with,
//! followed by the payload decode.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::Decoder;

use crate::codec;
use crate::protocol::{FrameBuf, FrameCodec, Hello, Kind, LEN_PREFIX, RequestHead, Status};
use crate::server::dispatch::Call;

/// The default frame limit of both sides (16 MiB).
pub const MAX_FRAME: usize = 16 << 20;

/// A Request frame for `"Service.method"` with these arguments (a tuple, as
/// generated clients send), encoded as `Channel` encodes it and then patched
/// with the call id and budget as the connection does just before sending.
///
/// # Errors
///
/// If the arguments do not encode within [`MAX_FRAME`].
pub fn request_frame<A: Serialize + ?Sized>(
    method: &str,
    call_id: u64,
    budget: Duration,
    args: &A,
) -> Result<Bytes, String> {
    let mut frame = FrameBuf::new(Kind::Request, 0, 64);
    RequestHead {
        method_id: crate::protocol::method_id(method),
        budget: Duration::ZERO,
    }
    .write(&mut frame);
    codec::encode_into(args, frame.payload_mut(), MAX_FRAME + LEN_PREFIX)
        .map_err(|e| format!("{e:?}"))?;
    RequestHead::patch(&mut frame, call_id, budget);
    Ok(frame.finish())
}

/// A Response frame carrying `value`, encoded by the server's reply path.
pub fn response_frame<R: Serialize + ?Sized>(call_id: u64, value: &R) -> Bytes {
    Call {
        id: call_id,
        args: Bytes::new().into(),
        max_frame: MAX_FRAME as u32,
        reply_metadata_limit: None,
        stream: None,
        compress: crate::protocol::Compressor::OFF,
        format: crate::Format::Bincode,
    }
    .reply(value)
    .into_bytes()
}

/// The Hello frame this crate sends (a client opens every connection with it).
pub fn hello_frame() -> Bytes {
    Hello::ours(MAX_FRAME, crate::stream::DEFAULT_CLIENT_WINDOW).encode()
}

/// Decodes one Request frame from the front of `buf` through the frame codec,
/// then its head and its arguments: `(call id, method id, args)`.
///
/// # Errors
///
/// If `buf` does not start with a whole, valid Request frame.
pub fn decode_request<A: DeserializeOwned>(buf: &mut BytesMut) -> Result<(u64, u64, A), String> {
    let frame = FrameCodec::new(MAX_FRAME)
        .decode(buf)
        .map_err(|e| e.to_string())?
        .ok_or("incomplete frame")?;
    if frame.kind != Kind::Request {
        return Err(format!("expected a Request, got {:?}", frame.kind));
    }
    let (head, args) = RequestHead::parse(frame.payload).ok_or("short request head")?;
    Ok((frame.call_id, head.method_id, codec::decode(&args)?))
}

/// Decodes one Response frame from the front of `buf` through the frame codec,
/// then its status and value: `(call id, value)`.
///
/// # Errors
///
/// If `buf` does not start with a whole Response frame whose status is Ok.
pub fn decode_response<R: DeserializeOwned>(buf: &mut BytesMut) -> Result<(u64, R), String> {
    let frame = FrameCodec::new(MAX_FRAME)
        .decode(buf)
        .map_err(|e| e.to_string())?
        .ok_or("incomplete frame")?;
    if frame.kind != Kind::Response {
        return Err(format!("expected a Response, got {:?}", frame.kind));
    }
    match frame.payload.split_first() {
        Some((&status, body)) if status == Status::Ok as u8 => {
            Ok((frame.call_id, codec::decode(body)?))
        }
        _ => Err("response status is not Ok".into()),
    }
}

/// Appends `item` to `batch` as a StreamItem frame of call `call_id`, as a
/// stream's sender encodes each item.
///
/// # Errors
///
/// If the item does not encode within [`MAX_FRAME`].
pub fn stream_item_into<T: Serialize>(
    batch: &mut BytesMut,
    call_id: u64,
    item: &T,
) -> Result<(), String> {
    crate::stream::encode(crate::Format::Bincode, item, call_id, MAX_FRAME, batch)
        .map_err(|end| format!("the item did not encode ({} bytes of StreamEnd)", end.len()))
}

/// Decodes every StreamItem frame in `batch` (all of one call) as a
/// stream's receiver does: taken as one run, each item decoded in place.
/// Gives how many items there were.
///
/// # Errors
///
/// If `batch` is not whole StreamItem frames of one call, or an item does
/// not decode as a `T`.
pub fn decode_stream_items<T: DeserializeOwned>(
    batch: &mut BytesMut,
    mut each: impl FnMut(T),
) -> Result<usize, String> {
    let mut run =
        crate::protocol::ItemRun::take(batch, MAX_FRAME).ok_or("not a StreamItem frame")?;
    if !batch.is_empty() {
        return Err("frames of another kind or call follow".into());
    }
    let mut n = 0;
    while let Some((at, _)) = run.next_item() {
        each(codec::decode(run.payload(at))?);
        n += 1;
    }
    Ok(n)
}
