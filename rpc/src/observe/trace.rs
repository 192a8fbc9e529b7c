//! W3C trace context (<https://www.w3.org/TR/trace-context/>), carried in a
//! call's metadata as `traceparent` and `tracestate`, so that the server's
//! span of a call is the child of the client's, across processes.
//!
//! `traceparent` is `00-{trace id: 32 hex}-{parent id: 16 hex}-{flags: 2 hex}`,
//! lowercase. A value this module cannot read is ignored (the call goes on,
//! as the recommendation says: a receiver restarts the trace rather than
//! fail the request). `tracestate` is vendors' opaque data, forwarded as it
//! came when the trace continues, and dropped if over 512 bytes (the
//! recommendation's limit).

use std::sync::{Arc, OnceLock};

use crate::Metadata;
use crate::rng::Rng;

/// The metadata key of the trace's identity and the caller's span.
pub const TRACEPARENT: &str = "traceparent";
/// The metadata key of vendors' trace data.
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` forwarded.
const MAX_TRACESTATE: usize = 512;

/// Where a call stands in a distributed trace: the trace it belongs to, and
/// the span that is its parent on the next hop. A handler reads it with
/// [`Context::trace`](crate::context::Context::trace); calls made from the
/// handler continue the trace.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    state: Option<Arc<str>>,
}

impl TraceContext {
    /// The trace's id (never 0).
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The span that the next hop's span is a child of (never 0).
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// Whether the trace is sampled (the `sampled` flag, bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 != 0
    }

    /// The vendors' `tracestate`, as it came.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The trace id as 32 lowercase hex digits, as spans and logs show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// A context with these ids, `sampled`, and no vendor state: for a
    /// trace that starts elsewhere (another tracing system's ids).
    pub fn new(trace_id: u128, span_id: u64, sampled: bool) -> Option<TraceContext> {
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id,
            span_id,
            flags: u8::from(sampled),
            state: None,
        })
    }

    /// This context with vendors' `state` (dropped if over 512 bytes).
    pub(crate) fn with_state(mut self, state: &str) -> TraceContext {
        self.state = (state.len() <= MAX_TRACESTATE && !state.is_empty()).then(|| Arc::from(state));
        self
    }

    /// The same trace, with a new span of this side as the parent of the
    /// next hop.
    pub(crate) fn child(&self) -> TraceContext {
        TraceContext {
            span_id: new_span_id(),
            ..self.clone()
        }
    }

    /// A new trace (sampled), its root span on this side.
    pub(crate) fn root() -> TraceContext {
        let trace_id = loop {
            let id = (u128::from(rng().next_u64()) << 64) | u128::from(rng().next_u64());
            if id != 0 {
                break id;
            }
        };
        TraceContext {
            trace_id,
            span_id: new_span_id(),
            flags: 1,
            state: None,
        }
    }

    /// The `traceparent` value.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// Reads a `traceparent` value (and a `tracestate`, kept if the former
    /// is good); `None` if it is not one this version can use.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let b = traceparent.as_bytes();
        // Version 00 is exactly 55 bytes; a later version may append fields
        // after a '-', which a reader of 00 ignores (ff is invalid).
        if b.len() < 55 || (b.len() > 55 && (b[0..2] == *b"00" || b[55] != b'-')) {
            return None;
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' || &b[0..2] == b"ff" {
            return None;
        }
        hex(&b[0..2])?;
        let trace_id = hex(&b[3..35])?;
        let span_id = hex(&b[36..52])? as u64;
        let flags = hex(&b[53..55])? as u8;
        let mut context = TraceContext::new(trace_id, span_id, false)?;
        context.flags = flags;
        Some(match tracestate {
            Some(state) => context.with_state(state),
            None => context,
        })
    }

    /// The context a call's metadata carries, if any.
    pub(crate) fn from_metadata(metadata: &Metadata) -> Option<TraceContext> {
        let parent = metadata.get_str(TRACEPARENT)?;
        TraceContext::parse(parent, metadata.get_str(TRACESTATE))
    }

    /// `metadata` with this context in it, in place of any it carried (a
    /// caller's own `traceparent` is this context's parent, or this context
    /// itself when no span of this side is recorded).
    pub(crate) fn add_to(&self, metadata: &Metadata) -> Metadata {
        let mut with = metadata.clone();
        with.remove(TRACEPARENT);
        with.remove(TRACESTATE);
        with.insert(TRACEPARENT, self.traceparent());
        if let Some(state) = &self.state {
            with.insert(TRACESTATE, state.as_bytes());
        }
        with
    }
}

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TraceContext({})", self.traceparent())
    }
}

/// Lowercase hex only (uppercase is invalid in `traceparent`).
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(v))
    })
}

/// Ids need to be unique, not unpredictable: the balancer's generator,
/// one per process, seeded per process.
fn rng() -> &'static Rng {
    static RNG: OnceLock<Rng> = OnceLock::new();
    RNG.get_or_init(Rng::new)
}

fn new_span_id() -> u64 {
    loop {
        let id = rng().next_u64();
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips() {
        let t = TraceContext::parse(GOOD, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(t.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(t.span_id(), 0x00f067aa0ba902b7);
        assert!(t.sampled());
        assert_eq!(t.state(), Some("congo=t61rcWkgMzE"));
        assert_eq!(t.traceparent(), GOOD);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn bad_values_are_ignored_not_errors() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // invalid version
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // 00 has no more
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
        }
        // A later version's extra fields are skipped.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert!(TraceContext::parse(later, None).is_some());
        // Oversized vendor state is dropped, the trace kept.
        let big = "k=".to_string() + &"v".repeat(600);
        let t = TraceContext::parse(GOOD, Some(&big)).unwrap();
        assert_eq!(t.state(), None);
    }

    #[test]
    fn a_child_keeps_the_trace_and_takes_a_new_span() {
        let parent = TraceContext::parse(GOOD, Some("a=b")).unwrap();
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert_eq!(child.state(), Some("a=b"));
        let root = TraceContext::root();
        assert_ne!(root.trace_id(), parent.trace_id());
        assert!(root.sampled());
    }

    #[test]
    fn metadata_carries_it_in_place_of_any_other() {
        let t = TraceContext::parse(GOOD, Some("a=b")).unwrap();
        let with = t.add_to(&Metadata::new());
        assert_eq!(TraceContext::from_metadata(&with), Some(t.clone()));
        let mut own = Metadata::new();
        own.insert(
            TRACEPARENT,
            "00-11111111111111111111111111111111-2222222222222222-00",
        );
        own.insert("x", "y");
        let with = t.add_to(&own);
        assert_eq!(with.get_all(TRACEPARENT).count(), 1);
        assert_eq!(TraceContext::from_metadata(&with), Some(t));
        assert_eq!(with.get_str("x"), Some("y"));
    }
}
