//! A transport of the user's own, through the public seam
//! (`rpc::transport::{Connector, Listener, Link}`): in-memory pipes made
//! here, served with `Server::builder().serve(listener)` and reached with
//! `Channel::builder().connect_with(connector)`. Calls work, both sides see
//! the peer as the transport describes it, the server names the listener's
//! address; a connector that panics once costs the channel one reconnect,
//! not every call after it; and a connection whose set-up stalls holds up
//! no one and is dropped at the handshake timeout.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rpc::transport::{Address, Connector, Link, Listener, Peer};
use support::hand::within;
use support::{Calc, CalculatorClient, CalculatorServer};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// How each end of a pipe describes the other.
const PIPE_PEER: &str = "test pipe";

fn pipe_address() -> Address {
    Address::Other("pipe:test".into())
}

fn pipe_link(stream: DuplexStream) -> Link {
    Link::new(stream, Peer::Other(PIPE_PEER.into()))
}

/// Where a connector hands the far end of each pipe it opens: to the
/// listener serving now (a restarted server's, after a restart).
#[derive(Debug, Clone, Default)]
struct Pipes(Arc<Mutex<Option<mpsc::UnboundedSender<DuplexStream>>>>);

impl Pipes {
    /// A listener for the pipes opened from now on.
    fn listen(&self) -> PipeListener {
        let (tx, pipes) = mpsc::unbounded_channel();
        *self.0.lock().unwrap() = Some(tx);
        PipeListener { pipes }
    }

    /// A pipe to the listener serving now; refused if none is.
    fn open(&self) -> io::Result<Link> {
        let (ours, theirs) = tokio::io::duplex(64 << 10);
        let server = self.0.lock().unwrap().clone();
        match server {
            Some(server) if server.send(theirs).is_ok() => Ok(pipe_link(ours)),
            _ => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "no server at the test pipe",
            )),
        }
    }
}

struct PipeListener {
    pipes: mpsc::UnboundedReceiver<DuplexStream>,
}

impl Listener for PipeListener {
    type SetUp = std::future::Ready<io::Result<Link>>;

    async fn accept(&mut self) -> io::Result<Self::SetUp> {
        match self.pipes.recv().await {
            Some(stream) => Ok(std::future::ready(Ok(pipe_link(stream)))),
            // Every connector is gone: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn address(&self) -> Address {
        pipe_address()
    }
}

/// Opens pipes; counts its calls, and panics on call number `panics_on`
/// (counting from 1), if set.
struct PipeConnector {
    pipes: Pipes,
    calls: Arc<AtomicUsize>,
    panics_on: Option<usize>,
}

impl Connector for PipeConnector {
    fn connect(&self) -> BoxFuture<'_, io::Result<Link>> {
        let call = self.calls.fetch_add(1, SeqCst) + 1;
        if self.panics_on == Some(call) {
            panic!("the test connector panics on call {call}");
        }
        Box::pin(async move { self.pipes.open() })
    }

    fn address(&self) -> Address {
        pipe_address()
    }
}

/// The peer a handler sees.
#[rpc::service]
trait Caller {
    /// `rpc::context::current().peer()`, in `Debug` form.
    async fn peer(&self) -> String;
}

struct CallerImpl;

impl Caller for CallerImpl {
    async fn peer(&self) -> String {
        format!("{:?}", rpc::context::current().peer())
    }
}

fn serve(pipes: &Pipes) -> rpc::ServerHandle {
    rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .add_service(CallerServer::new(CallerImpl))
        .serve(pipes.listen())
        .expect("serving the test pipe")
}

#[tokio::test]
async fn a_transport_of_ones_own_serves_and_connects_through_the_public_seam() {
    let pipes = Pipes::default();
    let server = serve(&pipes);
    assert_eq!(server.address(), &pipe_address());
    let connector = PipeConnector {
        pipes: pipes.clone(),
        calls: Arc::default(),
        panics_on: None,
    };
    let channel = rpc::Channel::builder()
        .connect_with(connector)
        .await
        .unwrap();
    assert_eq!(channel.address(), pipe_address());
    assert_eq!(channel.peer(), Peer::Other(PIPE_PEER.into()));
    assert_eq!(channel.peer_addr(), None);

    let calc = CalculatorClient::new(channel.clone());
    let calls: Vec<_> = (0..20).map(|i| tokio::spawn(calc.add(i, 100))).collect();
    for (i, call) in (0..).zip(calls) {
        assert_eq!(within("a call", call).await.unwrap().unwrap(), i + 100);
    }
    let seen = CallerClient::new(channel).peer().await.unwrap();
    assert_eq!(seen, format!("{:?}", Peer::Other(PIPE_PEER.into())));
    assert_eq!(server.connections(), 1);
    within("the shutdown", server.shutdown()).await;
}

