//! [`Balanced`]: how a channel over many servers is configured and
//! connected, and [`EndpointSnapshot`], what it shows of each server.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Balancer, ConnectVia, Settings, discovery};
use crate::Error;
use crate::client::balance::{Ejection, Hedge, Policy, RetryBudget};
use crate::client::{Builder, Channel};
use crate::discover::Discover;
use crate::transport::memory::MemoryConnector;
use crate::transport::tcp::TcpConnector;
use crate::transport::unix::UnixConnector;
use crate::transport::{Address, Connector};

/// Configures and connects a channel over the servers a discovery source
/// finds: `rpc::Channel::balanced(source)...connect().await?`. The result is
/// an ordinary [`Channel`]: generated clients and `with_timeout` work on it
/// unchanged.
///
/// ```no_run
/// # async fn run() -> Result<(), rpc::Error> {
/// use rpc::client::Policy;
/// let channel = rpc::Channel::balanced(rpc::discover::Static::new([
///     "127.0.0.1:7001",
///     "127.0.0.1:7002",
/// ]))
/// .policy(Policy::PowerOfTwo)
/// .connect()
/// .await?;
/// # Ok(()) }
/// ```
pub struct Balanced {
    start: Start,
    settings: Builder,
    policy: Policy,
    ejection: Ejection,
    budget: RetryBudget,
    hedge: Hedge,
    connect_via: ConnectVia,
    health_every: Option<Duration>,
    /// A setting that cannot work (a TLS server name that is none), which
    /// [`connect`](Balanced::connect) reports.
    misconfigured: Option<Error>,
}

/// Starts following the discovery source (its type is gone once the builder
/// is made).
type Start =
    Box<dyn FnOnce(std::sync::Weak<Balancer>, CancellationToken, watch::Sender<u64>) + Send>;

impl std::fmt::Debug for Balanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balanced")
            .field("settings", &self.settings)
            .field("policy", &self.policy)
            .field("ejection", &self.ejection)
            .field("retry_budget", &self.budget)
            .field("hedge", &self.hedge)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// A builder for a channel over the servers `discover` finds (see
    /// [`crate::discover`]).
    pub fn balanced<D: Discover>(discover: D) -> Balanced {
        Balanced {
            start: Box::new(move |balancer, closed, sets| {
                tokio::spawn(discovery::follow(balancer, discover, closed, sets));
            }),
            settings: Builder::default(),
            policy: Policy::default(),
            ejection: Ejection::default(),
            budget: RetryBudget::default(),
            hedge: Hedge::default(),
            connect_via: Arc::new(default_connector),
            health_every: Some(Duration::from_secs(5)),
            misconfigured: None,
        }
    }
}

/// TCP, Unix and in-memory addresses; others need
/// [`Balanced::connector`].
fn default_connector(address: &Address) -> Option<Box<dyn Connector>> {
    match address {
        Address::Tcp(addr) => Some(Box::new(TcpConnector { addrs: vec![*addr] })),
        Address::Unix(path) => Some(Box::new(UnixConnector { path: path.clone() })),
        Address::Memory(name) => Some(Box::new(MemoryConnector { name: name.clone() })),
        _ => None,
    }
}

impl Balanced {
    /// How an endpoint is chosen for each call (default
    /// [`Policy::PowerOfTwo`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// When a failing endpoint is ejected and for how long (see
    /// [`Ejection`]).
    pub fn ejection(mut self, ejection: Ejection) -> Self {
        self.ejection = ejection;
        self
    }

    /// How many retries and hedges the channel may send (see
    /// [`RetryBudget`]).
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Hedging of `#[rpc(idempotent)]` methods (default off; see [`Hedge`]).
    pub fn hedge(mut self, hedge: Hedge) -> Self {
        self.hedge = hedge;
        self
    }

    /// How often each server is asked for its health (default every 5 s;
    /// `None` turns checks off). One that answers `NotServing` gets no
    /// calls until it answers `Serving` (see [`crate::health`]).
    pub fn health_checks(mut self, every: Option<Duration>) -> Self {
        self.health_every = every.filter(|d| !d.is_zero());
        self
    }

    /// The settings of each endpoint's connection and the calls' default
    /// deadline, as on [`Channel::builder()`].
    pub fn settings(mut self, settings: Builder) -> Self {
        self.settings = settings;
        self
    }

