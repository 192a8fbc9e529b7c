//! The receiving end of a stream: takes the items its flow received, credits
//! them back as the application takes them, and turns the stream's end into
//! `None` or one last error.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use super::flow::{End, Flow};
use crate::Error;
use crate::observe::call::Observed;
use crate::observe::metrics::{Items, Side};
use crate::protocol::{ItemRun, Status};

/// Items of one stream as they arrive, for [`super::Stream`] to decode.
pub(crate) struct Inbound {
    flow: Arc<Flow>,
    /// Items taken from the flow in one go, not yet handed out.
    local: VecDeque<ItemRun>,
    /// Bytes handed out and not yet credited back.
    taken: usize,
    threshold: usize,
    method: &'static str,
    /// The call's budget, for a deadline error.
    budget: Duration,
    ended: bool,
    /// Items handed out, counted.
    items: Items,
    /// The call's span and metrics, if the stream's end is the call's.
    observed: Observed,
    /// What keeps the call open while its stream is read (a client's call
    /// in flight, whose drop cancels the call), if anything.
    _call: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, call {}", self.method, self.flow.id())
    }
}

impl Inbound {
    pub(crate) fn new(
        flow: Arc<Flow>,
        method: &'static str,
        budget: Duration,
        side: Side,
        call: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        Inbound {
            threshold: flow.grant_threshold(),
            flow,
            local: VecDeque::new(),
            taken: 0,
            method,
            budget,
            ended: false,
            items: Items::new(side, method, false),
            observed: Observed::none(),
            _call: call,
        }
    }

    /// This stream's end is its call's outcome, recorded in `observed`.
    pub(crate) fn observed(mut self, observed: Observed) -> Self {
        self.observed = observed;
        self
    }

    pub(crate) fn method(&self) -> &'static str {
        self.method
    }

    /// The next item's bytes, or the error that ended the stream.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<&[u8], Error>>> {
        loop {
            match self.local.front_mut().map(ItemRun::next_item) {
                Some(Some((at, cost))) => {
                    self.taken += cost;
                    self.items.one();
                    if self.taken >= self.threshold {
                        self.flow.grant(std::mem::take(&mut self.taken));
                    }
                    return Poll::Ready(Some(Ok(self.local[0].payload(at))));
                }
                Some(None) => {
                    self.local.pop_front();
                    continue;
                }
                None => {}
            }
            if self.ended {
                self.observed.finish("Ok", None);
                return Poll::Ready(None);
            }
            let Some(end) = ready!(self.flow.poll_take(cx, &mut self.local)) else {
                continue;
            };
            self.ended = true;
            // The call is over: release what keeps it open (a client's
            // call ended cleanly sends no Cancel).
            self._call = None;
            if let Some(e) = self.end_error(end) {
                self.observed.finish_failure(Some(&e));
                return Poll::Ready(Some(Err(e)));
            }
        }
    }

    fn end_error(&self, end: End) -> Option<Error> {
        let method = self.method;
        match end {
            End::Peer(payload) => {
                // Without a status byte the peer did not say it ended
                // cleanly: not a silent end.
                let Some((&status, body)) = payload.split_first() else {
                    return Some(Error::Decode {
                        method,
                        side: "stream end",
                        message: "the StreamEnd is empty: it has no status byte".into(),
                    });
                };
                if status == Status::Ok as u8 {
                    return None;
                }
                Some(crate::error::from_status(
                    method,
                    self.budget,
                    "stream item",
                    status,
                    body,
                    true,
                ))
            }
            End::Lost(reason) => Some(Error::disconnected(method, reason, true)),
            End::DeadlineExceeded => Some(Error::DeadlineExceeded {
                method,
                budget: self.budget,
            }),
        }
    }
}

impl Drop for Inbound {
    /// A stream dropped before its end takes no more. On the client the
    /// call goes with it (its Cancel stops the server's producer); on the
    /// server a handler may drop what it receives and go on sending.
    fn drop(&mut self) {
        self.flow.stop_receiving();
    }
}
