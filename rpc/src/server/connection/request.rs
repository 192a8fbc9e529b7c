//! A request as the driver takes it in: its head and metadata read, its
//! method found, its budget capped, its stream (if any) opened, and its
//! handler started at once or held for a free slot.

use std::sync::Arc;
use std::task::Waker;

use tokio::time::Instant;

use super::{Driver, End, HeldBack, Parked};
use crate::Compression;
use crate::Metadata;
use crate::deadline;
use crate::observe::metrics;
use crate::protocol::{Compressor, Payload, RequestHead, Status, features, take_fingerprint};
use crate::server::dispatch::Call;
use crate::transport::budget::Grant;

impl Driver {
    pub(super) fn on_request(
        &mut self,
        id: u64,
        payload: Payload,
        arrived: Arrived,
        waker: &Waker,
    ) -> Option<End> {
        let Arrived {
            grant,
            compressed,
            at: received,
            metadata,
            fingerprint,
        } = arrived;
        self.cancel_credits = self.cancel_credits.saturating_add(1);
        let split = RequestHead::split(payload).and_then(|(head, mut args)| {
            let fingerprint = if fingerprint {
                Some(take_fingerprint(&mut args)?)
            } else {
                None
            };
            Some((head, fingerprint, args))
        });
        let Some((head, fingerprint, mut args)) = split else {
            let _ = self
                .outbox
                .send(Status::Decode.reply(id, "request shorter than its head"));
            return self
                .abuse
                .record()
                .then(|| End::Abuse("too many malformed requests".into()));
        };
        let metadata = if metadata {
            match Metadata::decode(&args, self.shared.config.max_metadata) {
                Ok((metadata, used)) => {
                    args.advance(used);
                    Some(Arc::new(metadata))
                }
                Err(message) => {
                    // That call fails; the connection is fine.
                    let _ = self
                        .outbox
                        .send(Status::InvalidMetadata.reply(id, &message));
                    return None;
                }
            }
        } else {
            None
        };
        if self.drain.is_some() {
            let _ = self
                .outbox
                .send(Status::ShuttingDown.reply(id, "the connection is draining"));
            let method = self.shared.router.find(head.method_id).map(|f| f.1.name);
            metrics::refused(method, Status::ShuttingDown.name());
            return None;
        }
        let config = &self.shared.config;
        // Only the driver takes permits, so one seen here is still there
        // after the handler's first poll (`start` takes it). Requests start
        // in the order they arrived.
        let start_now = self.held.is_empty() && self.permits.available_permits() > 0;
        let size = args.len();
        if !start_now {
            HeldBack::own(&mut args);
        }
        let Some(found) = self.shared.router.find(head.method_id) else {
            self.unknown_method(id, head.method_id);
            return None;
        };
        let desc = found.1;
        if fingerprint.is_some_and(|f| f != desc.fingerprint) {
            // Nothing of the args is decoded, and no handler runs (nor
            // does a stream open: its items are dropped on arrival).
            let _ = self
                .outbox
                .send(Status::SchemaMismatch.reply(id, desc.shape));
            metrics::refused(Some(desc.name), Status::SchemaMismatch.name());
            return None;
        }
        // The budget counts from when the request arrived, not from when a
        // handler slot freed up for it. A method that may run without a
        // deadline (a watch) is not capped.
        let budget = if desc.no_deadline {
            head.budget
        } else {
            head.budget.min(config.max_budget)
        };
        let stream = if desc.streams() {
            // Checked now, not when a handler slot frees up as for other
            // calls: registered under an open stream's id, it would take
            // that stream's place (its credits, its end, its count toward
            // the cap) even if it then ran out of time before it started.
            if self.streams.get(id).is_some() || self.calls.contains(id) {
                return Some(End::Protocol(format!("call id {id} is already in flight")));
            }
            match self.open_stream(id, desc.name, budget, desc.request_stream) {
                Some(stream) => Some(stream),
                None => return None,
            }
        } else {
            None
        };
        let call = Call {
            id,
            args,
            // At most the client's Hello's limit, a `u32`.
            max_frame: u32::try_from(self.reply_limit).unwrap_or(u32::MAX),
            reply_metadata_limit: (self.peer_features & features::METADATA != 0)
                .then_some(u32::try_from(self.shared.config.max_metadata).unwrap_or(u32::MAX)),
            stream,
            compress: self.reply_compressor(compressed),
            format: self.format,
        };
        let Some(handler) = self.shared.router.start(found, call) else {
            self.unknown_method(id, head.method_id);
            return None;
        };
        let request = Parked {
            id,
            method: desc.name,
            handler,
            deadline: deadline::after(received, budget),
            budget,
            grant,
            streaming: desc.streams(),
            metadata,
        };
        if start_now {
            self.start(request, None, received, waker)
        } else {
            // Its id is checked for duplicates when it starts.
            self.held.push(request, size);
            None
        }
    }
}

/// How a request arrived, besides its bytes.
pub(super) struct Arrived {
    /// Its share of the frame budget, if it needed one.
    pub(super) grant: Option<Grant>,
    /// The algorithm it came compressed with.
    pub(super) compressed: Option<Compression>,
    pub(super) at: Instant,
    /// It carries a metadata block (after its head).
    pub(super) metadata: bool,
    /// It carries its method's schema fingerprint (right after its head).
    pub(super) fingerprint: bool,
}

impl Driver {
    /// How the reply to a request that came compressed with `compressed`
    /// (if it did) is compressed: in kind, as gRPC does (the client sent
    /// it, so it accepts it); else with the server's choice if the client
    /// advertised it.
    fn reply_compressor(&self, compressed: Option<Compression>) -> Compressor {
        let config = &self.shared.config;
        let algorithm =
            compressed.unwrap_or_else(|| config.compression.if_accepted(self.peer_features));
        Compressor::new(
            algorithm.if_accepted(self.peer_features),
            config.compression_threshold,
        )
    }

    fn unknown_method(&self, id: u64, method_id: u64) {
        let services = self.shared.router.service_names().join(", ");
        let message =
            format!("no method with id {method_id:#018x} (this server serves: {services})");
        let _ = self.outbox.send(Status::UnknownMethod.reply(id, &message));
        metrics::refused(None, Status::UnknownMethod.name());
    }
}
