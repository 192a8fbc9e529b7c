//! A transport for tests that fails on command: in-memory endpoints whose
//! latency, stalls, refusals and disconnects the test controls, so code
//! built on this library (a retry policy, a balancer, a health checker) can
//! be tested against a network that misbehaves, deterministically and with
//! no sockets.
//!
//! A [`Network`] holds named endpoints. A server listens on one with
//! [`Network::listen`] (a [`Listener`]), a channel reaches it through
//! [`Network::connector`] (a [`Connector`], called again for every
//! reconnect), and [`Network::endpoint`] is the test's handle on it:
//!
//! ```
//! use std::time::Duration;
//!
//! #[rpc::service]
//! pub trait Echo { async fn echo(&self, s: String) -> String; }
//! struct E;
//! impl Echo for E { async fn echo(&self, s: String) -> String { s } }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let net = rpc::fault::Network::new();
//! let server = rpc::Server::builder()
//!     .add_service(EchoServer::new(E))
//!     .serve(net.listen("a")?)?;
//! let channel = rpc::Channel::builder().connect_with(net.connector("a")).await?;
//! let echo = EchoClient::new(channel);
//!
//! let a = net.endpoint("a");
//! a.set_latency(Duration::from_millis(20));   // each way: a round trip takes 40 ms more
//! assert_eq!(echo.echo("hi".into()).await?, "hi");
//!
//! a.stall();                                   // nothing crosses; connections stay open
//! let late = echo.with_timeout(Duration::from_millis(50)).echo("hi".into()).await;
//! assert!(matches!(late, Err(rpc::Error::DeadlineExceeded { .. })));
//! a.resume();
//!
//! a.refuse(true);                              // new connections refused
//! a.disconnect();                              // every open connection cut now
//! assert_eq!(a.connections(), 0);
//! let refused = rpc::Channel::builder().connect_with(net.connector("a")).await;
//! assert!(refused.is_err());
//! a.refuse(false);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! What each control does, and when:
//!
//! - **Latency** ([`Endpoint::set_latency`]): every byte sent either way
//!   arrives that much later than it was sent (one way; a round trip takes
//!   twice as long). Bytes never overtake each other: lowering the latency
//!   lets later bytes arrive sooner, but never before earlier ones. A change
//!   applies to bytes sent from then on.
//! - **Stall** ([`Endpoint::stall`], [`Endpoint::resume`]): from the moment
//!   of the call no byte is delivered either way, including those already in
//!   flight; connections stay open and writers fill the buffers and then
//!   wait, as over a network that stopped. On resume, bytes whose latency
//!   has passed arrive at once.
//! - **Refuse** ([`Endpoint::refuse`]): new connections fail with
//!   [`io::ErrorKind::ConnectionRefused`]; open ones are untouched.
//! - **Disconnect** ([`Endpoint::disconnect`]): every connection open now is
//!   cut: both sides read EOF, and bytes in flight are lost. Connections
//!   opened afterwards are not affected. Each side learns of the cut as
//!   soon as its tasks next run; as over TCP, a call sent before its
//!   channel has seen the EOF fails with [`Disconnected`] too (a call that
//!   was in flight always does), and the call after that reconnects.
//!
//! An endpoint nobody listens on refuses connections, as a closed port does,
//! and a server that shuts down frees its name. Connections are counted by
//! [`Endpoint::connections`] from the connect until both sides have closed
//! (or the connection is cut).
//!
//! To use the network where an [`Address`] is given (a balanced channel's
//! discovery, say), name endpoints by [`Endpoint::address`]
//! (`fault:{name}`) and turn addresses back into connectors with
//! [`Network::connector_for`].
//!
//! [`Disconnected`]: crate::Error::Disconnected

mod pipe;

use std::collections::HashMap;
use std::future::Ready;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::transport::{Address, Connector, Link, Listener, Peer};
use pipe::{Faults, PIPE_BUFFER};

/// What an endpoint's address starts with.
const SCHEME: &str = "fault:";
/// Connections opened and not accepted yet, as a listen backlog.
const BACKLOG: usize = 1024;

/// A set of named in-memory endpoints whose faults a test controls. Clones
/// share the endpoints; separate networks share nothing, so tests running
/// at once never see each other's names.
#[derive(Debug, Clone, Default)]
pub struct Network {
    endpoints: Arc<Mutex<HashMap<String, Arc<Shared>>>>,
}

impl Network {
    /// A network with no endpoints.
    pub fn new() -> Network {
        Network::default()
    }

    /// The control handle of the endpoint `name` (made on first use: an
    /// endpoint can be set up before anything listens on it).
    pub fn endpoint(&self, name: &str) -> Endpoint {
        Endpoint {
            shared: self.shared(name),
        }
    }

    /// Listens on `name`: serve it with
    /// [`Server::builder()...serve(listener)`](crate::server::Builder::serve).
    /// The name is free again once the listener is dropped (the server has
    /// shut down).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::AddrInUse`] if a listener on `name` exists already.
    pub fn listen(&self, name: &str) -> io::Result<FaultListener> {
        let shared = self.shared(name);
        let mut state = shared.state();
        if state.listener.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("something listens on {SCHEME}{name} already"),
            ));
        }
        let (ours, links) = mpsc::channel(BACKLOG);
        state.listener = Some(ours.clone());
        drop(state);
        Ok(FaultListener {
            shared,
            links,
            ours,
        })
    }

    /// A connector to `name`, for
    /// [`Channel::builder().connect_with(..)`](crate::client::Builder::connect_with).
    pub fn connector(&self, name: &str) -> FaultConnector {
        FaultConnector {
            shared: self.shared(name),
        }
    }

    /// The connector for `address` if it names an endpoint of a fault
    /// network (`fault:{name}`, as [`Endpoint::address`] gives), on this
    /// network; `None` for any other address.
    pub fn connector_for(&self, address: &Address) -> Option<FaultConnector> {
        match address {
            Address::Other(s) => s.strip_prefix(SCHEME).map(|name| self.connector(name)),
            _ => None,
        }
    }

    fn shared(&self, name: &str) -> Arc<Shared> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        endpoints
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Shared::new(name)))
            .clone()
    }
}

