//! What a call sends, as its channel makes it: the request frame (head,
//! schema fingerprint, metadata with the trace context, the arguments in
//! the channel's format, compressed if asked), the call's span, and the
//! path through the channel's interceptors.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Channel, Route};
use crate::client::attempt::Attempt;
use crate::client::balanced;
use crate::client::call::Run;
use crate::client::intercepted;
use crate::client::method::{self, Method};
use crate::codec;
use crate::intercept::{Chain, Side};
use crate::observe::TraceContext;
use crate::observe::call::Observed;
use crate::protocol::{
    Compressor, FLAG_METADATA, FLAG_SCHEMA, FrameBuf, Kind, LEN_PREFIX, RequestHead,
};
use crate::{Compression, Error, Metadata, compression};

impl Channel {
    /// A call with the channel's interceptors around it (see
    /// `intercepted.rs`): sent as it would be without them, once they let
    /// it through.
    pub(super) fn intercepted<A: Serialize + ?Sized>(
        &self,
        method: Method,
        args: &A,
        trace: Option<&TraceContext>,
    ) -> Run {
        let config = self.config();
        let sent = self.sent_metadata(trace);
        let info = Chain::info(method.name, Side::Client, false, sent).on_client(self.address());
        let request = self.encode_request(method, args, trace);
        let timeout = self.options.timeout();
        let inherited = crate::context::current_deadline();
        let route = self.route.clone();
        let send = move |request: Result<FrameBuf, Error>| async move {
            match route {
                Route::One { endpoint, .. } => {
                    let mut attempt = Attempt::new(endpoint, None, method.name, timeout, request)
                        .inheriting(inherited);
                    let reply = (&mut attempt).await;
                    (reply, attempt.budget())
                }
                Route::Balanced(balancer) => {
                    let request = request.map(FrameBuf::finish);
                    balanced::run(balancer, method, method.key, request, timeout, inherited).await
                }
            }
        };
        intercepted::call(
            config.interceptors.clone(),
            info,
            method.shape,
            request,
            config.max_metadata,
            send,
        )
    }

    /// A call's span and metrics, and the trace context it sends.
    pub(super) fn observe(&self, method: &'static str) -> (Observed, Option<Arc<TraceContext>>) {
        // A trace the caller set in the handle's metadata is this call's.
        let metadata = self.options.metadata();
        let own = if metadata.is_empty() {
            None
        } else {
            TraceContext::from_metadata(metadata)
        };
        Observed::client(method, own)
    }

    /// The metadata a call sends: the handle's, with `trace` added.
    pub(super) fn sent_metadata(&self, trace: Option<&TraceContext>) -> Metadata {
        let metadata = self.options.metadata();
        trace
            .map(|trace| trace.add_to(metadata))
            .unwrap_or_else(|| metadata.clone())
    }

    pub(super) fn encode_request<A: Serialize + ?Sized>(
        &self,
        spec: Method,
        args: &A,
        trace: Option<&TraceContext>,
    ) -> Result<FrameBuf, Error> {
        let method = spec.name;
        // Room for small arguments in place (see `FrameBuf`).
        let mut frame = FrameBuf::new(Kind::Request, 0, RequestHead::LEN + 24);
        RequestHead {
            method_id: spec.id,
            budget: Duration::ZERO,
        }
        .write(&mut frame);
        // Every request carries the fingerprint, taken out again for a
        // server that does not check it (see `Connection::try_send`).
        let checked = spec.fingerprint != method::UNCHECKED;
        let schema = if checked { FLAG_SCHEMA } else { 0 };
        if checked {
            frame.extend_from_slice(&spec.fingerprint.to_be_bytes());
            frame.set_flags(schema);
        }
        let config = self.config();
        let traced = trace.map(|trace| trace.add_to(self.options.metadata()));
        let metadata = traced.as_ref().unwrap_or(self.options.metadata());
        if !metadata.is_empty() {
            metadata
                .check(config.max_metadata)
                .map_err(|message| Error::InvalidMetadata { method, message })?;
            frame.set_flags(schema | FLAG_METADATA);
            metadata.encode(frame.payload_mut());
        }
        // The args, after the head and the metadata: what is compressed.
        let value_at = frame.len();
        let limit = config.max_frame + LEN_PREFIX;
        codec::encode_as(config.format, args, &mut frame, limit).map_err(|e| match e {
            codec::EncodeError::TooLarge { size, limit } => Error::FrameTooLarge {
                method,
                what: "request",
                size: size - LEN_PREFIX,
                limit: limit - LEN_PREFIX,
            },
            codec::EncodeError::Serde(message) => Error::Encode { method, message },
        })?;
        let algorithm = self.compression()?;
        let threshold = config.compression_threshold;
        // What the server accepts is looked up (a lock) only for a value
        // that may be compressed: not on the common call.
        if algorithm != Compression::None && frame.len() - value_at >= threshold {
            let with = Compressor::new(algorithm.if_accepted(self.peer_features()), threshold);
            // The budget and call id before the args are patched at send
            // time, and the metadata stays readable: only the args are
            // compressed.
            frame.compress_value(value_at, with);
        }
        Ok(frame)
    }

    /// The compression these calls ask for (their options', else the
    /// channel's), or the error if this build lacks it.
    pub(super) fn compression(&self) -> Result<Compression, Error> {
        let chosen = self.options.compression();
        chosen.unwrap_or(self.config().compression).check()
    }

    /// What the server (any server, on a balanced channel) said it
    /// accepts; everything while none is connected. The request is encoded
    /// before its connection is known: one that goes to a server not
    /// accepting its algorithm is made raw again when it is sent (see
    /// `Connection::try_send`), so this only spares that work.
    fn peer_features(&self) -> u32 {
        let known = match &self.route {
            Route::One { endpoint, .. } => endpoint.current().map(|c| c.peer_features()),
            Route::Balanced(balancer) => balancer
                .members()
                .iter()
                .filter_map(|m| m.endpoint.current())
                .map(|c| c.peer_features())
                .reduce(|a, b| a | b),
        };
        known.unwrap_or(compression::built_features())
    }
}
