//! The sending end of a stream: takes the application's items only while
//! the peer has credit for them, encodes each into a StreamItem frame, and
//! ends the stream with a StreamEnd that says how it ended (cleanly, with
//! the producer's error, or with its panic).

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use futures::Stream as _;
use serde::Serialize;

use super::Stream;
use super::flow::Flow;
use crate::codec;
use crate::error::panic_message;
use crate::observe::metrics;
use crate::protocol::{
    Compressor, HEADER_LEN, Kind, LEN_PREFIX, Status, compress_value, put_head, seal_at,
};
use crate::transport::DIRECT_WRITE;
use crate::{Error, Format};

/// Items sent per poll of the pump before it lets other tasks run.
const ITEMS_PER_POLL: u32 = 1024;

/// A stream's items, encoded one by one as they are taken, in the
/// connection's format. (In a mutex only to be `Sync` as the call future
/// that carries it must be; it is reached through `&mut`, never locked.)
pub(crate) struct Encoder(std::sync::Mutex<Box<dyn Items>>, Format);

trait Items: Send {
    /// Appends the next item to `batch` as a StreamItem frame of call `id`
    /// (of at most `limit` bytes, the peer's frame limit); or gives the
    /// StreamEnd payload that ends the stream with an error.
    fn poll_encode(
        &mut self,
        cx: &mut Context<'_>,
        format: Format,
        id: u64,
        limit: usize,
        batch: &mut BytesMut,
    ) -> Poll<Option<Result<(), Vec<u8>>>>;
}

impl<T: Serialize + Send + 'static> Items for Stream<T> {
    fn poll_encode(
        &mut self,
        cx: &mut Context<'_>,
        format: Format,
        id: u64,
        limit: usize,
        batch: &mut BytesMut,
    ) -> Poll<Option<Result<(), Vec<u8>>>> {
        let next = std::task::ready!(Pin::new(self).poll_next(cx));
        Poll::Ready(next.map(|item| match item {
            Ok(item) => encode(format, &item, id, limit, batch),
            Err(e) => Err(end_payload(&e)),
        }))
    }
}