/// A test's handle on one endpoint of a [`Network`]: its faults, set at any
/// time, and its open connections. Clones control the same endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    shared: Arc<Shared>,
}

impl Endpoint {
    /// Delays every byte sent either way by `latency` (one way), from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.send_modify(|f| f.latency = latency);
    }

    /// The latency set now.
    pub fn latency(&self) -> Duration {
        self.shared.faults.borrow().latency
    }

    /// Stops every byte either way, those in flight included, until
    /// [`resume`](Self::resume); connections stay open.
    pub fn stall(&self) {
        self.shared.faults.send_modify(|f| f.stalled = true);
    }

    /// Lets bytes flow again after a [`stall`](Self::stall).
    pub fn resume(&self) {
        self.shared.faults.send_modify(|f| f.stalled = false);
    }

    /// Whether the endpoint is stalled.
    pub fn is_stalled(&self) -> bool {
        self.shared.faults.borrow().stalled
    }

    /// Refuses new connections (`true`) with
    /// [`io::ErrorKind::ConnectionRefused`], or accepts them again (`false`).
    pub fn refuse(&self, refuse: bool) {
        self.shared.faults.send_modify(|f| f.refused = refuse);
    }

    /// Cuts every connection open now: both sides read EOF, and whatever
    /// was in flight is lost.
    pub fn disconnect(&self) {
        let cut: Vec<_> = self.shared.state().open.drain().collect();
        for (_, token) in cut {
            token.cancel();
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.shared.state().open.len()
    }

    /// Its address: `fault:{name}`.
    pub fn address(&self) -> Address {
        self.shared.address()
    }
}

/// Opens connections to one endpoint of a [`Network`] (see
/// [`Network::connector`]).
#[derive(Debug, Clone)]
pub struct FaultConnector {
    shared: Arc<Shared>,
}

impl Connector for FaultConnector {
    fn connect(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(self.shared.connect())
    }

    fn address(&self) -> Address {
        self.shared.address()
    }
}

/// Accepts the connections to one endpoint of a [`Network`] (see
/// [`Network::listen`]); frees the name when dropped.
#[derive(Debug)]
pub struct FaultListener {
    shared: Arc<Shared>,
    links: mpsc::Receiver<Link>,
    /// The sender the endpoint holds, to know our registration from a later one.
    ours: mpsc::Sender<Link>,
}

impl Listener for FaultListener {
    type SetUp = Ready<io::Result<Link>>;

    async fn accept(&mut self) -> io::Result<Self::SetUp> {
        crate::transport::memory::next_link(&mut self.links).await
    }

    fn address(&self) -> Address {
        self.shared.address()
    }
}

impl Drop for FaultListener {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        if state
            .listener
            .as_ref()
            .is_some_and(|l| l.same_channel(&self.ours))
        {
            state.listener = None;
        }
    }
}

/// One endpoint, as its handles, connectors, listener and connections share it.
#[derive(Debug)]
struct Shared {
    name: String,
    /// The faults set now; each connection's middle watches them.
    faults: watch::Sender<Faults>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Where new connections go, while something listens.
    listener: Option<mpsc::Sender<Link>>,
    /// The connections open now, by number, each with the token that cuts it.
    open: HashMap<u64, CancellationToken>,
    next: u64,
}

impl Shared {
    fn new(name: &str) -> Shared {
        Shared {
            name: name.to_owned(),
            faults: watch::Sender::new(Faults::default()),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds
        // consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn address(&self) -> Address {
        Address::Other(format!("{SCHEME}{}", self.name))
    }

    fn refused(&self, why: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("{SCHEME}{} {why}", self.name),
        )
    }

    /// Opens a connection: the client's end, with the server's end handed
    /// to the listener and a task in the middle carrying bytes between them.
    async fn connect(self: &Arc<Self>) -> io::Result<Link> {
        if self.faults.borrow().refused {
            return Err(self.refused("refuses connections (the test said so)"));
        }
        let (server, id, cut) = {
            let mut state = self.state();
            let Some(server) = state.listener.clone() else {
                return Err(self.refused("has no listener"));
            };
            let id = state.next;
            state.next += 1;
            let cut = CancellationToken::new();
            state.open.insert(id, cut.clone());
            (server, id, cut)
        };
        let (client, client_middle) = tokio::io::duplex(PIPE_BUFFER);
        let (server_middle, server_end) = tokio::io::duplex(PIPE_BUFFER);
        let open = Open {
            shared: self.clone(),
            id,
        };
        let faults = self.faults.subscribe();
        tokio::spawn(async move {
            pipe::carry(client_middle, server_middle, faults, cut).await;
            drop(open);
        });
        let peer = Peer::Other(format!("{SCHEME}{} client {id}", self.name));
        server
            .send(Link::new(server_end, peer))
            .await
            .map_err(|_| self.refused("has no listener"))?;
        Ok(Link::new(client, Peer::Other(self.address().to_string())))
    }
}

/// Counts a connection as open until its middle task ends.
struct Open {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.shared.state().open.remove(&self.id);
    }
}
