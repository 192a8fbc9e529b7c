//! One call as an operator sees it, on either side: its span, opened when
//! the call starts and closed with its outcome, and its metrics. A call's
//! [`Observed`] is made where the call starts and finished where its fate
//! is decided; dropped unfinished, the call was cancelled (the client
//! dropped it, the connection went).
//!
//! With no subscriber listening (or none at INFO for this crate), a span
//! costs a check of a cached level per call, and nothing is allocated: the
//! fields a span is made with are constants, and what takes work to find is
//! recorded only in a span that is recorded. Without the `metrics` feature
//! no clock is read.

use std::fmt::Display;
use std::sync::Arc;

use tracing::Span;
use tracing::field::Empty;

use super::metrics::{self, Side};
use super::trace::TraceContext;
use crate::Error;
use crate::protocol::Status;
use crate::transport::{Address, Peer};

/// `rpc.system`: this library's protocol (its Hello's magic says ZRPC).
pub const SYSTEM: &str = "zrpc";

/// A call being observed: nothing (one word, no allocation) when neither
/// its span is recorded nor metrics are built in, as a call's future is
/// kept small.
#[derive(Debug)]
pub(crate) struct Observed(Option<Box<Watched>>);

#[derive(Debug)]
struct Watched {
    span: Span,
    side: Side,
    method: &'static str,
    metrics: metrics::Call,
}

/// The span of a call nobody watches.
static NO_SPAN: Span = Span::none();

/// Whether any subscriber listens at INFO: one atomic load. The span macro
/// checks as much, but with `tracing`'s `log` feature on (which any crate
/// in a build may turn on) its disabled branch still builds the fields for
/// `log`; a call's spans are not worth that when nobody listens.
#[inline]
fn listened() -> bool {
    tracing::Level::INFO <= tracing::level_filters::LevelFilter::current()
}

/// Whether a call's outcome is wanted at all: a span is recorded, or
/// metrics are built in. Calls nobody watches take the short path.
#[inline]
fn watched() -> bool {
    cfg!(feature = "metrics") || listened()
}

/// `"Service.method"` as its two parts.
pub(crate) fn split(method: &str) -> (&str, &str) {
    method.rsplit_once('.').unwrap_or(("", method))
}

/// `"Service/method"`: the span name the conventions give an RPC.
fn otel_name(method: &str) -> String {
    let (service, name) = split(method);
    format!("{service}/{name}")
}

impl Observed {
    /// Nothing to observe (a stream whose end is not a call's outcome).
    pub(crate) const fn none() -> Observed {
        Observed(None)
    }

    fn new(span: Span, side: Side, method: &'static str) -> Observed {
        if span.is_disabled() && !cfg!(feature = "metrics") {
            return Observed(None);
        }
        Observed(Some(Box::new(Watched {
            span,
            side,
            method,
            metrics: metrics::Call::start(side, method),
        })))
    }

    /// A call of `method` a server took in from `peer`, with the trace
    /// context its metadata carried. Gives the context the handler's
    /// calls continue: a new span's, or the caller's forwarded as it came
    /// when no span is recorded here (an intermediary that does not trace
    /// passes the context on unchanged).
    pub(crate) fn server(
        method: &'static str,
        call_id: u64,
        peer: &Peer,
        incoming: Option<TraceContext>,
    ) -> (Observed, Option<Arc<TraceContext>>) {
        if !watched() {
            return (Observed(None), incoming.map(Arc::new));
        }
        Observed::server_watched(method, call_id, peer, incoming)
    }

    #[inline(never)]
    fn server_watched(
        method: &'static str,
        call_id: u64,
        peer: &Peer,
        incoming: Option<TraceContext>,
    ) -> (Observed, Option<Arc<TraceContext>>) {
        // A root: the driver's task is no parent of the call; the caller,
        // across the wire, is (through the trace ids below).
        let span = if listened() {
            tracing::info_span!(
                parent: None,
                "rpc.server",
                otel.kind = "server",
                otel.name = Empty,
                rpc.system = SYSTEM,
                rpc.service = Empty,
                rpc.method = Empty,
                rpc.call_id = call_id,
                network.peer.address = Empty,
                network.peer.port = Empty,
                trace_id = Empty,
                span_id = Empty,
                parent_span_id = Empty,
                rpc.status = Empty,
                otel.status_code = Empty,
                error.message = Empty,
            )
        } else {
            Span::none()
        };
        let trace = if span.is_disabled() {
            incoming.map(Arc::new)
        } else {
            name(&span, method);
            match peer.addr() {
                Some(addr) => {
                    span.record("network.peer.address", tracing::field::display(addr.ip()));
                    span.record("network.peer.port", addr.port());
                }
                None => {
                    span.record("network.peer.address", tracing::field::display(peer));
                }
            }
            if let Some(parent) = &incoming {
                span.record("parent_span_id", parent.span_id_hex());
            }
            super::otel::set_parent(&span, incoming.as_ref());
            let trace = super::otel::context_of(&span)
                .or_else(|| incoming.as_ref().map(TraceContext::child))
                .unwrap_or_else(TraceContext::root);
            record_ids(&span, &trace);
            Some(Arc::new(trace))
        };
        (Observed::new(span, Side::Server, method), trace)
    }