/// The server restarts behind the connector, and the connector panics on
/// the reconnect that follows (its second call): the calls up to then fail
/// with Disconnected, and a call after them reconnects (the backoff is
/// short) and is answered, through the connector's third call.
#[tokio::test]
async fn after_a_reconnect_whose_connector_panicked_a_later_call_reconnects() {
    let pipes = Pipes::default();
    let server = serve(&pipes);
    let calls = Arc::new(AtomicUsize::new(0));
    let connector = PipeConnector {
        pipes: pipes.clone(),
        calls: calls.clone(),
        panics_on: Some(2),
    };
    let channel = rpc::Channel::builder()
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect_with(connector)
        .await
        .unwrap();
    let calc = CalculatorClient::new(channel);
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);

    server.abort().await;
    let _server = serve(&pipes);
    // At most one call on the dead connection, one through the panic, and
    // then an answer; a few more calls' worth of slack.
    let mut failed = Vec::new();
    let mut answered = None;
    for i in 0..6 {
        match within("a call", calc.add(i, 10)).await {
            Ok(sum) => {
                answered = Some((i, sum));
                break;
            }
            Err(e) => failed.push(e),
        }
    }
    let Some((i, sum)) = answered else {
        panic!("no call was answered after the connector panicked: {failed:?}");
    };
    assert_eq!(sum, i + 10);
    assert!(
        failed
            .iter()
            .all(|e| matches!(e, rpc::Error::Disconnected { .. })),
        "{failed:?}"
    );
    assert_eq!(
        calls.load(SeqCst),
        3,
        "the connector's calls: the first, the one that panicked, the one after"
    );
}

/// A listener whose first connection's set-up (a TLS handshake, say) never
/// finishes; the set-up owns the pipe, so the pipe closes when it is dropped.
struct StallingListener {
    inner: PipeListener,
    stalled: bool,
}

impl Listener for StallingListener {
    type SetUp = BoxFuture<'static, io::Result<Link>>;

    async fn accept(&mut self) -> io::Result<Self::SetUp> {
        let mut link = self.inner.accept().await?;
        let link = (&mut link).await?;
        if std::mem::replace(&mut self.stalled, true) {
            return Ok(Box::pin(std::future::ready(Ok(link))));
        }
        Ok(Box::pin(async move {
            let _held = link;
            std::future::pending().await
        }))
    }

    fn address(&self) -> Address {
        pipe_address()
    }
}

/// Setting a connection up runs in that connection's own task, within the
/// server's handshake timeout: a peer whose set-up stalls holds up neither
/// the accept loop nor other peers, and is dropped at the timeout.
#[tokio::test]
async fn a_connection_whose_set_up_stalls_holds_up_no_one_and_is_dropped_at_the_timeout() {
    let pipes = Pipes::default();
    let server = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .handshake_timeout(Duration::from_millis(500))
        .serve(StallingListener {
            inner: pipes.listen(),
            stalled: false,
        })
        .unwrap();
    // The first pipe: its set-up never finishes.
    let mut stalled = {
        let (ours, theirs) = tokio::io::duplex(1 << 10);
        let sender = pipes.0.lock().unwrap().clone().unwrap();
        sender.send(theirs).unwrap();
        ours
    };
    let started = std::time::Instant::now();
    // Another peer is served meanwhile.
    let connector = PipeConnector {
        pipes: pipes.clone(),
        calls: Arc::default(),
        panics_on: None,
    };
    let channel = within(
        "connecting",
        rpc::Channel::builder().connect_with(connector),
    )
    .await
    .unwrap();
    let calc = CalculatorClient::new(channel);
    assert_eq!(within("a call", calc.add(2, 3)).await.unwrap(), 5);
    // The stalled one is dropped at the timeout: its pipe closes.
    let mut byte = [0u8; 1];
    let read = within("the stalled pipe to close", async {
        tokio::io::AsyncReadExt::read(&mut stalled, &mut byte).await
    })
    .await;
    assert_eq!(read.unwrap(), 0, "the stalled pipe got bytes");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "dropped after {waited:?}"
    );
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    within("the shutdown", server.shutdown()).await;
}
