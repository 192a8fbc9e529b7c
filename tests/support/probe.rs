//! A service that records what its handlers do: how many started, how many
//! run at once (and the most that ever did), how many completed, and how many
//! were dropped before completing (cancelled, past their deadline, or their
//! connection closed). Tests wait on these counters instead of sleeping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use rpc::transport::Address;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use super::transport::Transport;

pub use rpc_suite::calculator::{Calc, CalculatorClient, CalculatorServer};

/// A recursive type, for nesting bombs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Nest {
    Leaf,
    Node(Box<Nest>),
}

impl Nest {
    pub fn deep(depth: usize) -> Nest {
        (0..depth).fold(Nest::Leaf, |inner, _| Nest::Node(Box::new(inner)))
    }
}

/// What a handler saw of its call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub call_id: u64,
    pub peer: Option<SocketAddr>,
    pub method: String,
    pub remaining_us: u64,
}

#[rpc::service]
pub trait Probe {
    /// Runs for `ms` milliseconds (`u64::MAX`: until dropped), then returns `tag`.
    async fn hold(&self, ms: u64, tag: u32) -> u32;
    /// What `rpc::context::current()` says.
    async fn seen(&self) -> Seen;
    /// How deep `n` is.
    async fn depth(&self, n: Nest) -> u32;
    /// How many units arrived.
    async fn units(&self, v: Vec<()>) -> u64;
    /// How long the text is.
    async fn text(&self, s: String) -> u64;
    /// Panics with `message`.
    async fn explode(&self, message: String) -> u32;
    /// `len` bytes (counted by the probe as one blob made).
    async fn blob(&self, len: u32) -> Vec<u8>;
}

/// The counters, shared by the test and the server.
#[derive(Debug, Default)]
pub struct ProbeState {
    started: AtomicUsize,
    running: AtomicUsize,
    high_water: AtomicUsize,
    completed: AtomicUsize,
    dropped: AtomicUsize,
    blobs: AtomicUsize,
    changed: Notify,
}

impl ProbeState {
    /// `hold` handlers that started.
    pub fn started(&self) -> usize {
        self.started.load(SeqCst)
    }
    /// `hold` handlers running now.
    pub fn running(&self) -> usize {
        self.running.load(SeqCst)
    }
    /// The most `hold` handlers ever running at once.
    pub fn high_water(&self) -> usize {
        self.high_water.load(SeqCst)
    }
    /// `hold` handlers that returned.
    pub fn completed(&self) -> usize {
        self.completed.load(SeqCst)
    }
    /// `hold` handlers dropped before returning.
    pub fn dropped(&self) -> usize {
        self.dropped.load(SeqCst)
    }

    /// `blob` calls run.
    pub fn blobs(&self) -> usize {
        self.blobs.load(SeqCst)
    }

    /// Waits until `cond` holds, failing the test after `within`.
    pub async fn wait_for(&self, what: &str, within: Duration, cond: impl Fn(&ProbeState) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if cond(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out after {within:?} waiting for {what}: started {}, running {}, completed {}, dropped {}",
                    self.started(),
                    self.running(),
                    self.completed(),
                    self.dropped()
                );
            }
        }
    }
}

/// Marks one running `hold`; its drop records how the handler ended.
struct Running<'a> {
    state: &'a ProbeState,
    completed: bool,
}

impl<'a> Running<'a> {
    fn start(state: &'a ProbeState) -> Self {
        state.started.fetch_add(1, SeqCst);
        let now = state.running.fetch_add(1, SeqCst) + 1;
        state.high_water.fetch_max(now, SeqCst);
        state.changed.notify_waiters();
        Running {
            state,
            completed: false,
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.state.running.fetch_sub(1, SeqCst);
        if self.completed {
            self.state.completed.fetch_add(1, SeqCst);
        } else {
            self.state.dropped.fetch_add(1, SeqCst);
        }
        self.state.changed.notify_waiters();
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProbeImpl(pub Arc<ProbeState>);

impl Probe for ProbeImpl {
    async fn hold(&self, ms: u64, tag: u32) -> u32 {
        let mut running = Running::start(&self.0);
        if ms == u64::MAX {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        running.completed = true;
        tag
    }

    async fn seen(&self) -> Seen {
        let ctx = rpc::context::current();
        Seen {
            call_id: ctx.call_id(),
            peer: ctx.peer_addr(),
            method: ctx.method().to_string(),
            remaining_us: ctx.remaining().as_micros() as u64,
        }
    }

    async fn depth(&self, n: Nest) -> u32 {
        let mut depth = 0;
        let mut n = &n;
        while let Nest::Node(inner) = n {
            depth += 1;
            n = inner;
        }
        depth
    }

    async fn units(&self, v: Vec<()>) -> u64 {
        v.len() as u64
    }

    async fn text(&self, s: String) -> u64 {
        s.len() as u64
    }

    async fn explode(&self, message: String) -> u32 {
        panic!("{message}")
    }

    async fn blob(&self, len: u32) -> Vec<u8> {
        self.0.blobs.fetch_add(1, SeqCst);
        vec![7; len as usize]
    }
}

/// A server with the probe and the calculator on 127.0.0.1:0.
pub async fn start_probe(builder: rpc::server::Builder) -> (rpc::ServerHandle, Arc<ProbeState>) {
    start_probe_over(Transport::Tcp, builder).await
}

/// A server with the probe and the calculator over `transport`.
pub async fn start_probe_over(
    transport: Transport,
    builder: rpc::server::Builder,
) -> (rpc::ServerHandle, Arc<ProbeState>) {
    let state = Arc::new(ProbeState::default());
    let builder = builder
        .add_service(ProbeServer::new(ProbeImpl(state.clone())))
        .add_service(CalculatorServer::new(Calc));
    (transport.serve(builder).await, state)
}

/// A client on its own connection.
pub async fn probe_client(addr: SocketAddr) -> ProbeClient {
    ProbeClient::connect(addr).await.expect("connect")
}

/// A client on its own connection to the server at `address`, whatever its
/// transport.
pub async fn probe_client_at(address: &Address) -> ProbeClient {
    ProbeClient::new(super::transport::connect(address).await)
}

/// Checks that a fresh, well-behaved client is served correctly.
pub async fn assert_serves(addr: SocketAddr) {
    let calc = tokio::time::timeout(Duration::from_secs(10), CalculatorClient::connect(addr))
        .await
        .expect("connecting took over 10 s")
        .expect("connect");
    for i in 0..5 {
        let sum = tokio::time::timeout(Duration::from_secs(10), calc.add(i, 40))
            .await
            .expect("a call took over 10 s")
            .expect("a call failed");
        assert_eq!(sum, i + 40);
    }
}

/// Polls `cond` every few milliseconds until it holds, failing the test after
/// `within` (for conditions nothing notifies about, such as a server's
/// connection count).
pub async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
