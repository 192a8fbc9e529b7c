//! One attempt of a call on one server, written out by hand, and the one place that
//! decides its fate: its reply, its deadline, a cancel (the future dropped),
//! a lost connection, and a refusal by a server shutting down (the call did
//! not run there, so it goes to another connection).
//!
//! The common case is a few words of state: the request, then the call in
//! flight on a connection. Waiting (in line for a slot under the in-flight
//! cap, or for a connection) is a boxed future, so that rare state does not
//! make every call's future larger: each level of `async` nesting keeps its
//! arguments beside the future it awaits, and callers move call futures into
//! their own state.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::connection::{Connection, Encoded, Failure, InFlight, NoSlot, Tried};
use super::endpoint::Endpoint;
use super::reply::is_shutting_down;
use super::streaming::Streaming;
use crate::Error;
use crate::deadline;
use crate::protocol::{Compressor, FrameBuf, Payload};
use crate::stream::Encoder;

/// Times a call moves to another connection, at most, because one refused
/// it or stopped taking calls before it went out. Past that it fails:
/// `ShuttingDown` if a server refused it, else `Disconnected` (not sent).
const MAX_MOVES: u8 = 3;
/// One attempt of a call on one server (see the module docs): the whole
/// call on a channel of one server, one of several on a balanced one.
pub(super) struct Attempt {
    endpoint: Arc<Endpoint>,
    /// The connection to try first, if the handle knew it without a lock.
    first: Option<Arc<Connection>>,
    method: &'static str,
    /// Until the first poll, the deadline of the handler the call was made
    /// in, if any; from then on, the call's deadline.
    deadline: Option<Instant>,
    /// Until the first poll, the handle's timeout; from then on, the budget
    /// the call started with (reported if it runs out).
    budget: Duration,
    /// The request, kept until the call ends, to send again elsewhere.
    request: Encoded,
    /// Times the call moved to another connection.
    moves: u8,
    /// Times it may move: on a balanced channel another endpoint is the
    /// better place for a refused call, so its attempts do not move.
    max_moves: u8,
    /// A server refused the call (a ShuttingDown reply): it did not run
    /// there. Only such a reply sets it: a call that merely found its
    /// connection drained was refused by no one.
    refused: bool,
    /// What a streaming call adds (boxed: most calls stream nothing).
    stream: Option<Box<Streaming>>,
    step: Step,
}

type Waiting = Pin<Box<dyn Future<Output = Waited> + Send + Sync>>;

enum Step {
    /// Not polled yet (the request is sent at the first poll, like any
    /// `async fn`'s work); or the error encoding it gave, to report then
    /// (boxed: it is rare, and this is every call's state).
    Unsent(Option<Box<Error>>),
    /// Queued on a connection; waiting for the outcome.
    InFlight(InFlight),
    /// A streaming call's Response came, and its stream follows on this
    /// call (see [`Attempt::take_open`]).
    Open(InFlight),
    /// Waiting for a slot or a connection.
    Waiting(Waiting),
    Done,
}

/// How a wait ended.
enum Waited {
    /// A slot under the in-flight cap of this connection is the call's.
    Slot(Arc<Connection>),
    /// A connection that takes calls.
    Connection(Arc<Connection>),
    /// The connection stopped taking calls while the call waited in line.
    Gone,
    Failed(Error),
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.step {
            Step::Unsent(_) => "unsent",
            Step::InFlight(_) => "in flight",
            Step::Open(_) => "open",
            Step::Waiting(_) => "waiting",
            Step::Done => "done",
        };
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("step", &step)
            .finish_non_exhaustive()
    }
}

impl Attempt {
    /// A call with the handle's `timeout`; made inside a handler, it gets
    /// the handler's deadline if that is earlier.
    pub(super) fn new(
        endpoint: Arc<Endpoint>,
        first: Option<Arc<Connection>>,
        method: &'static str,
        timeout: Duration,
        frame: Result<FrameBuf, Error>,
    ) -> Self {
        let (request, unsent) = match frame {
            Ok(frame) => (Encoded::Buf(frame), None),
            Err(e) => (Encoded::Shared(Bytes::new()), Some(Box::new(e))),
        };
        Attempt {
            endpoint,
            first,
            method,
            deadline: crate::context::current_deadline(),
            budget: timeout,
            request,
            moves: 0,
            max_moves: MAX_MOVES,
            refused: false,
            stream: None,
            step: Step::Unsent(unsent),
        }
    }

