//! The sending end of a stream: takes the application's items only while
//! the peer has credit for them, encodes each into a StreamItem frame, and
//! ends the stream with a StreamEnd that says how it ended (cleanly, with
//! the producer's error, or with its panic).

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BufMut;
use futures::Stream as _;
use serde::Serialize;

use super::Stream;
use super::flow::Flow;
use crate::Error;
use crate::codec;
use crate::error::panic_message;
use crate::protocol::{FrameBuf, Kind, LEN_PREFIX, Status};

/// Items sent per poll of the pump before it lets other tasks run.
const ITEMS_PER_POLL: u32 = 64;

/// A stream's items, encoded one by one as they are taken. (In a mutex only
/// to be `Sync` as the call future that carries it must be; it is reached
/// through `&mut`, never locked.)
pub(crate) struct Encoder(std::sync::Mutex<Box<dyn Items>>);

trait Items: Send {
    /// The next item as a frame (its call id not yet set), or the
    /// StreamEnd payload that ends the stream with an error.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<Option<Result<FrameBuf, Vec<u8>>>>;
}

impl<T: Serialize + Send + 'static> Items for Stream<T> {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<Option<Result<FrameBuf, Vec<u8>>>> {
        let next = std::task::ready!(Pin::new(self).poll_next(cx));
        Poll::Ready(next.map(|item| match item {
            Ok(item) => encode(&item, limit),
            Err(e) => Err(end_payload(&e)),
        }))
    }
}

impl Encoder {
    pub(crate) fn new<T: Serialize + Send + 'static>(stream: Stream<T>) -> Self {
        Encoder(std::sync::Mutex::new(Box::new(stream)))
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

/// `item` as a StreamItem frame of at most `limit` bytes (the peer's frame
/// limit), or the StreamEnd payload that says why not.
fn encode<T: Serialize>(item: &T, limit: usize) -> Result<FrameBuf, Vec<u8>> {
    let mut frame = FrameBuf::new(Kind::StreamItem, 0, 16);
    match codec::encode_into(item, &mut frame, limit + LEN_PREFIX) {
        Ok(()) => Ok(frame),
        Err(codec::EncodeError::TooLarge { size, .. }) => {
            let mut payload = vec![Status::FrameTooLarge as u8];
            payload.put_u64((size - LEN_PREFIX) as u64);
            payload.put_u64(limit as u64);
            Err(payload)
        }
        Err(codec::EncodeError::Serde(message)) => {
            Err(Status::Aborted.end_payload(&format!("could not encode a stream item: {message}")))
        }
    }
}

/// The StreamEnd payload for a stream that yielded `error`: its own status
/// where the peer has one for it, else `Aborted` with its message.
fn end_payload(error: &Error) -> Vec<u8> {
    match error {
        Error::Panicked { message, .. } => Status::Panicked.end_payload(message),
        Error::DeadlineExceeded { .. } => Status::DeadlineExceeded.end_payload(""),
        Error::ShuttingDown { .. } => Status::ShuttingDown.end_payload(""),
        Error::Aborted { message, .. } => Status::Aborted.end_payload(message),
        other => Status::Aborted.end_payload(&other.to_string()),
    }
}

/// Sends `items` through `flow` as the peer's credit allows, items of at
/// most `limit` bytes, and then the StreamEnd; returns early, sending
/// nothing more, once the peer takes no more.
pub(crate) async fn pump(flow: &Flow, items: &mut Encoder, limit: usize) {
    let items = items.0.get_mut().unwrap_or_else(|e| e.into_inner());
    let end = std::future::poll_fn(|cx| {
        let mut sent = 0;
        loop {
            match flow.poll_send_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
            if sent == ITEMS_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let next = std::panic::catch_unwind(AssertUnwindSafe(|| items.poll_frame(cx, limit)));
            match next {
                Err(panic) => {
                    let message = panic_message(&*panic);
                    return Poll::Ready(Some(Status::Panicked.end_payload(&message)));
                }
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(None)) => return Poll::Ready(Some(vec![Status::Ok as u8])),
                Ok(Poll::Ready(Some(Err(end)))) => return Poll::Ready(Some(end)),
                Ok(Poll::Ready(Some(Ok(frame)))) => {
                    if !flow.send_item(frame) {
                        return Poll::Ready(None);
                    }
                    sent += 1;
                }
            }
        }
    })
    .await;
    if let Some(end) = end {
        flow.finish(&end);
    }
}
