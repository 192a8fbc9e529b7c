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
//!
//! # Tasks a handler spawns
//!
//! The context belongs to the handler's own future: the server lends it to
//! the thread for each poll of that future, and takes it back after. **A bare
//! `tokio::spawn` (or `tokio::task::spawn_blocking`) does not carry it**: the
//! new task is polled on its own, so in it [`try_current`] is `None`, and a
//! call made there gets the client's own timeout (30 s by default) instead
//! of what is left of the caller's budget. Carry it explicitly:
//!
//! - [`spawn`] spawns a task that runs with the current context (if any);
//! - [`Context::scope`] wraps a future so that it runs with a context, for a
//!   `JoinSet`, `join_all` or a spawn function of your own;
//! - [`spawn_blocking`] and [`Context::enter`] do the same for a closure, on
//!   tokio's blocking pool or wherever you run it.
//!
//! ```no_run
//! # #[rpc::service] trait Store { async fn get(&self, key: String) -> Option<String>; }
//! # async fn handler(store: StoreClient, keys: Vec<String>) -> Result<(), rpc::Error> {
//! // Fan out: each task's call has what is left of this call's deadline.
//! let mut tasks = tokio::task::JoinSet::new();
//! for key in keys {
//!     let store = store.clone();
//!     tasks.spawn(rpc::context::current().scope(async move { store.get(key).await }));
//! }
//! // The same for one task, in one step:
//! let one = rpc::context::spawn(async move { store.get("k".into()).await });
//! // CPU-bound work on the blocking pool, with the context at hand:
//! let left = rpc::context::spawn_blocking(|| rpc::context::current().remaining()).await;
//! # Ok(()) }
//! ```
//!
//! A call future made in the handler and spawned afterwards needs none of
//! this: a call takes the inherited deadline when its method is called, not
//! when it first runs.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Metadata;
use crate::observe::TraceContext;
use crate::transport::{Credentials, Peer};

/// What the server knows about the call a handler is serving.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) deadline: Instant,
    pub(crate) peer: Peer,
    pub(crate) call_id: u64,
    pub(crate) method: &'static str,
    /// What the caller sent with the call (and interceptors added).
    pub(crate) metadata: Option<Arc<Metadata>>,
    /// What goes back with the reply (see [`set_reply_metadata`]).
    pub(crate) reply_metadata: Option<Box<Metadata>>,
    /// Where the call stands in a distributed trace (shared: a context is
    /// moved with every handler and cloned by `current()`).
    pub(crate) trace: Option<Arc<TraceContext>>,
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

    /// The caller's address, for transports that have one (TCP, TLS).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.addr()
    }

    /// The caller, as its transport knows it: an address, a Unix socket
    /// peer's credentials, an in-memory pipe, a TLS peer's address and
    /// certificates.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The caller's process credentials (uid, gid, pid), for a call over a
    /// Unix domain socket.
    pub fn peer_credentials(&self) -> Option<Credentials> {
        self.peer.credentials()
    }

    /// The certificate chain the caller presented over mutual TLS (feature
    /// `tls`), DER-encoded, its own first; empty for a caller that sent
    /// none and over other transports. Parse it with any X.509 crate to
    /// authorize by the subject's name, say.
    pub fn peer_certificates(&self) -> &[Vec<u8>] {
        self.peer.certificates()
    }

    /// The call's id on its connection (unique among that connection's in-flight calls).
    pub fn call_id(&self) -> u64 {
        self.call_id
    }

    /// The method being served, as `"Service.method"`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The metadata the caller sent with the call (see [`crate::metadata`]),
    /// with what the server's interceptors added.
    pub fn metadata(&self) -> &Metadata {
        static NONE: Metadata = Metadata::new();
        self.metadata.as_deref().unwrap_or(&NONE)
    }

    /// Where the call stands in a distributed trace: the trace the caller
    /// sent (W3C `traceparent`), continued by this server's span if it is
    /// recorded (see [`crate::observe`]). Calls made from the handler carry
    /// it on.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_deref()
    }

    /// Wraps `fut` so that it runs with this context: [`current`] gives it
    /// on every poll of `fut` (and while `fut` is dropped), and calls made
    /// in it inherit this deadline, wherever the wrapper is polled. Spawn
    /// the wrapper to carry a handler's context into a task:
    ///
    /// ```no_run
    /// # async fn handler() {
    /// let task = tokio::spawn(rpc::context::current().scope(async {
    ///     rpc::context::current().remaining()
    /// }));
    /// # }
    /// ```
    ///
    /// The context moves into the wrapper and is lent to the thread for each
    /// poll, never cloned. The wrapper is `Send` and `Unpin` when `fut` is.
    pub fn scope<F: Future>(self, fut: F) -> Scoped<F> {
        Scoped {
            ctx: Some(self),
            fut: Some(fut),
        }
    }

    /// Runs `f` with this context as the current one, on this thread: for
    /// synchronous code that runs outside the handler's future, such as a
    /// closure on another thread. The context is taken back when `f`
    /// returns or panics. (Clone the context to enter it more than once.)
    ///
    /// ```no_run
    /// # async fn handler() {
    /// let ctx = rpc::context::current();
    /// std::thread::spawn(move || ctx.enter(|| rpc::context::current().call_id()));
    /// # }
    /// ```
    pub fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        let mut home = Some(self);
        let _entered = Entered::new(&mut home);
        f()
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

