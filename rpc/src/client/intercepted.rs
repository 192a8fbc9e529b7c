//! A call with the channel's interceptors around it: they run when the call
//! is first polled, before its request goes out, and may refuse it (it then
//! fails with their error, sending nothing) or change its metadata; each
//! hears the outcome. Only a channel with interceptors takes this path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use super::call::Run;
use crate::intercept::{CallInfo, Chain};
use crate::protocol::{FLAG_METADATA, FrameBuf, HEADER_LEN, Kind, LEN_PREFIX, Payload};
use crate::{Error, Metadata};

/// A call, sent by `send` once `chain` lets it through with its request
/// (its metadata as the interceptors left it).
pub(super) fn call<S>(
    chain: Chain,
    info: CallInfo,
    shape: &'static str,
    request: Result<FrameBuf, Error>,
    max_metadata: usize,
    send: impl FnOnce(Result<FrameBuf, Error>) -> S + Send + 'static,
) -> Run
where
    S: Future<Output = (Result<Payload, Error>, Duration)> + Send + 'static,
{
    let sent = info.metadata().clone();
    let method = info.method();
    Box::pin(SyncFuture(Mutex::new(Box::pin(async move {
        let mut around = chain.around(info, None);
        if let Err(rejection) = around.admit().await {
            return (Err(rejection.into_error(method)), Duration::ZERO);
        }
        let request = match request {
            Ok(frame) if *around.info().metadata() != sent => {
                replace_metadata(&frame, around.info().metadata(), max_metadata, method)
            }
            request => request,
        };
        let (reply, budget) = send(request).await;
        let failed = reply
            .as_ref()
            .ok()
            .and_then(|payload| crate::error::of_reply(method, budget, payload))
            .map(|e| e.with_client_shape(shape));
        around.finish(match (&reply, &failed) {
            (Err(e), _) | (_, Some(e)) => Err(e),
            _ => Ok(()),
        });
        (reply, budget)
    }))))
}

/// `request` (a Request frame as `Channel::encode_request` made it) with
/// `metadata` in place of what it carried.
pub(super) fn replace_metadata(
    request: &FrameBuf,
    metadata: &Metadata,
    max: usize,
    method: &'static str,
) -> Result<FrameBuf, Error> {
    metadata
        .check(max)
        .map_err(|message| Error::InvalidMetadata { method, message })?;
    let bytes = request.as_slice();
    // The head, and the schema fingerprint if it carries one, stay.
    let flagged = bytes[LEN_PREFIX + 1];
    let head_end = LEN_PREFIX
        + HEADER_LEN
        + crate::protocol::RequestHead::LEN
        + crate::protocol::fingerprint_len(flagged);
    let mut args = &bytes[head_end..];
    if bytes[LEN_PREFIX + 1] & FLAG_METADATA != 0 {
        let len = u32::from_be_bytes([args[0], args[1], args[2], args[3]]) as usize;
        args = &args[4 + len..];
    }
    let mut frame = FrameBuf::new(Kind::Request, 0, head_end + args.len() + 64);
    frame.extend_from_slice(&bytes[LEN_PREFIX + HEADER_LEN..head_end]);
    // Other flags (a compressed value) stay as they were.
    let mut flags = bytes[LEN_PREFIX + 1] & !FLAG_METADATA;
    if !metadata.is_empty() {
        flags |= FLAG_METADATA;
        metadata.encode(frame.payload_mut());
    }
    frame.set_flags(flags);
    frame.extend_from_slice(args);
    Ok(frame)
}

/// A `Send` future made `Sync` (as the call future must be): it is only
/// ever reached through `&mut`, so the mutex is never locked.
struct SyncFuture<F>(Mutex<Pin<Box<F>>>);

impl<F: Future> Future for SyncFuture<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let fut = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        fut.as_mut().poll(cx)
    }
}
