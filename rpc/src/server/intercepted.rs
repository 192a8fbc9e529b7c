//! A handler with the server's interceptors around it: they run first, in
//! the call's own task, and may refuse the call (its handler never runs);
//! the handler sees the metadata as they left it; each hears the outcome.
//! Only a server with interceptors takes this path.

use std::time::Duration;

use tokio::time::Instant;

use super::dispatch::{Handler, Reply};
use crate::Error;
use crate::context;
use crate::intercept::{CallInfo, Chain};

/// `handler`, run after `chain` lets call `id` through.
pub(crate) fn around(
    chain: Chain,
    info: CallInfo,
    handler: Handler,
    id: u64,
    deadline: Instant,
    budget: Duration,
) -> Handler {
    Box::pin(async move {
        let mut heard = Outcome {
            chain,
            info,
            deadline,
            budget,
            armed: true,
        };
        heard.armed = false;
        if let Err(rejection) = heard.chain.admit(&mut heard.info).await {
            return Reply::from(rejection.reply(id));
        }
        heard.armed = true;
        let metadata = heard.info.metadata().clone();
        let reply_metadata = std::mem::take(heard.info.reply_metadata_mut());
        context::set_call_metadata(metadata, reply_metadata);
        let reply = handler.await;
        heard.armed = false;
        let error = reply.error(heard.info.method(), budget);
        heard
            .chain
            .after(&heard.info, error.as_ref().map_or(Ok(()), Err));
        reply
    })
}

/// Tells the interceptors how a call ended that did not end with a reply:
/// its handler panicked, ran out of time, or was cancelled.
struct Outcome {
    chain: Chain,
    info: CallInfo,
    deadline: Instant,
    budget: Duration,
    armed: bool,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let method = self.info.method();
        let error = if std::thread::panicking() {
            Error::Panicked {
                method,
                message: "the handler panicked".into(),
            }
        } else if Instant::now() >= self.deadline {
            Error::DeadlineExceeded {
                method,
                budget: self.budget,
            }
        } else {
            Error::Aborted {
                method,
                message: "the call was cancelled (by the client, or its connection closed)".into(),
            }
        };
        self.chain.after(&self.info, Err(&error));
    }
}
