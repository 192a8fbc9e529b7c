//! The per-call context a handler can read: deadline, peer, call id, method.
//!
//! Handlers take no context argument (the trait stays a plain Rust trait);
//! instead the server sets it while it polls each handler, as a task-local
//! would be:
//!
//! ```no_run
//! # async fn handler() {
//! let ctx = rpc::context::current();
//! println!("{} from {}, {:?} left", ctx.method(), ctx.peer(), ctx.remaining());
//! # }
//! ```
//!
//! A call made from inside a handler inherits the remaining budget: its
//! deadline is the earlier of its own timeout and this context's deadline.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::transport::{Credentials, Peer};

/// What the server knows about the call a handler is serving.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) deadline: Instant,
    pub(crate) peer: Peer,
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

    /// The caller's address, for transports that have one (TCP).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.addr()
    }

    /// The caller, as its transport knows it: an address, a Unix socket
    /// peer's credentials, an in-memory pipe.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The caller's process credentials (uid, gid, pid), for a call over a
    /// Unix domain socket.
    pub fn peer_credentials(&self) -> Option<Credentials> {
        self.peer.credentials()
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

thread_local! {
    /// The context of the handler this thread is polling, if any: set around
    /// each poll of a handler (and its drop), and restored after, which is
    /// what a task-local is. Not `tokio::task_local!`: this is entered on
    /// every poll of every handler, so it is a const-initialized slot (no
    /// lazy initialization to check on each access), and the deadline is
    /// read from it without cloning the context.
    static CURRENT: RefCell<Option<Context>> = const { RefCell::new(None) };
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
    CURRENT.with(|c| c.borrow().clone())
}

/// The current handler's deadline, if any (cheaper than cloning the context).
#[inline]
pub(crate) fn current_deadline() -> Option<Instant> {
    CURRENT.with(|c| c.borrow().as_ref().map(|c| c.deadline))
}

/// Lends a call's context to the thread until dropped, then takes it back
/// and puts back what was there (also when a handler panics: the thread goes
/// on to poll others). Lent, not cloned: a handler is entered on every poll.
struct Entered<'a> {
    home: &'a mut Option<Context>,
    previous: Option<Context>,
}

impl<'a> Entered<'a> {
    #[inline]
    fn new(home: &'a mut Option<Context>) -> Self {
        let previous = CURRENT.with(|c| c.replace(home.take()));
        Entered { home, previous }
    }
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        let previous = self.previous.take();
        *self.home = CURRENT.with(|c| c.replace(previous));
    }
}

/// Runs `f` with `ctx` as the current context on every poll, and when it is
/// dropped (a cancelled handler's destructors still see their call). Unlike
/// `LocalKey::scope`, the result is `Unpin` when `f` is, so the server can
/// poll a handler once in its connection's driver and then move it into a
/// task of its own.
pub(crate) fn scope<F: Future + Unpin>(ctx: Context, f: F) -> Scoped<F> {
    Scoped {
        ctx: Some(ctx),
        fut: Some(f),
    }
}

/// A future that runs with a call's context set: see [`scope`].
#[derive(Debug)]
pub(crate) struct Scoped<F> {
    /// The call's context: here between polls, lent to the thread during one.
    ctx: Option<Context>,
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
        let _entered = Entered::new(ctx);
        let Some(f) = fut.as_mut() else {
            unreachable!("polled after completion");
        };
        let poll = std::pin::Pin::new(f).poll(cx);
        if poll.is_ready() {
            // Done: dropped now, while the context is still set, so `Drop`
            // need not set it again.
            *fut = None;
        }
        poll
    }
}

impl<F> Drop for Scoped<F> {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            let _entered = Entered::new(&mut self.ctx);
            drop(fut);
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
            peer: Peer::Memory,
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

    fn ctx(call_id: u64) -> Context {
        Context {
            deadline: Instant::now() + Duration::from_secs(5),
            peer: Peer::Memory,
            call_id,
            method: "Svc.m",
        }
    }

    /// A handler polled inside another's poll sees its own context, and the
    /// outer one's comes back after; a handler that panics leaves nothing
    /// behind for the next one polled on the thread.
    #[tokio::test]
    async fn scopes_nest_and_a_panic_restores_the_context() {
        let inner = scope(ctx(2), Box::pin(async { current().call_id() }));
        let outer = scope(
            ctx(1),
            Box::pin(async move {
                let before = current().call_id();
                let inside = inner.await;
                (before, inside, current().call_id())
            }),
        );
        assert_eq!(outer.await, (1, 2, 1));
        assert!(try_current().is_none());

        let panicking = scope(
            ctx(3),
            Box::pin(async {
                assert_eq!(current().call_id(), 3);
                panic!("the handler failed");
            }),
        );
        let caught =
            futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(panicking)).await;
        assert!(caught.is_err());
        assert!(
            try_current().is_none(),
            "the panicked handler's context leaked"
        );
        assert!(current_deadline().is_none());
    }

    /// A handler dropped before it finished runs its destructors with its
    /// context set.
    #[tokio::test]
    async fn a_dropped_handler_sees_its_context_in_destructors() {
        struct Probe(std::sync::Arc<std::sync::Mutex<Option<u64>>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = try_current().map(|c| c.call_id());
            }
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let probe = Probe(seen.clone());
        let mut handler = scope(
            ctx(7),
            Box::pin(async move {
                let _probe = probe;
                std::future::pending::<()>().await;
            }),
        );
        assert!(futures::poll!(&mut handler).is_pending());
        drop(handler);
        assert_eq!(*seen.lock().unwrap(), Some(7));
        assert!(try_current().is_none());
    }
}