    /// A call of `method` a client makes, from within the current span, and
    /// within a trace: the one its caller set in the call's metadata
    /// (`own`), else the handler's if it is made from a handler. Gives the
    /// trace context to send: a new span's if this one is recorded, else
    /// the trace's as it came, else none.
    pub(crate) fn client(
        method: &'static str,
        own: Option<TraceContext>,
    ) -> (Observed, Option<Arc<TraceContext>>) {
        let inherited = match own {
            Some(own) => Some(Arc::new(own)),
            None => crate::context::current_trace(),
        };
        if !watched() {
            return (Observed(None), inherited);
        }
        Observed::client_watched(method, inherited)
    }

    #[inline(never)]
    fn client_watched(
        method: &'static str,
        inherited: Option<Arc<TraceContext>>,
    ) -> (Observed, Option<Arc<TraceContext>>) {
        let span = if listened() {
            tracing::info_span!(
                "rpc.client",
                otel.kind = "client",
                otel.name = Empty,
                rpc.system = SYSTEM,
                rpc.service = Empty,
                rpc.method = Empty,
                server.address = Empty,
                server.port = Empty,
                rpc.call_id = Empty,
                trace_id = Empty,
                span_id = Empty,
                parent_span_id = Empty,
                rpc.status = Empty,
                otel.status_code = Empty,
                error.message = Empty,
            )
        } else {
            Span::none()
        };
        let trace = if span.is_disabled() {
            inherited
        } else {
            name(&span, method);
            if let Some(parent) = &inherited {
                span.record("parent_span_id", parent.span_id_hex());
                // In a task the handler spawned (`context::spawn`), or under
                // a trace its caller set, no current span says whose child
                // this is in OpenTelemetry: the trace context does.
                super::otel::set_parent(&span, Some(parent));
            }
            let trace = super::otel::context_of(&span)
                .or_else(|| inherited.as_deref().map(TraceContext::child))
                .unwrap_or_else(TraceContext::root);
            record_ids(&span, &trace);
            Some(Arc::new(trace))
        };
        (Observed::new(span, Side::Client, method), trace)
    }

    /// Whether the span is recorded (a subscriber listens): what only it
    /// shows need not be worked out otherwise.
    pub(crate) fn records(&self) -> bool {
        !self.span().is_disabled()
    }

    /// The span, to run the call's work in.
    pub(crate) fn span(&self) -> &Span {
        self.0.as_ref().map_or(&NO_SPAN, |watched| &watched.span)
    }

    /// Records how the call ended: `status` is the name of its outcome
    /// (`"Ok"`, or a status or error kind), with the error's text if any.
    pub(crate) fn finish(&mut self, status: &'static str, error: Option<&dyn Display>) {
        // Taken: the span closes with the outcome (unless its work still
        // holds it), not whenever what carried it is dropped.
        let Some(watched) = self.0.take() else {
            return;
        };
        let span = &watched.span;
        if !span.is_disabled() {
            span.record("rpc.status", status);
            if let Some(error) = error {
                span.record("otel.status_code", "ERROR");
                span.record("error.message", tracing::field::display(error));
            }
        }
        watched.metrics.finish(watched.side, watched.method, status);
    }

    /// Records the outcome of a client's call.
    pub(crate) fn finish_client<T>(&mut self, outcome: &Result<T, Error>) {
        self.finish_failure(outcome.as_ref().err());
    }

