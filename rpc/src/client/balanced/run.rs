//! One call on a balanced channel: its attempts, and whether it may make
//! another.
//!
//! All attempts share the call's one deadline. A call goes again, to another
//! endpoint, when its attempt failed in a way another server may not (see
//! [`Error::is_retryable`]), if it did not run (any method), or if it may
//! have run and the method is `#[rpc(idempotent)]`; each retry, and each
//! hedge, is paid from the channel's retry budget. A hedge (idempotent
//! methods, when the channel hedges) is a second attempt sent while the
//! first is still out, once it has taken longer than the hedging delay: the
//! first reply wins and the other attempt is cancelled (dropped).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{Either, select};
use tokio::time::Instant;

use super::{Balancer, Chosen};
use crate::Error;
use crate::client::attempt::Attempt;
use crate::client::method::Method;
use crate::deadline;
use crate::observe::call::AttemptSpan;
use crate::observe::metrics;
use crate::protocol::{Payload, Status};

/// Runs a call of `method` with the encoded `request` and the handle's
/// `timeout` (or the inherited `inherited` deadline, if earlier). Returns the
/// reply (whatever its status) and the budget the call started with.
pub(in crate::client) async fn run(
    balancer: Arc<Balancer>,
    method: Method,
    key: Option<u64>,
    request: Result<Bytes, Error>,
    timeout: Duration,
    inherited: Option<Instant>,
) -> (Result<Payload, Error>, Duration) {
    let now = Instant::now();
    let (deadline, budget) = deadline::for_call(now, timeout, inherited);
    let request = match request {
        Ok(request) => request,
        Err(e) => return (Err(e), budget),
    };
    if budget.is_zero() {
        let late = Error::DeadlineExceeded {
            method: method.name,
            budget,
        };
        return (Err(late), budget);
    }
    balancer.budget.deposit(now);
    let mut call = Running {
        balancer,
        method,
        key,
        deadline,
        request,
        tried: Vec::new(),
    };
    (call.run().await, budget)
}

struct Running {
    balancer: Arc<Balancer>,
    method: Method,
    key: Option<u64>,
    deadline: Instant,
    request: Bytes,
    /// Members tried, by id: a retry or hedge goes elsewhere if it can.
    tried: Vec<u64>,
}

/// How one attempt ended.
enum Ended {
    /// The server answered (the caller decodes the answer).
    Answered(Payload),
    /// It did not, and may or may not have run the call.
    Failed(Error),
}

impl Running {
    async fn run(&mut self) -> Result<Payload, Error> {
        let hedge = if self.method.idempotent {
            self.balancer.hedge
        } else {
            None
        };
        loop {
            let Some(chosen) = self.balancer.choose(self.key, &self.tried) else {
                let why = "the balanced channel has no endpoints (discovery found none yet)";
                return Err(Error::disconnected(self.method.name, why, false));
            };
            let first = self.attempt(chosen, false);
            let delay = hedge.and_then(|h| h.delay(&self.balancer.latencies, Instant::now()));
            let ended = match delay {
                None => first.await,
                Some(delay) => self.hedged(first, delay).await,
            };
            let e = match ended {
                Ended::Answered(payload) => return Ok(payload),
                Ended::Failed(e) => e,
            };
            let again = if e.may_have_run() {
                self.method.idempotent && e.is_retryable()
            } else {
                // It did not run: another server may take it, unless it fails
                // the same everywhere (or is the caller's own to fix).
                !fails_everywhere(&e)
            };
            let now = Instant::now();
            if !again || now >= self.deadline || !self.balancer.budget.try_withdraw(now) {
                return Err(e);
            }
            tracing::debug!(method = self.method.name, error = %e, "retrying on another endpoint");
            metrics::attempt_again(self.method.name, metrics::Again::Retry);
        }
    }

    /// `first`, and once it has taken `delay`, a second attempt elsewhere
    /// (if the budget allows): the first answer wins, and a failure waits
    /// for the other attempt's outcome.
    async fn hedged(&mut self, first: impl Future<Output = Ended>, delay: Duration) -> Ended {
        let first = std::pin::pin!(first);
        let timer = std::pin::pin!(tokio::time::sleep(delay));
        let first = match select(first, timer).await {
            Either::Left((ended, _)) => return ended,
            Either::Right(((), first)) => first,
        };
        // Paid for before a server is chosen: a choice begins a half-open
        // server's probe, which must then be sent.
        if !self.balancer.budget.try_withdraw(Instant::now()) {
            return first.await;
        }
        let second = match self.balancer.choose(self.key, &self.tried) {
            Some(chosen) => self.attempt(chosen, true),
            None => return first.await,
        };
        metrics::attempt_again(self.method.name, metrics::Again::Hedge);
        let second = std::pin::pin!(second);
        match select(first, second).await {
            Either::Left((Ended::Answered(p), _)) | Either::Right((Ended::Answered(p), _)) => {
                Ended::Answered(p)
            }
            Either::Left((Ended::Failed(_), other)) => other.await,
            Either::Right((Ended::Failed(_), other)) => other.await,
        }
    }

