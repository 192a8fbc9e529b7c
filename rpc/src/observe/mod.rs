//! What an operator sees of the calls: a `tracing` span per call on each
//! side, W3C trace context carried across the wire, and metrics.
//!
//! # Spans
//!
//! Every call has one span on the client (`rpc.client`, from the call's
//! start to its outcome, a child of the span current where it was made) and
//! one on the server (`rpc.server`, around the handler). For a method that
//! returns a stream, both last until the stream ends (or, on the client,
//! until it is dropped: `"Cancelled"`). Both are at level INFO, with
//! the fields of OpenTelemetry's RPC semantic conventions:
//!
//! | field | value |
//! |---|---|
//! | `otel.kind` | `"client"` / `"server"` |
//! | `otel.name` | `"Service/method"` |
//! | `rpc.system` | `"zrpc"` |
//! | `rpc.service`, `rpc.method` | the wire names: `"Calculator"`, `"add"` |
//! | `rpc.call_id` | the call's id on its connection (on the client, its last attempt's; see below) |
//! | `network.peer.address`, `network.peer.port` | the caller (server) |
//! | `server.address`, `server.port` | the server the call went to (client; see below for attempts) |
//! | `trace_id`, `span_id`, `parent_span_id` | W3C trace context, hex |
//! | `rpc.status` | at the end: `"Ok"`, or the failure (`"DeadlineExceeded"`, `"Panicked"`, ... the [`Error`](crate::Error) variant's name), or `"Cancelled"` for a call dropped before its outcome |
//! | `otel.status_code`, `error.message` | `"ERROR"` and the error's text, on failure |
//!
//! An application's own `Err(E)` is a successful call (`"Ok"`): the call
//! delivered its value. With no subscriber listening at INFO, a span costs
//! one cached check per call, nothing is allocated, and no trace context
//! is made (a handler still forwards the context its caller sent).
//!
//! A unary call whose attempts a balanced channel makes (on a channel of
//! several servers, or with interceptors) also has a span per attempt
//! (`rpc.attempt`, INFO, a child of the call's span): the first, each retry
//! and each hedge, with `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.attempt` (its number, from 1), `rpc.hedge` (`true` for a hedge),
//! `server.address` and `server.port`, `rpc.call_id` once it went out, and
//! at its end `rpc.status` (the reply's status, or the failure; or
//! `"Cancelled"` for an attempt dropped unfinished: the one a hedge made
//! needless, or any when the call itself was dropped), with
//! `otel.status_code` and `error.message` as above. The call's span then
//! names the server and call id of the attempt whose outcome became the
//! call's (of the last that went out, for a call dropped unfinished). The
//! trace context sent is the call's, so the servers' spans are children of
//! the call's span, beside its attempts'.
//!
//! # Trace context
//!
//! A client whose span is recorded sends `traceparent` (and the vendors'
//! `tracestate`, if the trace came with one) in the call's metadata: the
//! trace of the handler it is called from, or a new one. The server's span
//! records the caller's span as `parent_span_id`, and calls its handler
//! makes continue the trace ([`Context::trace`](crate::context::Context::trace)).
//! A caller that sets `traceparent` itself keeps its own. With the feature
//! `opentelemetry` and `tracing-opentelemetry`'s layer, the server's span
//! is parented to the remote context in OpenTelemetry as well, and exported
//! traces join across processes.
//!
//! # Metrics
//!
//! With the feature `metrics`, through the `metrics` facade (install any
//! recorder; nothing is exported by this crate):
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `rpc_client_calls_total`, `rpc_server_calls_total` | counter | `service`, `method`, `status` | calls ended, by outcome |
//! | `rpc_client_call_duration_seconds`, `rpc_server_call_duration_seconds` | histogram | `service`, `method`, `status` | from start to outcome |
//! | `rpc_client_calls_in_flight`, `rpc_server_calls_in_flight` | gauge | `service`, `method` | started, not ended |
//! | `rpc_client_connections`, `rpc_server_connections` | gauge | | connections open |
//! | `rpc_client_bytes_sent_total`, `..._received_total` (and `rpc_server_...`) | counter | | frame bytes |
//! | `rpc_client_endpoints` | gauge | `state` | a balanced channel's servers by state |
//! | `rpc_client_retries_total`, `rpc_client_hedges_total` | counter | `service`, `method` | attempts sent again |
//! | `rpc_stream_items_sent_total`, `rpc_stream_items_received_total` | counter | `side`, `service`, `method` | stream items |
//!
//! `status` takes the values of the span's `rpc.status`. A call the server
//! refuses before any handler runs (`UnknownMethod`, `SchemaMismatch`,
//! `ShuttingDown`, `Overloaded`, out of time while held back) counts in
//! `rpc_server_calls_total` with no duration sample and no span; an
//! unknown method counts as `service="unknown"`, `method="unknown"`.
//! Stream items count as they move, so a long-lived stream shows before it
//! ends.

pub(crate) mod call;
pub(crate) mod metrics;
mod otel;
pub mod trace;

pub use call::SYSTEM;
pub use trace::TraceContext;
