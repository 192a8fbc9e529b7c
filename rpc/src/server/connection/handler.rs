//! Starting a handler: its first poll in the driver (on a current-thread
//! runtime), or a task of its own that holds a handler slot.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::Instrument;

use super::{Driver, End, Parked};
use crate::context::Context;
use crate::deadline;
use crate::error::panic_message;
use crate::intercept::{Chain, Side};
use crate::observe::TraceContext;
use crate::observe::call::Observed;
use crate::observe::metrics::{self, Items};
use crate::protocol::Status;
use crate::server::calls::Finish;
use crate::server::dispatch::{Following, Reply};
use crate::server::intercepted;
use crate::stream;
use crate::stream::Pumped;

impl Driver {
    /// Starts a handler. On a current-thread runtime its first poll runs
    /// here, in the driver: most handlers finish in it, and their reply is
    /// queued without a task, a permit or an entry in the in-flight map. A
    /// handler not done by then (or any handler, on a multi-thread runtime)
    /// runs in a task of its own, holding `permit` or one taken now (only the
    /// driver takes permits, and the caller saw one free). A protocol error
    /// if the call id is in flight.
    pub(super) fn start(
        &mut self,
        request: Parked,
        permit: Option<OwnedSemaphorePermit>,
        now: Instant,
        waker: &Waker,
    ) -> Option<End> {
        let Parked {
            id,
            method,
            handler,
            deadline,
            budget,
            grant,
            streaming,
            metadata,
        } = request;
        // Started (or answered below), the request no longer waits on the
        // frame budget: its bytes are the handler's now.
        drop(grant);
        let duplicate = |observed: Option<&mut Observed>| {
            let message = format!("call id {id} is already in flight");
            // Not a call that ran: the connection's protocol error.
            if let Some(observed) = observed {
                observed.finish("Protocol", Some(&message));
            }
            Some(End::Protocol(message))
        };
        let incoming = metadata.as_deref().and_then(TraceContext::from_metadata);
        let (mut observed, trace) = Observed::server(method, id, &self.peer, incoming);
        if deadline <= now {
            let message = format!("the {budget:?} budget ran out before a handler was free");
            observed.finish(Status::DeadlineExceeded.name(), Some(&message));
            let _ = self
                .outbox
                .send(Status::DeadlineExceeded.reply(id, &message));
            return None;
        }
        let ctx = Context {
            deadline,
            peer: self.peer.clone(),
            call_id: id,
            method,
            metadata,
            reply_metadata: None,
            trace,
        };
        let interceptors = &self.shared.config.interceptors;
        let handler = if interceptors.is_empty() {
            handler
        } else {
            let info = Chain::info(method, Side::Server, streaming, ctx.metadata().clone())
                .on_server(self.peer.clone(), id);
            intercepted::around(interceptors.clone(), info, handler, id, deadline, budget)
        };
        // The handler runs in the call's span: what it logs is the call's.
        let in_span = ctx.scope(handler).instrument(observed.span().clone());
        let mut run = AssertUnwindSafe(in_span).catch_unwind();
        // On a current-thread runtime, polled once with the driver's waker:
        // whatever the handler waits on registers it, and the handler's own
        // task re-registers its waker on its first poll (a future wakes the
        // waker of its latest poll), so the driver at most sees one spurious
        // wake-up.
        if self.inline_first_poll && !streaming {
            // Checked before the handler runs here; a spawned one is checked
            // by `insert_with` below, under the lock that records it.
            if self.calls.contains(id) {
                return duplicate(Some(&mut observed));
            }
            if let Poll::Ready(done) = run.poll_unpin(&mut std::task::Context::from_waker(waker)) {
                let reply = done.unwrap_or_else(|panic| {
                    Status::Panicked.reply(id, &panic_message(&*panic)).into()
                });
                record_reply(&mut observed, &reply, method, budget);
                // Not a streaming call: the reply is all there is.
                let _ = self.outbox.send(reply.into_parts().0);
                return None;
            }
        }
        // The handler has started: it must be gone before its slot is given
        // back, even if its task is aborted before it first runs (an unpolled
        // task drops what it captured in no order we choose).
        let permit = permit.or_else(|| self.permits.clone().try_acquire_owned().ok());
        debug_assert!(permit.is_some(), "only the driver takes permits");
        let run = Slotted {
            fut: run,
            _permit: permit,
        };
        let calls = self.calls.clone();
        let outbox = self.outbox.clone();
        let reply_limit = self.reply_limit;
        self.next_seq += 1;
        let seq = self.next_seq;
        // Taken by the task if it starts: a duplicate id leaves it here.
        let mut unstarted = Some(observed);
        let started = self.calls.insert_with(id, seq, || {
            let mut observed = unstarted.take().unwrap_or_else(Observed::none);
            tokio::spawn(async move {
                // The entry is removed however the task ends.
                let mut finish = Finish {
                    calls: &calls,
                    id,
                    seq,
                    armed: true,
                };
                let reply = match deadline::run_until(deadline, run).await {
                    Some(Ok(reply)) => reply,
                    Some(Err(panic)) => Status::Panicked.reply(id, &panic_message(&*panic)).into(),
                    None => Status::DeadlineExceeded
                        .reply(id, &format!("the handler ran past its {budget:?} budget"))
                        .into(),
                };
                let streams = reply.streams();
                if !streams {
                    record_reply(&mut observed, &reply, method, budget);
                }
                let (frame, following) = reply.into_parts();
                match following {
                    None => calls.finish_with(id, seq, || {
                        let _ = outbox.send(frame);
                    }),
                    Some(following) => {
                        // The handler slot is free again (the handler
                        // returned); the stream keeps its call open.
                        let _ = outbox.send(frame);
                        // Produced in the call's span, as the handler ran.
                        let end = send_stream(*following, deadline, budget, reply_limit, method)
                            .instrument(observed.span().clone())
                            .await;
                        let status = end.status.and_then(Status::from_u8);
                        match status {
                            Some(Status::Ok) => observed.finish("Ok", None),
                            Some(status) => {
                                observed.finish(status.name(), Some(&"the stream ended"))
                            }
                            None => observed.finish("Cancelled", None),
                        }
                        calls.finish(id, seq);
                    }
                }
                // Done: no need for the guard to take the lock again.
                finish.armed = false;
            })
            .abort_handle()
        });
        if started {
            None
        } else {
            duplicate(unstarted.as_mut())
        }
    }
}

