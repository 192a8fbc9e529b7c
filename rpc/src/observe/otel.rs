//! The OpenTelemetry bridge (feature `opentelemetry`): when spans go to
//! OpenTelemetry through `tracing-opentelemetry`, a server's span takes the
//! caller's remote context as its parent, and the trace context a client
//! sends is its span's own. Without the feature (or without the layer),
//! the ids this library makes are recorded as span fields instead.

use tracing::Span;

use super::trace::TraceContext;

/// Makes `incoming` (the caller's context) the OpenTelemetry parent of a
/// server's `span`.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn set_parent(_span: &Span, _incoming: Option<&TraceContext>) {}

/// The context of `span` as OpenTelemetry knows it, if it does.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn context_of(_span: &Span) -> Option<TraceContext> {
    None
}
