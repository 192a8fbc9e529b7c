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

use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::connection::{Failure, InFlight, Tried};
use super::{Inner, decode_response, is_shutting_down};
use crate::Error;
use crate::protocol::{FrameBuf, Payload};

type Boxed = Pin<Box<dyn Future<Output = Result<Payload, Error>> + Send>>;

/// A call on a [`Channel`](super::Channel): resolves to the method's return
/// value, decoded as `R` and turned into `T`. Dropping it before then cancels
/// the call on the server.
#[doc(hidden)]
#[must_use = "a call does nothing unless awaited"]
pub struct Call<R, T> {
    inner: Arc<Inner>,
    method: &'static str,
    deadline: Instant,
    /// When the call was made: its budget counts from here.
    made_at: Instant,
    /// The time it had when it was made, reported if it runs out.
    budget: Duration,
    step: Step,
    map: fn(R) -> T,
    _out: PhantomData<fn() -> R>,
}

enum Step {
    /// Not polled yet (the request is sent at the first poll, like any
    /// `async fn`'s work).
    Unsent(Result<FrameBuf, Error>),
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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        inner: Arc<Inner>,
        method: &'static str,
        deadline: Instant,
        made_at: Instant,
        budget: Duration,
        frame: Result<FrameBuf, Error>,
        map: fn(R) -> T,
    ) -> Self {
        Call {
            inner,
            method,
            deadline,
            made_at,
            budget,
            step: Step::Unsent(frame),
            map,
            _out: PhantomData,
        }
    }

    /// However far the call got, a deadline failure reports the budget the
    /// call had when it was made.
    fn failed(&self, e: Error) -> Error {
        match e {
            Error::DeadlineExceeded { method, .. } => Error::DeadlineExceeded {
                method,
                budget: self.budget,
            },
            e => e,
        }
    }

    /// The general path from the start: the current connection as it is,
    /// then others.
    fn general(&self, frame: FrameBuf) -> Step {
        let inner = self.inner.clone();
        let (method, deadline) = (self.method, self.deadline);
        Step::General(Box::pin(inner.send(
            method,
            frame,
            deadline,
            Some(self.made_at),
            false,
            0,
        )))
    }
}

impl<R: DeserializeOwned, T> Future for Call<R, T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            let payload = match &mut this.step {
                Step::Unsent(_) => {
                    let Step::Unsent(frame) = std::mem::replace(&mut this.step, Step::Done) else {
                        unreachable!("just matched")
                    };
                    let frame = match frame {
                        Ok(frame) => frame,
                        Err(e) => return Poll::Ready(Err(e)),
                    };
                    // The budget sent is the one counted when the call was
                    // made, just before: no second read of the clock.
                    let tried = match this.inner.current() {
                        Some(conn) => conn.try_send(
                            this.method,
                            frame,
                            this.deadline,
                            this.budget,
                            cx.waker(),
                        ),
                        None => Tried::NotNow(frame),
                    };
                    match tried {
                        Tried::Sent(call) => {
                            // The waker is stored with the call: nothing to
                            // look at until it is woken.
                            this.step = Step::InFlight(call);
                            return Poll::Pending;
                        }
                        Tried::NotNow(frame) => this.step = this.general(frame),
                        Tried::Failed(e) => return Poll::Ready(Err(this.failed(e))),
                    }
                    continue;
                }
                Step::InFlight(call) => match ready!(call.poll(cx)) {
                    Ok(payload) if !is_shutting_down(&payload) || call.connection().is_usable() => {
                        payload
                    }
                    // Refused by a server shutting down: it did not run, so
                    // it goes to another connection (the general path, past
                    // its first step, which would pick this one again).
                    Ok(_) => {
                        let frame = call.take_frame().expect("taken only here");
                        let inner = this.inner.clone();
                        let (method, deadline) = (this.method, this.deadline);
                        this.step = Step::General(Box::pin(
                            inner.send(method, frame, deadline, None, true, 1),
                        ));
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
                },
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
                decode_response::<R>(this.method, this.budget, payload).map(this.map),
            );
        }
    }
}
