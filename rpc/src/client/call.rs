//! The future a generated client's method returns: a call on one server
//! (an [`Attempt`], see `attempt.rs`, where a call's fate is decided), on
//! the only server of a balanced channel, or made elsewhere (a balanced
//! call's attempts, an intercepted call); and its reply, decoded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::Attempt;
use super::balance::load::Load;
use super::reply::decode_response;
use crate::Error;
use crate::observe::call::Observed;
use crate::protocol::Payload;

/// A call on a [`Channel`](super::Channel): resolves to the method's return
/// value, decoded as `R` and turned into `T`. Dropping it before then cancels
/// the call on the server.
#[doc(hidden)]
#[must_use = "a call does nothing unless awaited"]
pub struct Call<R, T> {
    route: Route,
    delivery: Delivery<R, T>,
}

/// How a call's reply reaches its caller: decoded, turned into the
/// method's return type, and recorded as the call's outcome.
pub(super) struct Delivery<R, T> {
    /// The method's shape as this client was built: named in a
    /// `SchemaMismatch`, whose reply carries only the server's.
    pub(super) shape: &'static str,
    /// Decodes the reply's value, in the channel's format (chosen when the
    /// call is made: see `codec::decoder`).
    pub(super) decode: fn(&[u8]) -> Result<R, String>,
    pub(super) map: fn(R) -> T,
    /// The call's span and metrics.
    pub(super) observed: Observed,
}

/// A call whose attempts are made elsewhere, boxed: a balanced call's, as
/// `balanced::run` makes them, or an intercepted call's (see
/// `intercepted.rs`). Resolves to the reply and the budget the call started
/// with.
pub(super) type Run =
    Pin<Box<dyn Future<Output = (Result<Payload, Error>, Duration)> + Send + Sync>>;

/// How the call reaches a server.
enum Route {
    /// The one server of a channel: the common case, in place.
    One(Attempt),
    /// The only server of a balanced channel: a call as on a plain channel,
    /// its outcome fed to the server's load signal (a choice among one needs
    /// no more).
    Sole(Attempt, Sole),
    /// Attempts on the servers of a balanced channel, chosen and retried
    /// by `balance::run`; resolves to the reply and the budget the call
    /// started with.
    Balanced { run: Run, method: &'static str },
}

impl<R, T> std::fmt::Debug for Call<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.route {
            Route::One(attempt) | Route::Sole(attempt, _) => attempt.fmt(f),
            Route::Balanced { method, .. } => write!(f, "Call({method}, balanced)"),
        }
    }
}

impl<R, T> Call<R, T> {
    /// A call of one attempt on `endpoint`.
    pub(super) fn one(attempt: Attempt, delivery: Delivery<R, T>) -> Self {
        Call {
            route: Route::One(attempt),
            delivery,
        }
    }

    /// A call on the only server of a balanced channel, whose `load` it
    /// keeps up to date.
    pub(super) fn sole(attempt: Attempt, load: Arc<Load>, delivery: Delivery<R, T>) -> Self {
        let sole = Sole {
            load,
            started: None,
        };
        Call {
            route: Route::Sole(attempt, sole),
            delivery,
        }
    }

    /// A call whose attempts `run` makes.
    pub(super) fn balanced(method: &'static str, run: Run, delivery: Delivery<R, T>) -> Self {
        Call {
            route: Route::Balanced { run, method },
            delivery,
        }
    }
}

impl<R, T> Future for Call<R, T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // Whatever is logged while the call is polled is the call's.
        let (reply, method, budget) = {
            let _in_span = this.delivery.observed.span().enter();
            match &mut this.route {
                Route::One(attempt) => {
                    let reply = ready!(Pin::new(&mut *attempt).poll(cx));
                    (reply, attempt.method(), attempt.budget())
                }
                Route::Sole(attempt, sole) => {
                    let started = *sole.started.get_or_insert_with(|| {
                        sole.load.start();
                        Instant::now()
                    });
                    let reply = ready!(Pin::new(&mut *attempt).poll(cx));
                    sole.started = None;
                    let now = Instant::now();
                    match &reply {
                        Ok(_) => sole.load.success(now - started, now),
                        Err(_) => sole.load.failure(now - started, now),
                    }
                    (reply, attempt.method(), attempt.budget())
                }
                Route::Balanced { run, method } => {
                    let (reply, budget) = ready!(run.as_mut().poll(cx));
                    (reply, *method, budget)
                }
            }
        };
        let delivery = &mut this.delivery;
        let outcome = reply
            .and_then(|payload| {
                decode_response(method, delivery.shape, budget, payload, delivery.decode)
            })
            .map(delivery.map);
        delivery.observed.finish_client(&outcome);
        Poll::Ready(outcome)
    }
}

/// What a call on the only server of a balanced channel reports.
pub(super) struct Sole {
    load: Arc<Load>,
    /// Set while the call is out (it counts in the server's calls in flight).
    started: Option<Instant>,
}

impl Drop for Sole {
    /// A call dropped while out was cancelled: it tells nothing of the server.
    fn drop(&mut self) {
        if self.started.is_some() {
            self.load.abandon();
        }
    }
}
