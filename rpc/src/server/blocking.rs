//! A `#[rpc(blocking)]` handler: a plain `fn` run on tokio's blocking pool,
//! so that it holds up no async worker thread (and no connection served by
//! one) while it runs.
//!
//! Its handler future, like any other, runs with the call's context and is
//! dropped at the deadline or on Cancel. The function itself is on a thread
//! of its own: it gets the context through `context::spawn_blocking`, and
//! its panic is raised again in the handler future, where the server turns
//! it into a `Panicked` reply as for an async handler. A thread cannot be
//! interrupted: once started, the function runs to its end, and a reply
//! made after the handler was dropped is dropped with it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

use super::dispatch::{Call, Handler, Reply};
use crate::context;
use crate::protocol::Status;

impl Call {
    /// Runs `handler` (decode, call the user's `fn`, encode) on tokio's
    /// blocking pool with the call's context: the handler of a
    /// `#[rpc(blocking)]` method.
    pub fn blocking<F>(self, handler: F) -> Handler
    where
        F: FnOnce(&Call) -> Reply + Send + 'static,
    {
        let id = self.id;
        Box::pin(async move {
            // Here, in the handler's first poll, the context is set: taken
            // along to the blocking thread.
            let task = AbortUnstarted(context::spawn_blocking(move || handler(&self)));
            match task.await {
                Ok(reply) => reply,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Only a runtime shutting down cancels a blocking task that
                // this future still waits for.
                Err(_) => Status::ShuttingDown
                    .reply(id, "the server's runtime shut down before the handler ran")
                    .into(),
            }
        })
    }
}

/// A blocking task that is aborted when this is dropped: a call dropped
/// (deadline, Cancel, lost connection) before a blocking thread took its
/// function up never runs it. One already running is not stopped.
struct AbortUnstarted<T>(JoinHandle<T>);

impl<T> Future for AbortUnstarted<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortUnstarted<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