    /// Records a call's outcome: `failure`, or none.
    pub(crate) fn finish_failure(&mut self, failure: Option<&Error>) {
        match failure {
            None => self.finish("Ok", None),
            Some(e) => self.finish(error_name(e), Some(e)),
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.finish("Cancelled", None);
    }
}

/// Records an attempt of the call being polled, sent as call `id` to
/// `server`, in the call's client span: the span is current while the call
/// is polled. Only a current span of a client call is written to: a call
/// nobody watches enters no span, and must not write into its caller's; and
/// an attempt of a balanced call, in its own span, is recorded by its
/// [`AttemptSpan`].
pub(crate) fn record_attempt(id: u64, server: impl FnOnce() -> Address) {
    if !listened() {
        return;
    }
    let span = Span::current();
    if span.metadata().is_none_or(|m| m.name() != "rpc.client") {
        return;
    }
    span.record("rpc.call_id", id);
    record_server(&span, &server());
}

/// The server of an attempt, in `span`: its host and port apart, as the
/// conventions have them, for a server on TCP.
fn record_server(span: &Span, server: &Address) {
    match server.tcp() {
        Some(addr) => {
            span.record("server.address", tracing::field::display(addr.ip()));
            span.record("server.port", addr.port());
        }
        None => {
            span.record("server.address", tracing::field::display(server));
        }
    }
}

/// One attempt of a call the balancer makes (the first, a retry, or a
/// hedge), as a span of its own, `rpc.attempt`, under the call's client
/// span: its number, whether it is a hedge, its server, its call id once it
/// went out, and how it ended (`"Cancelled"` if it was dropped unfinished:
/// the other attempt of a hedge won, or the call itself went). The client
/// span names the server and call id of the attempt whose outcome became
/// the call's (for a call dropped unfinished, of the last attempt that went
/// out; an attempt that never went out has no call id, and leaves the one
/// before it in place: a field once recorded cannot be cleared). Only made
/// when the client span is recorded.
pub(crate) struct AttemptSpan {
    span: Span,
    /// The call's client span.
    call: Span,
    server: Address,
    id: Option<u64>,
    ended: bool,
}

impl AttemptSpan {
    /// Attempt `number` (from 1) of the call being polled, to `server`.
    pub(crate) fn start(
        method: &'static str,
        number: u32,
        hedge: bool,
        server: impl FnOnce() -> Address,
    ) -> Option<AttemptSpan> {
        if !listened() {
            return None;
        }
        let call = Span::current();
        if call.metadata().is_none_or(|m| m.name() != "rpc.client") {
            return None;
        }
        let span = tracing::info_span!(
            parent: &call,
            "rpc.attempt",
            rpc.system = SYSTEM,
            rpc.service = Empty,
            rpc.method = Empty,
            rpc.attempt = number,
            rpc.hedge = hedge,
            rpc.call_id = Empty,
            server.address = Empty,
            server.port = Empty,
            rpc.status = Empty,
            otel.status_code = Empty,
            error.message = Empty,
        );
        let (service, name) = split(method);
        span.record("rpc.service", service);
        span.record("rpc.method", name);
        let server = server();
        record_server(&span, &server);
        Some(AttemptSpan {
            span,
            call,
            server,
            id: None,
            ended: false,
        })
    }

    /// The span, to poll the attempt in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The attempt went out as call `id`: in its span, and in the call's.
    pub(crate) fn sent(&mut self, id: u64) {
        if self.id != Some(id) {
            self.id = Some(id);
            self.span.record("rpc.call_id", id);
            self.call.record("rpc.call_id", id);
            record_server(&self.call, &self.server);
        }
    }

    /// The attempt ended: with a reply of this status byte (a failure
    /// itself, if not `Ok`), or without one.
    pub(crate) fn end(mut self, outcome: Result<u8, &Error>) {
        self.ended = true;
        let status = match outcome {
            Ok(status) => Status::from_u8(status).map_or("Decode", Status::name),
            Err(e) => {
                self.span
                    .record("error.message", tracing::field::display(e));
                error_name(e)
            }
        };
        self.span.record("rpc.status", status);
        if status != "Ok" {
            self.span.record("otel.status_code", "ERROR");
        }
        record_server(&self.call, &self.server);
        if let Some(id) = self.id {
            self.call.record("rpc.call_id", id);
        }
    }
}

impl Drop for AttemptSpan {
    fn drop(&mut self) {
        if !self.ended {
            self.span.record("rpc.status", "Cancelled");
        }
    }
}

/// Records the call's names in its span. Not among the fields the span is
/// made with: those are evaluated even for a disabled span when `tracing`
/// forwards to `log` (its `log` feature, which a dependency may turn on),
/// and these format and search a string.
fn name(span: &Span, method: &str) {
    let (service, name) = split(method);
    span.record("otel.name", otel_name(method));
    span.record("rpc.service", service);
    span.record("rpc.method", name);
}

fn record_ids(span: &Span, trace: &TraceContext) {
    span.record("trace_id", trace.trace_id_hex());
    span.record("span_id", trace.span_id_hex());
}

/// The outcome an error stands for, as spans and metrics name it: its
/// variant's name (the statuses that travel have the same names).
pub(crate) fn error_name(e: &Error) -> &'static str {
    match e {
        Error::DeadlineExceeded { .. } => "DeadlineExceeded",
        Error::Disconnected { .. } => "Disconnected",
        Error::UnknownMethod { .. } => "UnknownMethod",
        Error::Overloaded { .. } => "Overloaded",
        Error::ShuttingDown { .. } => "ShuttingDown",
        Error::Aborted { .. } => "Aborted",
        Error::Panicked { .. } => "Panicked",
        Error::FrameTooLarge { .. } => "FrameTooLarge",
        Error::Decode { .. } => "Decode",
        Error::Encode { .. } => "Encode",
        Error::Protocol { .. } => "Protocol",
        Error::Io { .. } => "Io",
        Error::InvalidMetadata { .. } => "InvalidMetadata",
        Error::Unauthenticated { .. } => "Unauthenticated",
        Error::PermissionDenied { .. } => "PermissionDenied",
        Error::SchemaMismatch { .. } => "SchemaMismatch",
        Error::Config(_) => "Config",
    }
}