/// Records a reply's outcome as the call's: its status, and the message of
/// a failure (read only if the span records it).
fn record_reply(observed: &mut Observed, reply: &Reply, method: &'static str, budget: Duration) {
    match reply.status() {
        Status::Ok => observed.finish("Ok", None),
        status => match observed
            .records()
            .then(|| reply.error(method, budget))
            .flatten()
        {
            Some(error) => observed.finish(status.name(), Some(&error)),
            None => observed.finish(status.name(), Some(&status.name())),
        },
    }
}

/// Sends the stream a handler returned, within the call's deadline; how it
/// ended.
async fn send_stream(
    following: Following,
    deadline: Instant,
    budget: Duration,
    limit: usize,
    method: &'static str,
) -> Pumped {
    let Following {
        mut items,
        call,
        compress,
    } = following;
    call.replying();
    let flow = &call.open.flow;
    let counted = Items::new(metrics::Side::Server, method, true);
    let pump = stream::pump(flow, &mut items, limit, compress, &counted);
    match deadline::run_until(deadline, pump).await {
        Some(pumped) => pumped,
        None => {
            let message = format!("the stream ran past its {budget:?} budget");
            flow.finish(&Status::DeadlineExceeded.end_payload(&message));
            Pumped {
                status: Some(Status::DeadlineExceeded as u8),
            }
        }
    }
}

/// A handler future and its handler slot. Fields drop in order: the
/// handler first, then the slot.
struct Slotted<F> {
    fut: F,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<F: Future + Unpin> Future for Slotted<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<F::Output> {
        self.fut.poll_unpin(cx)
    }
}
