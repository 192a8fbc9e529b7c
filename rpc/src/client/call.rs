//! The future of one call, written out by hand.
//!
//! The common case (the current connection takes the call at once) is a few
//! words of state: the request, then the call in flight. Everything else
//! (waiting in line for a slot, reconnecting, sending again after a server
//! refused the call while shutting down) is the general path,
//! [`Inner::send`], boxed.
//!
//! As `async` blocks, the same logic nested three deep (generated method,
//! `Channel::call`, `Inner::send`, `Connection::call`) made a 1.7 KB future,
//! because each level kept its arguments next to the future it awaited.
//! Every call moved it into its caller's state, a copy that was the largest
//! single item in the client's instruction count on the comparison bench.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;

use super::connection::{CallError, Connection, Encoded, Failure, InFlight, Tried, When};
use super::{Inner, decode_response, is_shutting_down};
use crate::Error;
use crate::protocol::{FrameBuf, Payload};

type Boxed = Pin<Box<dyn Future<Output = Result<Payload, Error>> + Send + Sync>>;

/// A call on a [`Channel`](super::Channel): resolves to the method's return
/// value, decoded as `R` and turned into `T`. Dropping it before then cancels
/// the call on the server.
#[doc(hidden)]
#[must_use = "a call does nothing unless awaited"]
pub struct Call<R, T> {
    /// The channel, unless the call knows its connection (`conn`), which
    /// leads to it (see [`Connection::channel`]): then the call holds one
    /// reference, not two, to take and give back.
    channel: Option<Arc<Inner>>,
    /// The connection to try first, if the channel knows it without a lock
    /// (else the channel's current one is looked up).
    conn: Option<Arc<Connection>>,
    method: &'static str,
    /// Until the first poll, the deadline of the handler the call was made
    /// in, if any; from then on, the call's deadline if it has one of its
    /// own (else it counts its budget from when the connection stamps it:
    /// see [`When::After`]).
    deadline: Option<Instant>,
    /// Until the first poll, the handle's timeout; from then on, the budget
    /// the call started with (sent to the server, and reported if it runs
    /// out).
    budget: Duration,
    /// The request, kept in place until the call ends (the connection
    /// borrows it to queue it).
    request: Encoded,
    step: Step,
    /// Decodes the reply's value (see [`crate::codec::decode_flat`]).
    decode: fn(&[u8]) -> Result<R, String>,
    map: fn(R) -> T,
    _out: PhantomData<fn() -> R>,
}

enum Step {
    /// Not polled yet (the request is sent at the first poll, like any
    /// `async fn`'s work); or the error encoding it gave, to report then
    /// (boxed: it is rare, and this is every call's state).
    Unsent(Option<Box<Error>>),
    /// Queued on a connection; waiting for the outcome.
    InFlight(InFlight),
    /// The general path.
    General(Boxed),
    Done,
}

impl<R, T> std::fmt::Debug for Call<R, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.step {
            Step::Unsent(_) => "unsent",
            Step::InFlight(_) => "in flight",
            Step::General(_) => "sending",
            Step::Done => "done",
        };
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("step", &step)
            .finish_non_exhaustive()
    }
}

impl<R, T> Call<R, T> {
    /// A call with the handle's `timeout`, made inside a handler whose
    /// deadline is `inherited` (if it is): it gets the earlier of the two.
    #[allow(clippy::too_many_arguments)] // one per field, from one caller
    pub(super) fn new(
        channel: Option<Arc<Inner>>,
        conn: Option<Arc<Connection>>,
        method: &'static str,
        inherited: Option<Instant>,
        timeout: Duration,
        frame: Result<FrameBuf, Error>,
        decode: fn(&[u8]) -> Result<R, String>,
        map: fn(R) -> T,
    ) -> Self {
        let (request, unsent) = match frame {
            Ok(frame) => (Encoded::Buf(frame), None),
            Err(e) => (Encoded::Shared(Bytes::new()), Some(Box::new(e))),
        };
        Call {
            channel,
            conn,
            method,
            deadline: inherited,
            budget: timeout,
            request,
            step: Step::Unsent(unsent),
            decode,
            map,
            _out: PhantomData,
        }
    }

    /// However far the call got, a deadline failure reports the budget the
    /// call started with.
    fn failed(&self, e: Error) -> Error {
        match e {
            Error::DeadlineExceeded { method, .. } => Error::DeadlineExceeded {
                method,
                budget: self.budget,
            },
            e => e,
        }
    }

    /// Starts the call (like any `async fn`'s work, at its first poll):
    /// made in a handler, its deadline is the earlier of its handle's
    /// timeout from now and the deadline it inherited, and its budget the
    /// time left until then (the one read of the clock for such a call).
    /// Otherwise its budget is its handle's timeout, and its deadline that
    /// long after its batch started (see `connection::State::stamps`): the
    /// clock is read by the first call of each batch, not here.
    fn start(&mut self) -> When {
        let Some(inherited) = self.deadline else {
            self.budget = self.budget.min(crate::context::FAR);
            return When::After(self.budget);
        };
        let now = Instant::now();
        let (own, budget) = crate::context::deadline_in(now, self.budget);
        let (deadline, budget) = if inherited < own {
            (inherited, inherited.saturating_duration_since(now))
        } else {
            (own, budget)
        };
        (self.deadline, self.budget) = (Some(deadline), budget);
        When::At(deadline)
    }

