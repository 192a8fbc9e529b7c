//! A handler with the server's interceptors around it: they run first, in
//! the call's own task, and may refuse the call (its handler never runs);
//! the handler sees the metadata as they left it; each hears the outcome,
//! also of a call that ends without a reply (see `intercept::Around`).
//! Only a server with interceptors takes this path.

use std::time::Duration;

use tokio::time::Instant;

use super::dispatch::{Handler, Reply};
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
        let mut around = chain.around(info, Some(deadline));
        if let Err(rejection) = around.admit().await {
            return Reply::from(rejection.reply(id));
        }
        let metadata = around.info().metadata().clone();
        let reply_metadata = std::mem::take(around.info_mut().reply_metadata_mut());
        context::set_call_metadata(metadata, reply_metadata);
        let reply = handler.await;
        let error = reply.error(around.info().method(), budget);
        around.finish(error.as_ref().map_or(Ok(()), Err));
        reply
    })
}
