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

#[cfg(feature = "opentelemetry")]
pub(crate) fn set_parent(span: &Span, incoming: Option<&TraceContext>) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let Some(incoming) = incoming else {
        return;
    };
    let state = incoming
        .state()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let flags = if incoming.sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(incoming.trace_id().to_be_bytes()),
        SpanId::from_bytes(incoming.span_id().to_be_bytes()),
        flags,
        true,
        state,
    );
    // Fails only for a span that is not OpenTelemetry's (no layer): then
    // the ids recorded as fields are all there is.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

#[cfg(feature = "opentelemetry")]
pub(crate) fn context_of(span: &Span) -> Option<TraceContext> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let cx = span.context();
    let ours = cx.span();
    let ours = ours.span_context();
    if !ours.is_valid() {
        return None;
    }
    let trace_id = u128::from_be_bytes(ours.trace_id().to_bytes());
    let span_id = u64::from_be_bytes(ours.span_id().to_bytes());
    let mut context = TraceContext::new(trace_id, span_id, ours.is_sampled())?;
    let state = ours.trace_state().header();
    if !state.is_empty() {
        context = context.with_state(&state);
    }
    Some(context)
}