    /// The general path from attempt `first` (see [`Inner::send`]), until
    /// `deadline`, through the channel; the request goes with it.
    /// `started`: when the call started, if it went this way at once. `via`:
    /// the connection the call was on. Without a channel left (every handle
    /// to it was dropped), a call can still wait for a slot on `via`, but
    /// one refused cannot go elsewhere.
    fn general(
        &mut self,
        first: usize,
        deadline: Instant,
        started: Option<Instant>,
        via: Option<&Arc<Connection>>,
    ) -> Step {
        let frame = std::mem::replace(&mut self.request, Encoded::Shared(Bytes::new()));
        let method = self.method;
        let channel = self
            .channel
            .clone()
            .or_else(|| via.and_then(|c| c.channel()));
        // Only from the start may the budget count from when the call
        // started; a call refused and sent again has waited since.
        let (made_at, refused) = if first == 0 {
            (started, false)
        } else {
            (None, true)
        };
        match (channel, via) {
            (Some(channel), _) => Step::General(Box::pin(channel.send(
                method,
                frame.into_frame(),
                deadline,
                made_at,
                refused,
                first,
            ))),
            (None, Some(conn)) if first == 0 => {
                let conn = conn.clone();
                Step::General(Box::pin(async move {
                    match conn
                        .call(method, frame.into_frame(), deadline, made_at)
                        .await
                    {
                        Ok((payload, _)) => Ok(payload),
                        Err(CallError::NotSent(_)) if conn.is_draining_for_shutdown() => {
                            Err(Error::ShuttingDown { method })
                        }
                        Err(CallError::NotSent(_)) => Err(Error::disconnected(
                            method,
                            "the connection takes no more calls, and the channel is gone",
                        )),
                        Err(CallError::Failed(e)) => Err(e),
                    }
                }))
            }
            // Refused by a server shutting down, with no channel to find
            // another connection: it did not run.
            _ => Step::General(Box::pin(async move { Err(Error::ShuttingDown { method }) })),
        }
    }
}

impl<R, T> Future for Call<R, T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            let payload = match &mut this.step {
                Step::Unsent(unsent) => {
                    if let Some(e) = unsent.take() {
                        this.step = Step::Done;
                        return Poll::Ready(Err(*e));
                    }
                    let when = this.start();
                    if this.budget.is_zero() {
                        // Out of time before it started (an inherited
                        // deadline passed): not sent, and no reconnect for it.
                        this.step = Step::Done;
                        return Poll::Ready(Err(Error::DeadlineExceeded {
                            method: this.method,
                            budget: Duration::ZERO,
                        }));
                    }
                    let conn = match this.conn.take() {
                        Some(conn) => Some(conn),
                        None => this.channel.as_ref().and_then(|c| c.current()),
                    };
                    let tried = match conn {
                        Some(conn) => conn.try_send(
                            this.method,
                            &mut this.request,
                            when,
                            this.budget,
                            cx.waker(),
                        ),
                        None => Tried::NotNow(None),
                    };
                    match tried {
                        Tried::Sent(call) => {
                            // The waker is stored with the call: nothing to
                            // look at until it is woken.
                            this.step = Step::InFlight(call);
                            return Poll::Pending;
                        }
                        Tried::NotNow(conn) => {
                            let now = Instant::now();
                            let deadline = match when {
                                When::At(at) => at,
                                When::After(budget) => crate::context::deadline_after(now, budget),
                            };
                            this.step = this.general(0, deadline, Some(now), conn.as_ref());
                        }
                        Tried::Failed(e) => {
                            this.step = Step::Done;
                            return Poll::Ready(Err(this.failed(e)));
                        }
                    }
                    continue;
                }
                Step::InFlight(call) => {
                    let mut refused = None;
                    match ready!(call.poll(cx, &mut refused)) {
                        Ok(payload)
                            if !is_shutting_down(&payload) || call.connection().is_usable() =>
                        {
                            payload
                        }
                        // Refused by a server shutting down: it did not run,
                        // so it goes to another connection (the general path,
                        // past its first step, which would pick this one
                        // again), with the deadline it has (counted from now
                        // if the refusal came before the writer stamped it).
                        Ok(_) => {
                            let deadline = refused.unwrap_or_else(|| {
                                crate::context::deadline_after(Instant::now(), this.budget)
                            });
                            let conn = call.connection().clone();
                            this.step = this.general(1, deadline, None, Some(&conn));
                            continue;
                        }
                        Err(Failure::Closed(reason)) => {
                            this.step = Step::Done;
                            return Poll::Ready(Err(Error::disconnected(this.method, reason)));
                        }
                        Err(Failure::Deadline) => {
                            this.step = Step::Done;
                            return Poll::Ready(Err(Error::DeadlineExceeded {
                                method: this.method,
                                budget: this.budget,
                            }));
                        }
                    }
                }
                Step::General(send) => match ready!(send.as_mut().poll(cx)) {
                    Ok(payload) => payload,
                    Err(e) => {
                        this.step = Step::Done;
                        return Poll::Ready(Err(this.failed(e)));
                    }
                },
                Step::Done => panic!("a call polled after it finished"),
            };
            this.step = Step::Done;
            return Poll::Ready(
                decode_response(this.method, this.budget, payload, this.decode).map(this.map),
            );
        }
    }
}