    /// The deadline of a call that sets none (default 30 s): all of its
    /// attempts share it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings = self.settings.timeout(timeout);
        self
    }

    /// What requests are compressed with when a server accepts it, as
    /// [`Builder::compression`] (default none).
    pub fn compression(mut self, compression: crate::Compression) -> Self {
        self.settings = self.settings.compression(compression);
        self
    }

    /// The format of the values the calls send and receive, on every
    /// server, as [`Builder::format`] (default bincode). A server that does
    /// not accept it is not connected (its handshake fails).
    pub fn format(mut self, format: crate::Format) -> Self {
        self.settings = self.settings.format(format);
        self
    }

    /// How to reach a discovered address: for transports of your own (TCP,
    /// Unix and in-memory addresses need nothing). `None` leaves the
    /// address out of the set.
    pub fn connector<F>(mut self, connect: F) -> Self
    where
        F: Fn(&Address) -> Option<Box<dyn Connector>> + Send + Sync + 'static,
    {
        self.connect_via = Arc::new(connect);
        self
    }

    /// Connects to every server over TLS on TCP (feature `tls`), checking
    /// each server's certificate against `config`'s roots and `server_name`
    /// (one name for all: the servers of one service usually share a
    /// certificate, or a name on theirs). Addresses other than TCP are left
    /// out of the set. See [`crate::tls`].
    ///
    /// [`connect`](Self::connect) fails with [`Error::Config`] if
    /// `server_name` is not a DNS name or IP address.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: impl Into<Arc<rustls::ClientConfig>>, server_name: &str) -> Self {
        use crate::transport::tls::{TlsConnector, server_name as parse_name};
        let name = match parse_name(server_name) {
            Ok(name) => name,
            Err(e) => {
                self.misconfigured = Some(e);
                return self;
            }
        };
        let config = config.into();
        self.connector(move |address| match address {
            Address::Tcp(addr) => Some(Box::new(TlsConnector::new(
                vec![*addr],
                config.clone(),
                name.clone(),
            ))),
            _ => None,
        })
    }

    /// Starts following the discovery source, and returns once it has
    /// found servers and one of them is connected.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] (not sent) if discovery finds no servers, or
    /// none can be connected, within the connect timeout; [`Error::Config`]
    /// if the compression chosen is not built in.
    pub async fn connect(self) -> Result<Channel, Error> {
        if let Some(e) = self.misconfigured {
            return Err(e);
        }
        let config = self.settings.config().clone();
        config.compression.check()?;
        let wait = config.connect_timeout + config.handshake_timeout;
        let balancer = Arc::new(Balancer::new(Settings {
            config,
            policy: self.policy,
            ejection: self.ejection,
            budget: self.budget,
            hedge: match self.hedge {
                Hedge::Off => None,
                hedge => Some(hedge),
            },
            connect_via: self.connect_via,
            health_every: self.health_every,
        }));
        let closed = balancer.closed.clone();
        let (sets, mut seen) = watch::channel(0u64);
        (self.start)(Arc::downgrade(&balancer), closed.clone(), sets);
        #[cfg(feature = "metrics")]
        tokio::spawn(super::probe::report_states(
            Arc::downgrade(&balancer),
            closed.clone(),
        ));
        if let Some(every) = balancer.health_every {
            tokio::spawn(super::probe::probe(
                Arc::downgrade(&balancer),
                every,
                closed,
            ));
        }
        let until = Instant::now() + wait;
        let found = tokio::time::timeout_at(until, seen.wait_for(|&n| n > 0)).await;
        if !matches!(found, Ok(Ok(_))) {
            let why = format!("discovery found no servers within {wait:?}");
            return Err(Error::disconnected("Channel::balanced", why, false));
        }
        let attempts: Vec<_> = balancer
            .members()
            .iter()
            .filter_map(|m| m.endpoint.warm())
            .map(Box::pin)
            .collect();
        let connected = balancer
            .members()
            .iter()
            .any(|m| m.endpoint.usable().is_some())
            || tokio::time::timeout_at(until, any_true(attempts)).await == Ok(true);
        if !connected {
            let why = "no server discovery found could be connected";
            return Err(Error::disconnected("Channel::balanced", why, false));
        }
        Ok(Channel::over_balancer(balancer))
    }
}

/// True once one of `attempts` is; false if none is.
async fn any_true<F: Future<Output = bool> + Unpin>(mut attempts: Vec<F>) -> bool {
    while !attempts.is_empty() {
        let (ok, _, rest) = futures::future::select_all(attempts).await;
        if ok {
            return true;
        }
        attempts = rest;
    }
    false
}

/// One server of a balanced channel, as [`Channel::endpoints`] shows it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointSnapshot {
    /// Where it is.
    pub address: Address,
    /// Its weight from discovery.
    pub weight: u32,
    /// Its connection.
    pub state: EndpointState,
    /// Calls in flight to it.
    pub in_flight: u32,
    /// Its latency estimate (a peak-sensitive moving average), once it has
    /// answered.
    pub latency: Option<Duration>,
    /// Ejected for failing: it gets no calls until its probe succeeds.
    pub ejected: bool,
}

/// The state of an endpoint's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointState {
    /// A connection takes calls.
    Connected,
    /// None does now; the next call (or the channel) connects.
    Disconnected,
}

impl EndpointSnapshot {
    /// `endpoint` as it is now, with what the balancer knows of it.
    pub(in crate::client) fn of(
        endpoint: &crate::client::endpoint::Endpoint,
        weight: u32,
        member: Option<&super::Member>,
    ) -> Self {
        let now = Instant::now();
        let state = if endpoint.usable().is_some() {
            EndpointState::Connected
        } else {
            EndpointState::Disconnected
        };
        EndpointSnapshot {
            address: endpoint.address(),
            weight,
            state,
            in_flight: member.map_or(0, |m| m.load.in_flight()),
            latency: member.and_then(|m| m.load.latency(now)),
            ejected: member.is_some_and(|m| m.is_ejected(now)),
        }
    }
}

impl Balancer {
    /// Every member, as it is now.
    pub(in crate::client) fn snapshot(&self) -> Vec<EndpointSnapshot> {
        self.members()
            .iter()
            .map(|m| EndpointSnapshot::of(&m.endpoint, m.target.weight, Some(m)))
            .collect()
    }
}
