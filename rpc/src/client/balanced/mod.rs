//! A channel over many servers: the set of endpoints discovery gives, and
//! the choice of one for each attempt of a call.
//!
//! - `mod.rs` (this file): the [`Balancer`]: its members (one endpoint per
//!   discovered server, with its load and its breaker), the choice of a
//!   member for an attempt, and what an attempt's outcome teaches;
//! - `discovery.rs`: the task that follows the discovery source and adds and
//!   drains members;
//! - `run.rs`: one call: its attempts, retries and hedges, under one
//!   deadline and the retry budget;
//! - `builder.rs`: [`Balanced`](builder::Balanced), the public builder.
//!
//! The decisions themselves (the load signal, the policies, ejection, the
//! retry budget, the hedging delay) are pure and live in `../balance/`.

mod builder;
mod discovery;
mod probe;
mod run;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::balance::eject::{Admit, Breaker, may_eject};
use super::balance::hedge::{Hedge, Latencies};
use super::balance::load::Load;
use super::balance::policy::{Candidate, Picker};
use super::balance::retry_budget::Budget;
use super::balance::{Ejection, Policy};
use super::config::Config;
use super::endpoint::Endpoint;
use crate::discover::Target;
use crate::transport::{Address, Connector};

pub use builder::{Balanced, EndpointSnapshot, EndpointState};
pub(super) use run::run;

/// Makes the connector for a discovered address.
pub(super) type ConnectVia = Arc<dyn Fn(&Address) -> Option<Box<dyn Connector>> + Send + Sync>;

/// One server of the set.
pub(super) struct Member {
    pub(super) target: Target,
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) load: Arc<Load>,
    pub(super) breaker: Mutex<Breaker>,
    /// The breaker has seen a failure since it was last back to none: until
    /// then it admits every call and a success changes nothing, so the
    /// common call takes no lock for it.
    troubled: AtomicBool,
    /// The server's last health check did not say `NotServing`.
    pub(super) serving: AtomicBool,
    /// Stable across set changes: what affinity hashes keys against.
    pub(super) id: u64,
}

/// What every call of a balanced channel shares.
pub(super) struct Balancer {
    pub(super) config: Config,
    members: RwLock<Arc<Vec<Arc<Member>>>>,
    picker: Picker,
    ejection: Ejection,
    pub(super) budget: Budget,
    pub(super) hedge: Option<Hedge>,
    pub(super) latencies: Latencies,
    connect_via: ConnectVia,
    health_every: Option<Duration>,
    /// Cancelled when the channel is dropped: the discovery task ends.
    closed: CancellationToken,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("endpoints", &self.members().len())
            .field("policy", &self.picker.policy())
            .finish_non_exhaustive()
    }
}

/// The member an attempt goes to, and whether the attempt is its probe.
pub(super) struct Chosen {
    pub(super) member: Arc<Member>,
    pub(super) probe: bool,
}

impl Balancer {
    /// The members now: a snapshot, so a choice never holds the lock.
    /// The only member, if there is exactly one: its calls need no choice.
    pub(in crate::client) fn sole(&self) -> Option<(Arc<Endpoint>, Arc<Load>)> {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        match members.as_slice() {
            [only] => Some((only.endpoint.clone(), only.load.clone())),
            _ => None,
        }
    }

