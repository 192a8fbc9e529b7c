//! Following a discovery source: each set it gives becomes the balancer's
//! members; an error, an empty set or the source ending keeps the last good
//! set (a discovery outage must not empty a working channel).

use std::sync::Weak;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Balancer;
use crate::discover::Discover;

/// Runs until the channel is dropped (`closed` is cancelled then) or the
/// source ends. `sets` counts the sets taken, for `connect` to wait on.
pub(super) async fn follow<D: Discover>(
    balancer: Weak<Balancer>,
    mut source: D,
    closed: CancellationToken,
    sets: watch::Sender<u64>,
) {
    loop {
        let next = tokio::select! {
            _ = closed.cancelled() => return,
            next = source.next() => next,
        };
        match next {
            Some(Ok(set)) if !set.is_empty() => {
                let Some(balancer) = balancer.upgrade() else {
                    return;
                };
                balancer.set(&set);
                sets.send_modify(|n| *n += 1);
            }
            Some(Ok(_)) => tracing::warn!("discovery found no endpoints; keeping the last set"),
            Some(Err(e)) => tracing::warn!(error = %e, "discovery failed; keeping the last set"),
            None => {
                tracing::debug!("the discovery source ended; keeping the last set");
                return;
            }
        }
    }
}
