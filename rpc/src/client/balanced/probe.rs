//! Health checks of a balanced channel's servers: every interval, each
//! connected server is asked for its whole-server status on its own
//! connection; one that answers `NotServing` (an application marking itself
//! out, say) gets no calls until it answers `Serving` again. A server that
//! does not answer at all is left to keepalive and to the breaker, which see
//! the failures of real calls.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Balancer, Member};
use crate::client::Channel;
use crate::health::{HealthClient, ServingStatus};

/// A tick every `every`, late ticks not made up for.
fn ticks(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// The channel's servers at the next tick; `None` once the channel is
/// dropped (`closed` is cancelled then).
async fn next_tick(
    tick: &mut tokio::time::Interval,
    balancer: &Weak<Balancer>,
    closed: &CancellationToken,
) -> Option<Arc<Vec<Arc<Member>>>> {
    tokio::select! {
        _ = closed.cancelled() => return None,
        _ = tick.tick() => {}
    }
    balancer.upgrade().map(|b| b.members())
}

/// Runs until the channel is dropped (`closed` is cancelled then).
pub(super) async fn probe(balancer: Weak<Balancer>, every: Duration, closed: CancellationToken) {
    let mut tick = ticks(every);
    while let Some(members) = next_tick(&mut tick, &balancer, &closed).await {
        // One check at a time: a few per interval, never a burst.
        for member in members.iter() {
            if closed.is_cancelled() {
                return;
            }
            if member.endpoint.usable().is_none() {
                // A server marked not serving gets no calls, so no call
                // would reconnect it: reconnect here, and check next time.
                if !member.serving.load(Ordering::Relaxed) {
                    let _ = member.endpoint.warm();
                }
                continue;
            }
            let health = HealthClient::new(Channel::over(member.endpoint.clone()))
                .with_timeout(every.min(Duration::from_secs(1)));
            let serving = match health.check(String::new()).await {
                Ok(ServingStatus::NotServing) => false,
                Ok(_) => true,
                // A server without the check (an older one), or one that did
                // not answer in time: the breaker judges it by real calls.
                Err(_) => continue,
            };
            if member.serving.swap(serving, Ordering::Relaxed) != serving {
                tracing::debug!(address = %member.target.address, serving, "health changed");
            }
        }
    }
}

/// Reports the channel's servers by state to the `rpc_client_endpoints`
/// gauge every second, until the channel is dropped: each server counts
/// once, as `ejected`, `not_serving`, `connected` or `disconnected` (in that
/// order of precedence).
#[cfg(feature = "metrics")]
pub(super) async fn report_states(balancer: Weak<Balancer>, closed: CancellationToken) {
    let mut states = crate::observe::metrics::EndpointStates::default();
    let mut tick = ticks(Duration::from_secs(1));
    while let Some(members) = next_tick(&mut tick, &balancer, &closed).await {
        let now = tokio::time::Instant::now();
        let mut counts = [0; 4];
        for member in members.iter() {
            let state = if member.is_ejected(now) {
                0
            } else if !member.serving.load(Ordering::Relaxed) {
                1
            } else if member.endpoint.usable().is_some() {
                2
            } else {
                3
            };
            counts[state] += 1;
        }
        states.set(counts);
    }
}