    pub(super) fn members(&self) -> Arc<Vec<Arc<Member>>> {
        self.members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes the set `targets`: members kept where their target stays (a
    /// changed weight is taken over), new ones made (and their connecting
    /// started), and the others dropped from the set (calls on them finish;
    /// their connections close once the last is done).
    fn set(&self, targets: &[Target]) {
        let now = Instant::now();
        let old = self.members();
        let mut next = Vec::with_capacity(targets.len());
        for target in targets {
            let kept = old
                .iter()
                .find(|m| m.target.address == target.address && m.target.weight == target.weight);
            let member = match kept {
                Some(member) => member.clone(),
                None => {
                    let same = old.iter().find(|m| m.target.address == target.address);
                    let endpoint = match same {
                        Some(m) => m.endpoint.clone(),
                        None => match (self.connect_via)(&target.address) {
                            Some(connector) => {
                                Endpoint::unconnected(connector, self.config.clone())
                            }
                            None => {
                                tracing::warn!(address = %target.address, "no transport for a discovered address");
                                continue;
                            }
                        },
                    };
                    // The attempt runs on its own; no need to wait for it.
                    let _ = endpoint.warm();
                    Arc::new(Member {
                        id: stable_id(&target.address),
                        target: target.clone(),
                        endpoint,
                        load: Arc::new(Load::new(now)),
                        breaker: Mutex::new(Breaker::new(self.ejection)),
                        troubled: AtomicBool::new(false),
                        serving: AtomicBool::new(true),
                    })
                }
            };
            next.push(member);
        }
        *self.members.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    /// The member for an attempt, not one of `tried` unless every one is.
    /// Endpoints ejected (or probing) are passed over while others remain;
    /// of the rest, those with a connection come first, so a call does not
    /// wait for a server that may be down while another is up.
    pub(super) fn choose(&self, key: Option<u64>, tried: &[u64]) -> Option<Chosen> {
        let members = self.members();
        if let [only] = members.as_slice() {
            // One server: every call goes to it, ejected or not (a channel
            // whose servers are all ejected still calls them).
            if only.endpoint.usable().is_none() {
                let _ = only.endpoint.warm();
            }
            return Some(Chosen {
                member: only.clone(),
                probe: false,
            });
        }
        SCRATCH.with_borrow_mut(|scratch| self.choose_among(&members, key, tried, scratch))
    }

    /// [`choose`](Self::choose) among two or more members, with `scratch`
    /// for its lists.
    fn choose_among(
        &self,
        members: &[Arc<Member>],
        key: Option<u64>,
        tried: &[u64],
        scratch: &mut Scratch,
    ) -> Option<Chosen> {
        let now = Instant::now();
        let Scratch {
            views,
            eligible,
            candidates,
            exclude,
        } = scratch;
        views.clear();
        views.extend(members.iter().map(|m| {
            let admit = m.admits(now);
            let up = m.endpoint.usable().is_some();
            if !up && admit != Admit::No {
                // Reconnect in the background (as the backoff allows), so a
                // server that comes back is found without a call waiting on
                // it.
                let _ = m.endpoint.warm();
            }
            (admit, up)
        }));
        // The first filter that leaves anyone: admitted (a probe due counts)
        // and connected, admitted, anyone. A keyed call skips the first: a
        // key's server must not change as connections come and go, only as
        // the set or the servers' health does. A probe goes only to a
        // connected server (an unconnected one is being reconnected in the
        // background): a call must not wait out a reconnect backoff for the
        // sake of a probe.
        let keyed = key.is_some() && self.picker.policy() == Policy::Affinity;
        let filters: [&dyn Fn(Admit, bool) -> bool; 3] = [
            &|admit, up| !keyed && admit != Admit::No && up,
            &|admit, _| admit != Admit::No,
            &|_, _| true,
        ];
        for filter in filters {
            eligible.clear();
            eligible.extend((0..members.len()).filter(|&i| filter(views[i].0, views[i].1)));
            if eligible.is_empty() {
                continue;
            }
            candidates.clear();
            candidates.extend(eligible.iter().map(|&i| {
                let m = &members[i];
                Candidate {
                    // A half-open endpoint's load still holds the failures
                    // that ejected it: its probe goes first.
                    cost: if views[i].0 == Admit::Probe {
                        0.0
                    } else {
                        m.load.cost(now)
                    },
                    in_flight: m.load.in_flight(),
                    weight: m.target.weight,
                    id: m.id,
                }
            }));
            exclude.clear();
            exclude
                .extend((0..eligible.len()).filter(|&j| tried.contains(&members[eligible[j]].id)));
            let j = self.picker.pick_excluding(candidates, key, exclude)?;
            let i = eligible[j];
            let member = members[i].clone();
            // Two calls may both have seen the probe due: one sends it.
            let probe = views[i].0 == Admit::Probe
                && member
                    .breaker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .begin_probe(now);
            return Some(Chosen { member, probe });
        }
        None
    }

    /// An attempt on `member` ended after `rtt`: `ok` if the server answered
    /// (whatever it answered), else it failed to.
    pub(super) fn report(&self, member: &Member, rtt: Duration, ok: bool) {
        let now = Instant::now();
        if ok {
            member.load.success(rtt, now);
            if member.troubled.load(Ordering::Relaxed) {
                let mut breaker = member.breaker.lock().unwrap_or_else(|e| e.into_inner());
                let was_out = breaker.is_ejected(now);
                breaker.on_success(now);
                if was_out && !breaker.is_ejected(now) {
                    // Readmitted by its probe: the failures that ejected it
                    // must not keep it from its share.
                    member.load.reset(now);
                }
                if breaker.consecutive_failures() == 0 && !breaker.is_ejected(now) {
                    member.troubled.store(false, Ordering::Relaxed);
                }
            }
            return;
        }
        member.load.failure(rtt, now);
        member.troubled.store(true, Ordering::Relaxed);
        let members = self.members();
        let ejected = members
            .iter()
            .filter(|m| !std::ptr::eq(m.as_ref(), member))
            .filter(|m| m.is_ejected(now))
            .count();
        let allowed = may_eject(ejected, members.len());
        let mut breaker = member.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if breaker.on_failure(now, allowed) {
            tracing::debug!(address = %member.target.address, "endpoint ejected");
        }
    }

    /// An attempt on `member` ran out of its call's deadline after `rtt`:
    /// the server was at least that slow, which its latency takes in, but
    /// that is no failure of the server's.
    pub(super) fn timed_out(&self, member: &Member, rtt: Duration, probe: bool) {
        let now = Instant::now();
        member.load.success(rtt, now);
        if probe {
            member
                .breaker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .probe_abandoned(now);
        }
    }

    /// An attempt on `member` was given up (the call was cancelled, or a
    /// hedge won): it says nothing about the server.
    pub(super) fn abandoned(&self, member: &Member, probe: bool) {
        member.load.abandon();
        if probe {
            let now = Instant::now();
            member
                .breaker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .probe_abandoned(now);
        }
    }
}

impl Member {
    fn admits(&self, now: Instant) -> Admit {
        if !self.serving.load(Ordering::Relaxed) {
            return Admit::No;
        }
        if !self.troubled.load(Ordering::Relaxed) {
            return Admit::Yes;
        }
        self.breaker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admits(now)
    }

    pub(super) fn is_ejected(&self, now: Instant) -> bool {
        self.troubled.load(Ordering::Relaxed)
            && self
                .breaker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_ejected(now)
    }
}

/// The lists a choice fills, kept per thread so that a choice allocates
/// nothing once they have grown to the set's size.
#[derive(Default)]
struct Scratch {
    /// Per member: whether its breaker admits a call, whether it is connected.
    views: Vec<(Admit, bool)>,
    eligible: Vec<usize>,
    candidates: Vec<Candidate>,
    exclude: Vec<usize>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A hash of an address that is the same in every process of the same
/// build: affinity keys map to the same server from every client.
fn stable_id(address: &Address) -> u64 {
    // FNV-1a over the address as text.
    address
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// The settings a balanced channel is made with.
pub(super) struct Settings {
    pub(super) config: Config,
    pub(super) policy: Policy,
    pub(super) ejection: Ejection,
    pub(super) budget: super::balance::RetryBudget,
    pub(super) hedge: Option<Hedge>,
    pub(super) connect_via: ConnectVia,
    /// How often each server's health is checked (`None`: never).
    pub(super) health_every: Option<Duration>,
}

impl Balancer {
    pub(super) fn new(settings: Settings) -> Balancer {
        let now = Instant::now();
        Balancer {
            config: settings.config,
            members: RwLock::new(Arc::new(Vec::new())),
            picker: Picker::new(settings.policy),
            ejection: settings.ejection,
            budget: Budget::new(settings.budget, now),
            hedge: settings.hedge,
            latencies: Latencies::new(now),
            connect_via: settings.connect_via,
            health_every: settings.health_every,
            closed: CancellationToken::new(),
        }
    }
}