    /// One attempt on `chosen` (a `hedge`, or the call's next), reported
    /// to the balancer however it ends (dropped unfinished: abandoned), and
    /// in a span of its own if the call's is recorded.
    fn attempt(
        &mut self,
        chosen: Chosen,
        hedge: bool,
    ) -> impl Future<Output = Ended> + Send + Sync + use<> {
        let Chosen { member, probe } = chosen;
        self.tried.push(member.id);
        let number = self.tried.len() as u32;
        // Boxed: only a call whose span is recorded has one, and every
        // balanced call's future would otherwise carry its room.
        let traced = AttemptSpan::start(self.method.name, number, hedge, || {
            member.endpoint.address()
        })
        .map(Box::new);
        let attempt = Attempt::on(
            member.endpoint.clone(),
            self.method.name,
            self.deadline,
            self.request.clone(),
        );
        let balancer = self.balancer.clone();
        let method = self.method.name;
        let shape = self.method.shape;
        member.load.start();
        let started = Instant::now();
        let mut guard = Report {
            balancer,
            member,
            probe,
            done: false,
        };
        async move {
            let (result, traced) = InSpan { attempt, traced }.await;
            let rtt = started.elapsed();
            guard.done = true;
            let ended = match result {
                Ok(payload) if payload.first() == Some(&(Status::Overloaded as u8)) => {
                    // Refused for load: the server is fine, the call did not
                    // run, and another server may take it.
                    guard.balancer.report(&guard.member, rtt, true);
                    let reason = String::from_utf8_lossy(&payload[1..]).into_owned();
                    Ended::Failed(Error::Overloaded { method, reason })
                }
                Ok(payload) if payload.first() == Some(&(Status::SchemaMismatch as u8)) => {
                    // Built from another version of the trait: the server
                    // is fine and the call did not run there. During a
                    // rolling deploy another server may run the client's
                    // version, so the call goes on to one (see `run`).
                    guard.balancer.report(&guard.member, rtt, true);
                    let server = String::from_utf8_lossy(&payload[1..]).into_owned();
                    let client = shape.to_owned();
                    Ended::Failed(Error::SchemaMismatch {
                        method,
                        client,
                        server,
                    })
                }
                Ok(payload) => {
                    if guard.balancer.hedge.is_some() {
                        guard.balancer.latencies.record(rtt, Instant::now());
                    }
                    guard.balancer.report(&guard.member, rtt, true);
                    Ended::Answered(payload)
                }
                Err(e) => {
                    match &e {
                        // The call's own deadline: the server was at least
                        // this slow, which its latency should show, but not
                        // a failure (a caller's short deadline is no fault
                        // of the server's).
                        Error::DeadlineExceeded { .. } => {
                            guard.balancer.timed_out(&guard.member, rtt, guard.probe);
                        }
                        // The caller's own mistakes say nothing of the server.
                        e if fails_everywhere(e) => {
                            guard.balancer.abandoned(&guard.member, guard.probe);
                        }
                        _ => guard.balancer.report(&guard.member, rtt, false),
                    }
                    Ended::Failed(e)
                }
            };
            if let Some(traced) = traced {
                traced.end(match &ended {
                    Ended::Answered(reply) => Ok(reply.first().copied().unwrap_or(u8::MAX)),
                    Ended::Failed(e) => Err(e),
                });
            }
            ended
        }
    }
}

/// An attempt, polled in its span if the call's span is recorded; gives
/// its outcome and the span, to record how it ended.
struct InSpan {
    attempt: Attempt,
    traced: Option<Box<AttemptSpan>>,
}

impl Future for InSpan {
    type Output = (Result<Payload, Error>, Option<Box<AttemptSpan>>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(traced) = &mut this.traced else {
            let result = ready!(Pin::new(&mut this.attempt).poll(cx));
            return Poll::Ready((result, None));
        };
        let polled = {
            let _in_span = traced.span().enter();
            Pin::new(&mut this.attempt).poll(cx)
        };
        if let Some(id) = this.attempt.call_id() {
            traced.sent(id);
        }
        let result = ready!(polled);
        Poll::Ready((result, this.traced.take()))
    }
}

/// Errors that another server would give too: the request itself is at
/// fault (it cannot be encoded, is too large, or cannot be decoded by a
/// server of this version), or the setup is.
fn fails_everywhere(e: &Error) -> bool {
    match e {
        Error::Encode { .. } | Error::Config(_) => true,
        Error::FrameTooLarge { what, .. } => *what == "request",
        Error::Decode { side, .. } => *side == "request on the server",
        _ => false,
    }
}

/// Reports an attempt dropped before it ended (its call was cancelled, or
/// the other attempt of a hedge won) as abandoned.
struct Report {
    balancer: Arc<Balancer>,
    member: Arc<super::Member>,
    probe: bool,
    done: bool,
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.done {
            self.balancer.abandoned(&self.member, self.probe);
        }
    }
}
