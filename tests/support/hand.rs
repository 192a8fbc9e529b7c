//! A server played by hand over TCP (on top of `raw`), to see exactly the
//! frames a client sends: accept and handshake, read its Requests, answer
//! them, and know when it has handled everything sent so far (`sync`).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;

use super::probe::ProbeClient;
use super::raw::{self, RawConn, RawFrame};

/// How long a step that should be prompt may take before a test fails.
pub const PROMPTLY: Duration = Duration::from_secs(3);

pub async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Accepts the client's next connection and plays the server's handshake.
pub async fn accept(listener: &TcpListener) -> RawConn {
    let (stream, _) = tokio::time::timeout(PROMPTLY, listener.accept())
        .await
        .expect("the client did not connect")
        .unwrap();
    stream.set_nodelay(true).unwrap();
    RawConn::accept_handshake(stream).await
}

/// A client with in-flight cap `cap` on a hand-played server; the listener
/// stays open for the client's reconnects.
pub async fn client_and_peer(cap: usize) -> (ProbeClient, RawConn, TcpListener) {
    let (listener, addr) = listen().await;
    let builder = rpc::Channel::builder().max_in_flight(cap);
    let (channel, peer) = tokio::join!(builder.connect(addr), accept(&listener));
    (ProbeClient::new(channel.unwrap()), peer, listener)
}

/// A Request as the server reads it.
#[derive(Debug)]
pub struct Req {
    pub id: u64,
    pub method: u64,
    pub budget: Duration,
    pub args: Vec<u8>,
}

pub fn parse_request(f: &RawFrame) -> Req {
    assert_eq!(f.kind, raw::kind::REQUEST, "not a request: {f:?}");
    let p = &f.payload;
    Req {
        id: f.call_id,
        method: u64::from_be_bytes(p[..8].try_into().unwrap()),
        budget: Duration::from_micros(u64::from_be_bytes(p[8..16].try_into().unwrap())),
        args: p[16..].to_vec(),
    }
}

pub async fn next_request(peer: &mut RawConn) -> Req {
    let f = peer
        .next_frame(PROMPTLY)
        .await
        .expect("the connection closed");
    parse_request(&f)
}

/// `Probe.hold(ms, tag)`'s arguments on the wire.
pub fn hold_args(ms: u64, tag: u32) -> Vec<u8> {
    raw::args(&(ms, tag))
}

/// An Ok Response carrying `value`.
pub fn ok<T: Serialize>(id: u64, value: &T) -> Vec<u8> {
    let mut p = vec![raw::status::OK];
    p.extend_from_slice(&raw::args(value));
    raw::frame(raw::kind::RESPONSE, 0, id, &p)
}

/// Sends a Ping and returns what the client sent before its Pong. By then
/// the client has handled every frame sent to it before the Ping, and
/// whatever it had queued when it did is in the list.
pub async fn sync(peer: &mut RawConn, nonce: u64) -> Vec<RawFrame> {
    peer.send(&raw::ping(nonce)).await;
    let mut before = Vec::new();
    loop {
        let f = peer
            .next_frame(PROMPTLY)
            .await
            .expect("the connection closed");
        if f.kind == raw::kind::PONG && f.call_id == nonce {
            return before;
        }
        before.push(f);
    }
}

/// `f`'s output, failing the test if it takes longer than [`PROMPTLY`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(PROMPTLY, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: still pending after {PROMPTLY:?}"))
}

/// Relays a call to a downstream server from inside a handler.
#[rpc::service]
pub trait Relay {
    /// Makes a downstream call, blocks this handler's thread for `ms`, then
    /// awaits the call; reports the downstream outcome.
    async fn relay_late(&self, ms: u64) -> String;
}

pub struct RelayImpl {
    pub downstream: ProbeClient,
    pub outcomes: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Relay for RelayImpl {
    async fn relay_late(&self, ms: u64) -> String {
        // Made here, the call inherits this handler's deadline.
        let call = self.downstream.hold(0, 7);
        // The scenario: the handler is busy (blocking, so nothing can drop
        // it meanwhile) until its deadline has passed.
        std::thread::sleep(Duration::from_millis(ms));
        let outcome = format!("{:?}", call.await);
        let _ = self.outcomes.send(outcome.clone());
        outcome
    }
}

/// Serves `Relay` with `downstream`, calls `relay_late(300)` with a 100 ms
/// budget and checks both outcomes: the caller's (DeadlineExceeded) and
/// the downstream call's, made inside the handler and first polled after
/// its inherited deadline had passed (DeadlineExceeded too).
pub async fn relay_a_call_made_too_late(downstream: ProbeClient) {
    let (outcomes, mut outcome) = tokio::sync::mpsc::unbounded_channel();
    let server = rpc::Server::builder()
        .add_service(RelayServer::new(RelayImpl {
            downstream,
            outcomes,
        }))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let relay = RelayClient::connect(server.local_addr())
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(100));
    let caller = relay.relay_late(300).await;
    assert!(
        matches!(caller, Err(rpc::Error::DeadlineExceeded { .. })),
        "{caller:?}"
    );
    let downstream_outcome = within("the handler's downstream call", outcome.recv())
        .await
        .unwrap();
    assert!(
        downstream_outcome.contains("DeadlineExceeded"),
        "{downstream_outcome}"
    );
}

/// Aborts the test binary if not dropped within 30 s: a deadlock on the
/// client's state lock would block the runtime's threads, so no timer of
/// the runtime could report it.
pub struct Watchdog(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

pub fn watchdog() -> Watchdog {
    const LIMIT: Duration = Duration::from_secs(30);
    let what = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LIMIT) {
            eprintln!("{what}: still running after {LIMIT:?} (a deadlock?); aborting");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

/// The connection under a call dies: the call fails with Disconnected (it
/// may have run), and the next call reconnects, to `listener`, and is
/// answered there. Returns the new connection's server side.
pub async fn a_dead_connection_and_a_reconnect(
    client: &ProbeClient,
    peer: RawConn,
    listener: &TcpListener,
) -> RawConn {
    let mut peer = peer;
    let call = tokio::spawn(client.hold(0, 1));
    next_request(&mut peer).await;
    drop(peer);
    let outcome = within("the call", call).await.unwrap();
    assert!(
        matches!(outcome, Err(rpc::Error::Disconnected { .. })),
        "{outcome:?}"
    );
    let next = tokio::spawn(client.hold(0, 2));
    let mut peer = accept(listener).await;
    let req = next_request(&mut peer).await;
    peer.send(&ok(req.id, &2u32)).await;
    assert_eq!(within("the next call", next).await.unwrap().unwrap(), 2);
    peer
}

/// Awaits a call that the server never answers: it must fail with
/// DeadlineExceeded naming `budget`, no earlier than `budget` after
/// `started`, and within a few seconds of it.
pub async fn fails_at_its_deadline<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, rpc::Error>>,
    budget: Duration,
    started: std::time::Instant,
) {
    let outcome = tokio::time::timeout(budget + PROMPTLY, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no outcome {PROMPTLY:?} past its {budget:?} budget"));
    let elapsed = started.elapsed();
    match outcome {
        Err(rpc::Error::DeadlineExceeded { budget: b, .. }) => {
            assert_eq!(b, budget, "{what}: the budget reported")
        }
        other => panic!("{what}: {other:?} after {elapsed:?}"),
    }
    assert!(
        elapsed >= budget,
        "{what}: failed after {elapsed:?}, before its {budget:?} budget"
    );
}