impl Encoder {
    pub(crate) fn new<T: Serialize + Send + 'static>(stream: Stream<T>, format: Format) -> Self {
        Encoder(std::sync::Mutex::new(Box::new(stream)), format)
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

/// Appends `item` to `batch` as a StreamItem frame of call `id` of at most
/// `limit` bytes (the peer's frame limit) in `format`, or gives the
/// StreamEnd payload that says why not (`batch` is then as it was).
pub(crate) fn encode<T: Serialize>(
    format: Format,
    item: &T,
    id: u64,
    limit: usize,
    batch: &mut BytesMut,
) -> Result<(), Vec<u8>> {
    let start = batch.len();
    put_head(batch, Kind::StreamItem, id);
    match codec::encode_as(format, item, batch, start + LEN_PREFIX + limit) {
        Ok(()) => {
            seal_at(batch, start);
            Ok(())
        }
        Err(e) => {
            batch.truncate(start);
            Err(match e {
                codec::EncodeError::TooLarge { size, .. } => {
                    let mut payload = vec![Status::FrameTooLarge as u8];
                    payload.put_u64((size - start - LEN_PREFIX) as u64);
                    payload.put_u64(limit as u64);
                    payload
                }
                codec::EncodeError::Serde(message) => Status::Aborted
                    .end_payload(&format!("could not encode a stream item: {message}")),
            })
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

/// How taking a batch of items stopped.
enum Batched {
    /// The credit (or the items per poll) ran out.
    Credit,
    /// The stream has no item ready.
    Pending,
    /// The stream is over: this StreamEnd payload follows the batch.
    End(Vec<u8>),
}

/// What one run of the pump's loop came to.
enum Step {
    /// The stream is over: send this StreamEnd payload (none: the peer
    /// takes no more, send nothing).
    End(Option<Vec<u8>>),
    /// The writer holds enough for the peer: wait for it to write some.
    BackedUp,
}

/// Sends `items` through `flow` as the peer's credit allows, items of at
/// most `limit` bytes, each compressed as `compress` says, and then the
/// StreamEnd; returns early, sending nothing more, once the peer takes no
/// more. Credit alone does not let it
/// run ahead of the connection's writer: while the writer holds
/// [`STREAM_BACKLOG`](super::flow::STREAM_BACKLOG) bytes for the peer, it
/// waits (a peer that grants credit it never consumes, or a huge window,
/// and reads nothing, holds it back all the same).
pub(crate) async fn pump(
    flow: &Flow,
    items: &mut Encoder,
    limit: usize,
    compress: Compressor,
    counted: &metrics::Items,
) -> Pumped {
    let format = items.1;
    let items = items.0.get_mut().unwrap_or_else(|e| e.into_inner());
    let id = flow.id();
    let mut batch = BytesMut::new();
    let end = loop {
        flow.room().await;
        let step = std::future::poll_fn(|cx| {
            let mut sent = 0;
            loop {
                let room = match flow.poll_send_ready(cx) {
                    Poll::Ready(Ok(room)) => room,
                    Poll::Ready(Err(_)) => return Poll::Ready(Step::End(None)),
                    Poll::Pending => return Poll::Pending,
                };
                if flow.backed_up() {
                    return Poll::Ready(Step::BackedUp);
                }
                if sent >= ITEMS_PER_POLL {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                // Items taken while the credit lasts are encoded one after
                // another into one buffer, which goes out as one block: one
                // lock of the flow and one of the writer per batch, not per
                // item, and a batch of `DIRECT_WRITE` bytes is written from
                // its own memory, uncopied. Each item is still taken only
                // under credit (the bytes before it are under the window).
                if batch.capacity() == 0 {
                    // Room for a whole batch at once, not grown item by item.
                    batch.reserve(DIRECT_WRITE);
                }
                let mut polled = Batched::Credit;
                // The window counts items as encoded, before compression:
                // what the peer holds once it has decompressed them.
                let mut cost = 0;
                while cost < room.min(DIRECT_WRITE) && sent < ITEMS_PER_POLL {
                    let start = batch.len();
                    let next = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        items.poll_encode(cx, format, id, limit, &mut batch)
                    }));
                    cost += batch.len() - start;
                    polled = match next {
                        Err(panic) => {
                            let message = panic_message(&*panic);
                            Batched::End(Status::Panicked.end_payload(&message))
                        }
                        Ok(Poll::Pending) => Batched::Pending,
                        Ok(Poll::Ready(None)) => Batched::End(vec![Status::Ok as u8]),
                        Ok(Poll::Ready(Some(Err(end)))) => Batched::End(end),
                        Ok(Poll::Ready(Some(Ok(())))) => {
                            sent += 1;
                            counted.one();
                            // Small items stay as they are (the threshold).
                            let value_at = start + LEN_PREFIX + HEADER_LEN;
                            compress_value(&mut batch, start, value_at, compress);
                            continue;
                        }
                    };
                    break;
                }
                if !batch.is_empty() && !flow.send_items(batch.split().freeze(), cost) {
                    return Poll::Ready(Step::End(None));
                }
                match polled {
                    Batched::Credit => {}
                    Batched::Pending => return Poll::Pending,
                    Batched::End(end) => return Poll::Ready(Step::End(Some(end))),
                }
            }
        })
        .await;
        match step {
            Step::End(end) => break end,
            // Counted against the task's budget, so that this loop yields
            // (and can be aborted) even if the writer's room came at once.
            Step::BackedUp => tokio::task::coop::consume_budget().await,
        }
    };
    let status = end.as_ref().and_then(|end| end.first().copied());
    if let Some(end) = end {
        flow.finish(&end);
    }
    Pumped { status }
}

/// How a pumped stream ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pumped {
    /// The status its StreamEnd carried; `None` if it was never sent (the
    /// stream was cancelled, or its connection went).
    pub(crate) status: Option<u8>,
}