    /// This attempt with the deadline of the handler it was made in (if
    /// any), which it had when its call was made rather than when it was
    /// built.
    pub(super) fn inheriting(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// This attempt as a streaming call's: the server answers with a
    /// stream if `returns_stream`, and the call sends `outbound`, if any.
    pub(super) fn streaming(
        mut self,
        returns_stream: bool,
        outbound: Option<Encoder>,
        compress: Compressor,
    ) -> Self {
        self.stream = Some(Box::new(Streaming {
            returns_stream,
            outbound,
            pumped: false,
            compress,
        }));
        self
    }

    /// A streaming call's connection, once its Ok Response came: the call
    /// stays open on it until this is dropped.
    pub(super) fn take_open(&mut self) -> Option<InFlight> {
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::Open(call) => Some(call),
            _ => None,
        }
    }

    /// `"Service.method"`.
    pub(super) fn method(&self) -> &'static str {
        self.method
    }

    /// The budget the call started with.
    pub(super) fn budget(&self) -> Duration {
        self.budget
    }

    /// The id the call went out as, while it is out on a connection.
    pub(super) fn call_id(&self) -> Option<u64> {
        match &self.step {
            Step::InFlight(call) | Step::Open(call) => Some(call.id()),
            _ => None,
        }
    }

    /// One attempt of a balanced call on `endpoint`, by `deadline`, with
    /// `request` (shared by every attempt): it does not move to another
    /// connection, but waits once for `endpoint` to connect if it must.
    pub(super) fn on(
        endpoint: Arc<Endpoint>,
        method: &'static str,
        deadline: Instant,
        request: Bytes,
    ) -> Self {
        let connected = endpoint.usable().is_some();
        Attempt {
            endpoint,
            first: None,
            method,
            // Fixed at the first poll as this deadline (see `start`).
            deadline: Some(deadline),
            budget: deadline.saturating_duration_since(Instant::now()),
            request: Encoded::Shared(request),
            moves: 0,
            max_moves: u8::from(!connected),
            refused: false,
            stream: None,
            step: Step::Unsent(None),
        }
    }

    /// Starts the call (like any `async fn`'s work, at its first poll): fixes
    /// its deadline and budget (see [`deadline::for_call`]).
    fn start(&mut self) {
        let (at, budget) = deadline::for_call(Instant::now(), self.budget, self.deadline);
        (self.deadline, self.budget) = (Some(at), budget);
    }

    fn deadline(&self) -> Instant {
        self.deadline.expect("set when the call started")
    }

    /// Queues the request on `conn`, with `budget` left (`granted`: the
    /// call holds a slot of its in-flight cap already).
    fn send(
        &mut self,
        conn: Arc<Connection>,
        budget: Duration,
        granted: bool,
        cx: &Context<'_>,
    ) -> Result<Step, Error> {
        let deadline = self.deadline();
        let method = self.method;
        let stream = self.stream.as_ref().map(|s| s.returns_stream);
        match conn.try_send(
            &mut self.request,
            deadline,
            budget,
            granted,
            stream,
            cx.waker(),
        ) {
            Tried::Sent(call) => {
                crate::observe::call::record_attempt(call.id(), || self.endpoint.address());
                if let Some(stream) = &mut self.stream {
                    stream.start_pump(&call, self.method);
                }
                Ok(Step::InFlight(call))
            }
            Tried::Full(conn) => Ok(Step::Waiting(Box::pin(async move {
                match conn.wait_for_slot(deadline).await {
                    Ok(()) => Waited::Slot(conn),
                    Err(NoSlot::Closed) => Waited::Gone,
                    Err(NoSlot::Deadline) => Waited::Failed(Error::DeadlineExceeded {
                        method,
                        budget: Duration::ZERO,
                    }),
                }
            }))),
            Tried::NotSent => self.elsewhere(),
            Tried::Late => Err(Error::DeadlineExceeded {
                method,
                budget: Duration::ZERO,
            }),
            Tried::NoMetadata => Err(Error::InvalidMetadata {
                method,
                message: "the server does not accept metadata (it runs an older version of this \
                          library)"
                    .into(),
            }),
            Tried::TooLarge { size, limit } => Err(Error::FrameTooLarge {
                method,
                what: "request",
                size,
                limit,
            }),
        }
    }

    /// The call's connection took the request but will not run it (the
    /// server refused it while shutting down), or stopped taking calls
    /// before it went out: the call did not run, so it goes to another
    /// connection, while moves and time are left. If none is to be had, a
    /// call a server refused fails with `ShuttingDown`; any other reports
    /// why there was none (a refused connection, say), never a refusal that
    /// did not happen.
    fn elsewhere(&mut self) -> Result<Step, Error> {
        let method = self.method;
        if self.stream.as_ref().is_some_and(|s| s.pumped) {
            // Items of its stream went out: they cannot be sent again. A
            // server that refused the call says it did not run.
            return Err(if self.refused {
                Error::ShuttingDown {
                    method,
                    mid_stream: false,
                }
            } else {
                let why =
                    "the connection stopped taking calls while the call's stream was being sent";
                Error::disconnected(method, why, true)
            });
        }
        if self.moves == self.max_moves {
            return Err(if self.refused {
                Error::ShuttingDown {
                    method,
                    mid_stream: false,
                }
            } else {
                let why = "every connection tried stopped taking calls before the request went out";
                Error::disconnected(method, why, false)
            });
        }
        self.moves += 1;
        let refused = self.refused;
        let connecting = self.endpoint.clone().connection(method, self.deadline());
        Ok(Step::Waiting(Box::pin(async move {
            match connecting.await {
                Ok(conn) => Waited::Connection(conn),
                Err(e @ Error::DeadlineExceeded { .. }) => Waited::Failed(e),
                // Refused, and no other connection to be had: what the
                // caller needs to hear is that it did not run.
                Err(_) if refused => Waited::Failed(Error::ShuttingDown {
                    method,
                    mid_stream: false,
                }),
                Err(e) => Waited::Failed(e),
            }
        })))
    }

    /// A deadline failure reports the budget the call started with, however
    /// far it got.
    fn failed(&self, e: Error) -> Error {
        match e {
            Error::DeadlineExceeded { method, .. } => Error::DeadlineExceeded {
                method,
                budget: self.budget,
            },
            e => e,
        }
    }

    /// The time left for a send after the first.
    fn remaining(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }
}