/// Adds a pair to the metadata sent back with the current call's reply
/// (the client reads it with [`crate::metadata::capture`]). For a method
/// that returns a stream, only what is set before the handler returns goes
/// out, with the Response that precedes the stream. It belongs to the
/// handler's own future: set in a task the handler spawned, or under a
/// [`Context::scope`] (which runs with a copy of the context), it does not
/// go out; outside a handler it does nothing.
pub fn set_reply_metadata(key: impl Into<String>, value: impl Into<Vec<u8>>) {
    CURRENT.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            ctx.reply_metadata
                .get_or_insert_default()
                .insert(key, value);
        }
    });
}

/// Sets the current call's metadata to what the server's interceptors left
/// (`metadata`), and adds what they want sent back.
pub(crate) fn set_call_metadata(metadata: Metadata, reply: Metadata) {
    CURRENT.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            // Unchanged (the common case): no new allocation.
            if ctx.metadata() != &metadata {
                ctx.metadata = Some(Arc::new(metadata));
            }
            if !reply.is_empty() {
                ctx.reply_metadata.get_or_insert_default().extend(&reply);
            }
        }
    });
}

/// The current call's reply metadata, taken (the reply carries it).
pub(crate) fn take_reply_metadata() -> Option<Box<Metadata>> {
    CURRENT.with(|c| c.borrow_mut().as_mut()?.reply_metadata.take())
}

/// The current handler's trace context, if any (see [`Context::trace`]).
pub(crate) fn current_trace() -> Option<Arc<TraceContext>> {
    CURRENT.with(|c| c.borrow().as_ref()?.trace.clone())
}

/// The current handler's deadline, if any (cheaper than cloning the context).
#[inline]
pub(crate) fn current_deadline() -> Option<Instant> {
    CURRENT.with(|c| c.borrow().as_ref().map(|c| c.deadline))
}

/// Spawns `fut` as a tokio task that runs with the current call's context
/// (see [`Context::scope`]); outside a handler, a plain `tokio::spawn`.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn` does.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(Scoped {
        ctx: try_current(),
        fut: Some(fut),
    })
}

/// Runs `f` on tokio's blocking pool with the current call's context (see
/// [`Context::enter`]); outside a handler, a plain
/// `tokio::task::spawn_blocking`. As with any blocking task, dropping the
/// handle does not stop `f`.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::task::spawn_blocking` does.
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let ctx = try_current();
    tokio::task::spawn_blocking(move || match ctx {
        Some(ctx) => ctx.enter(f),
        None => f(),
    })
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

pin_project_lite::pin_project! {
    /// A future that runs with a call's context: made by [`Context::scope`]
    /// (and [`spawn`]). The server runs every handler in one.
    ///
    /// Unlike tokio's `LocalKey::scope`, it is `Unpin` when the inner future
    /// is, so the server can poll a handler once in its connection's driver
    /// and then move it into a task of its own; and it sets the context
    /// while the inner future is dropped too, so a cancelled handler's
    /// destructors still see their call.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Scoped<F> {
        // The call's context: here between polls, lent to the thread during
        // one. `None` only for `spawn` outside a handler.
        ctx: Option<Context>,
        // `None` once finished or dropped (see the drop below).
        #[pin]
        fut: Option<F>,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.fut.is_some() {
                let _entered = Entered::new(this.ctx);
                this.fut.set(None);
            }
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let _entered = Entered::new(this.ctx);
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            panic!("`rpc::context::Scoped` polled after completion");
        };
        let poll = fut.poll(cx);
        if poll.is_ready() {
            // Done: dropped now, while the context is still set, so the
            // drop of `Scoped` need not set it again.
            this.fut.set(None);
        }
        poll
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("ctx", &self.ctx)
            .field("done", &self.fut.is_none())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
