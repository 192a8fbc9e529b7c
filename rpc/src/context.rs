//! The per-call context a handler can read: deadline, peer, call id, method.
//!
//! Handlers take no context argument (the trait stays a plain Rust trait);
//! instead the server runs each handler inside a task-local scope:
//!
//! ```no_run
//! # async fn handler() {
//! let ctx = rpc::context::current();
//! println!("{} from {:?}, {:?} left", ctx.method(), ctx.peer_addr(), ctx.remaining());
//! # }
//! ```
//!
//! A call made from inside a handler inherits the remaining budget: its
//! deadline is the earlier of its own timeout and this context's deadline.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// What the server knows about the call a handler is serving.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) deadline: Instant,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) call_id: u64,
    pub(crate) method: &'static str,
}

impl Context {
    /// When the caller stops waiting: the request's budget, counted from when the
    /// server received it (clamped to the server's maximum).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The time left before [`deadline`](Self::deadline) (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The caller's address, for transports that have one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The call's id on its connection (unique among that connection's in-flight calls).
    pub fn call_id(&self) -> u64 {
        self.call_id
    }

    /// The method being served, as `"Service.method"`.
    pub fn method(&self) -> &'static str {
        self.method
    }
}

tokio::task_local! {
    static CURRENT: Context;
}

/// The context of the call being served.
///
/// # Panics
///
/// Outside a handler (there is no call to describe). Use [`try_current`] in code
/// that also runs outside handlers.
pub fn current() -> Context {
    try_current().expect("rpc::context::current() called outside an rpc handler")
}

/// The context of the call being served, or `None` outside a handler.
pub fn try_current() -> Option<Context> {
    CURRENT.try_with(Context::clone).ok()
}

/// The current handler's deadline, if any (cheaper than cloning the context).
#[inline]
pub(crate) fn current_deadline() -> Option<Instant> {
    CURRENT.try_with(|c| c.deadline).ok()
}

/// `start + d`, or a deadline so far away that it never comes if that
/// overflows (`Duration::MAX` means "no deadline", not a panic).
pub(crate) fn deadline_after(start: Instant, d: Duration) -> Instant {
    deadline_in(start, d).0
}

/// [`deadline_after`], and the time from `start` to it (without subtracting
/// one instant from another, which costs more than it looks).
#[inline]
pub(crate) fn deadline_in(start: Instant, d: Duration) -> (Instant, Duration) {
    // About 30 years: further than any call lives.
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    match start.checked_add(d) {
        Some(at) => (at, d),
        None => (start + FAR, FAR),
    }
}

/// Runs `f` with `ctx` as the current context on every poll, and when it is
/// dropped (a cancelled handler's destructors still see their call). Unlike
/// `LocalKey::scope`, the result is `Unpin` when `f` is, so the server can
/// poll a handler once in its connection's driver and then move it into a
/// task of its own.
pub(crate) fn scope<F: Future + Unpin>(ctx: Context, f: F) -> Scoped<F> {
    Scoped { ctx, fut: Some(f) }
}

/// A future that runs with a call's context set: see [`scope`].
#[derive(Debug)]
pub(crate) struct Scoped<F> {
    ctx: Context,
    /// `None` once finished or dropped (see `Drop`).
    fut: Option<F>,
}

impl<F: Future + Unpin> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        let Scoped { ctx, fut } = this;
        CURRENT.sync_scope(ctx.clone(), || {
            let Some(f) = fut.as_mut() else {
                unreachable!("polled after completion");
            };
            let poll = std::pin::Pin::new(f).poll(cx);
            if poll.is_ready() {
                // Done: dropped now, while the context is still set, so
                // `Drop` need not set it again.
                *fut = None;
            }
            poll
        })
    }
}

impl<F> Drop for Scoped<F> {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            CURRENT.sync_scope(self.ctx.clone(), move || drop(fut));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn current_is_set_inside_a_scope_only() {
        assert!(try_current().is_none());
        let ctx = Context {
            deadline: Instant::now() + Duration::from_secs(5),
            peer: None,
            call_id: 42,
            method: "Svc.m",
        };
        let (id, left) = scope(
            ctx,
            Box::pin(async { (current().call_id(), current().remaining()) }),
        )
        .await;
        assert_eq!(id, 42);
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
        assert!(current_deadline().is_none());
    }
}