impl Future for Attempt {
    /// The reply, whatever its status, or why none came.
    type Output = Result<Payload, Error>;

    // Inlined into the generic call future, as when the two were one.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            let next = match &mut this.step {
                Step::Unsent(unsent) => match unsent.take() {
                    Some(e) => Err(*e),
                    None => {
                        this.start();
                        if this.budget.is_zero() {
                            // Out of time before it started (an inherited
                            // deadline passed): not sent, no reconnect for it.
                            Err(Error::DeadlineExceeded {
                                method: this.method,
                                budget: Duration::ZERO,
                            })
                        } else {
                            match this.first.take().or_else(|| this.endpoint.current()) {
                                Some(conn) => this.send(conn, this.budget, false, cx),
                                // Never connected yet: connecting is the one
                                // way on.
                                None => this.elsewhere(),
                            }
                        }
                    }
                },
                Step::InFlight(call) => match ready!(call.poll(cx)) {
                    Ok(payload)
                        if is_shutting_down(&payload) && !call.connection().takes_calls() =>
                    {
                        this.refused = true;
                        this.elsewhere()
                    }
                    Ok(payload) => {
                        let stays_open = this.stream.as_ref().is_some_and(|s| s.returns_stream);
                        this.step = match std::mem::replace(&mut this.step, Step::Done) {
                            Step::InFlight(call) if stays_open => Step::Open(call),
                            _ => Step::Done,
                        };
                        return Poll::Ready(Ok(payload));
                    }
                    Err(Failure::Closed(reason)) => {
                        Err(Error::disconnected(this.method, reason, true))
                    }
                    Err(Failure::Deadline) => Err(Error::DeadlineExceeded {
                        method: this.method,
                        budget: this.budget,
                    }),
                },
                Step::Waiting(waiting) => match ready!(waiting.as_mut().poll(cx)) {
                    Waited::Slot(conn) => this.send(conn, this.remaining(), true, cx),
                    Waited::Connection(conn) => this.send(conn, this.remaining(), false, cx),
                    Waited::Gone => this.elsewhere(),
                    Waited::Failed(e) => Err(e),
                },
                Step::Done | Step::Open(_) => panic!("a call polled after it finished"),
            };
            match next {
                // The waker went with the request: nothing to look at until
                // it is woken.
                Ok(step @ Step::InFlight(_)) => {
                    this.step = step;
                    return Poll::Pending;
                }
                Ok(step) => this.step = step,
                Err(e) => {
                    this.step = Step::Done;
                    return Poll::Ready(Err(this.failed(e)));
                }
            }
        }
    }
}
