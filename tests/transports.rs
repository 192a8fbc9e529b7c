//! What is particular to each transport: the peer a handler sees (a Unix
//! caller's uid, gid and pid; an in-memory pipe), the socket file or the
//! name a server holds while it serves and frees when it stops, a reconnect
//! after a restart at the same address, a graceful shutdown in memory, and
//! the limits behaving over every transport as over TCP. The contract tests
//! of `core.rs`, `deadlines.rs` and `lifecycle.rs` run over all three too.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rpc::transport::{Address, Credentials, Peer};
use serde::{Deserialize, Serialize};
use support::probe::*;
use support::transport::{connect, connect_with, over_all_transports, serve_at};
use support::{ShapesClient, assert_handshake_timed_out, start_over};

const PROMPTLY: Duration = Duration::from_secs(3);

/// The peer a handler saw, as it can travel back to the test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum SeenPeer {
    Tcp(SocketAddr),
    Unix(Option<(u32, u32, Option<i32>)>),
    Memory,
    Other(String),
}

/// What a handler's context says of its caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Caller {
    peer: SeenPeer,
    addr: Option<SocketAddr>,
    credentials: Option<(u32, u32, Option<i32>)>,
}

fn triple(c: Credentials) -> (u32, u32, Option<i32>) {
    (c.uid, c.gid, c.pid)
}

#[rpc::service]
trait Who {
    /// Who is calling, as `rpc::context::current()` says.
    async fn caller(&self) -> Caller;
    /// Which server answered.
    async fn server(&self) -> String;
}

struct WhoImpl(&'static str);

impl Who for WhoImpl {
    async fn caller(&self) -> Caller {
        let ctx = rpc::context::current();
        let peer = match ctx.peer() {
            Peer::Tcp(addr) => SeenPeer::Tcp(*addr),
            Peer::Unix(credentials) => SeenPeer::Unix(credentials.map(triple)),
            Peer::Memory => SeenPeer::Memory,
            other => SeenPeer::Other(format!("{other:?}")),
        };
        Caller {
            peer,
            addr: ctx.peer_addr(),
            credentials: ctx.peer_credentials().map(triple),
        }
    }

    async fn server(&self) -> String {
        self.0.to_string()
    }
}

fn who(name: &'static str) -> rpc::server::Builder {
    rpc::Server::builder().add_service(WhoServer::new(WhoImpl(name)))
}

/// The effective id on the `Uid:` or `Gid:` line of `/proc/self/status`
/// (real, effective, saved, filesystem): what the kernel reports to a
/// socket's peer.
fn effective_id(line: &str) -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ids = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("no {line} line in /proc/self/status"));
    ids.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn unix_path(address: &Address) -> &Path {
    match address {
        Address::Unix(path) => path,
        other => panic!("not a unix address: {other}"),
    }
}

// ---------------------------------------------------------------------------
// Unix domain sockets.

#[tokio::test]
async fn a_unix_handler_sees_the_callers_uid_gid_and_pid() {
    let expected = (
        effective_id("Uid:"),
        effective_id("Gid:"),
        Some(std::process::id() as i32),
    );
    let (_server, channel) = Transport::Unix.start(who("unix")).await;
    let seen = WhoClient::new(channel.clone()).caller().await.unwrap();
    assert_eq!(
        seen,
        Caller {
            peer: SeenPeer::Unix(Some(expected)),
            addr: None,
            credentials: Some(expected),
        }
    );
    // And the client sees the server's process: this one.
    let (uid, gid, pid) = expected;
    assert_eq!(
        channel.peer(),
        Peer::Unix(Some(Credentials { uid, gid, pid }))
    );
}

#[tokio::test]
async fn the_socket_file_exists_while_serving_and_is_removed_when_the_server_stops() {
    let server = Transport::Unix.serve(who("unix")).await;
    let path = unix_path(server.address()).to_path_buf();
    let meta = std::fs::symlink_metadata(&path).expect("no socket file while serving");
    assert!(meta.file_type().is_socket(), "{meta:?}");
    let client = WhoClient::new(connect(server.address()).await);
    assert_eq!(client.server().await.unwrap(), "unix");
    server.shutdown().await;
    assert!(!path.exists(), "{} left after shutdown", path.display());

    // Stopped at once, too.
    let server = serve_at(who("unix"), &Address::Unix(path.clone()))
        .await
        .expect("the path is free again after shutdown");
    assert!(path.exists());
    server.abort().await;
    assert!(!path.exists(), "{} left after abort", path.display());
}

#[tokio::test]
async fn binding_a_unix_path_that_exists_fails_with_an_io_error_and_touches_nothing() {
    // A file that is not ours (a crashed server's socket, say).
    let Address::Unix(path) = Transport::Unix.fresh_address() else {
        unreachable!()
    };
    std::fs::write(&path, b"not a socket").unwrap();
    let err = who("second").bind_unix(&path).await.unwrap_err();
    assert_addr_in_use(&err, &path.display().to_string());
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    std::fs::remove_file(&path).unwrap();

    // A server serving there.
    let first = Transport::Unix.serve(who("first")).await;
    let path = unix_path(first.address());
    let err = who("second").bind_unix(path).await.unwrap_err();
    assert_addr_in_use(&err, &path.display().to_string());
    // The failed bind left the first server's socket alone.
    let client = WhoClient::new(connect(first.address()).await);
    assert_eq!(client.server().await.unwrap(), "first");
    first.shutdown().await;
}

/// A server handing its path over to a new one (a zero-downtime restart):
/// the new one removes the file and binds (binding an existing path fails),
/// then the old one shuts down. Stopping must remove only the socket the old
/// server made, as an in-memory server frees only its own name.
#[tokio::test]
async fn stopping_a_unix_server_leaves_a_newer_servers_socket_alone() {
    let old = Transport::Unix.serve(who("old")).await;
    let address = old.address().clone();
    let path = unix_path(&address);
    // A new server takes the path over while the old one still serves.
    std::fs::remove_file(path).unwrap();
    let new = serve_at(who("new"), &address).await.unwrap();
    old.shutdown().await;
    assert!(
        path.exists(),
        "stopping the old server removed the new server's socket file"
    );
    let client = WhoClient::new(connect(&address).await);
    assert_eq!(client.server().await.unwrap(), "new");
    new.shutdown().await;
}

/// `err` is an [`rpc::Error::Io`] for an address in use that names `what`.
fn assert_addr_in_use(err: &rpc::Error, what: &str) {
    let rpc::Error::Io { source, .. } = err else {
        panic!("not an Io error: {err:?}");
    };
    assert_eq!(source.kind(), ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains(what), "{err}");
}

// ---------------------------------------------------------------------------
// In-memory.

#[tokio::test]
async fn an_in_memory_handler_sees_a_memory_peer() {
    let (_server, channel) = Transport::Memory.start(who("memory")).await;
    let seen = WhoClient::new(channel.clone()).caller().await.unwrap();
    assert_eq!(
        seen,
        Caller {
            peer: SeenPeer::Memory,
            addr: None,
            credentials: None,
        }
    );
    assert_eq!(channel.peer(), Peer::Memory);
}

#[tokio::test]
async fn connecting_to_a_memory_name_nobody_serves_is_refused_at_once() {
    let name = "nobody-serves-this";
    let started = Instant::now();
    // A connect timeout far longer than the bound below: a refusal, not a
    // wait, must end it.
    let err = rpc::Channel::builder()
        .connect_timeout(Duration::from_secs(30))
        .connect_memory(name)
        .await
        .unwrap_err();
    let took = started.elapsed();
    let rpc::Error::Io { source, .. } = &err else {
        panic!("not an Io error: {err:?}");
    };
    assert_eq!(source.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(err.to_string().contains(name), "{err}");
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
}

#[tokio::test]
async fn a_memory_name_serves_one_server_at_a_time_and_is_free_after_shutdown() {
    let first = Transport::Memory.serve(who("first")).await;
    let Address::Memory(name) = first.address().clone() else {
        unreachable!()
    };
    let err = who("second").serve_memory(name.as_str()).unwrap_err();
    assert_addr_in_use(&err, &name);
    // The refused server took nothing from the first one.
    let client = WhoClient::new(connect(first.address()).await);
    assert_eq!(client.server().await.unwrap(), "first");

    first.shutdown().await;
    let err = rpc::Channel::connect_memory(name.as_str())
        .await
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Io { .. }), "{err}");
    let second = who("second")
        .serve_memory(name.as_str())
        .expect("the name is free after shutdown");
    let client = WhoClient::new(connect(second.address()).await);
    assert_eq!(client.server().await.unwrap(), "second");
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_in_memory_drains_the_call_in_flight_and_refuses_new_ones() {
    let (server, probe) = start_probe_over(Transport::Memory, rpc::Server::builder()).await;
    let address = server.address().clone();
    let client = probe_client_at(&address).await;
    let in_flight = tokio::spawn(client.hold(1_500, 1));
    probe
        .wait_for("the call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let shutdown = tokio::spawn(server.shutdown());
    // Calls made before the drain began run; once one is turned away
    // (refused by the draining server, or finding no server to reconnect
    // to), every later one is too, none of those runs, and each says so.
    let mut refused = 0;
    let mut ran_before = 0;
    while !in_flight.is_finished() {
        match client.hold(0, 2).await {
            Ok(2) if refused == 0 => ran_before += 1,
            Err(e @ (rpc::Error::ShuttingDown { .. } | rpc::Error::Io { .. }))
                if !e.may_have_run() && e.is_retryable() =>
            {
                refused += 1
            }
            other => panic!("after {refused} refusals: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused > 0, "no call was refused during the drain");
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        1,
        "the call in flight lost its reply"
    );
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown did not finish")
        .unwrap();
    assert_eq!(probe.started(), 1 + ran_before, "a refused call ran");
    assert_eq!(probe.completed(), 1 + ran_before);
    // Gone: a new client is refused.
    let err = connect_with(rpc::Channel::builder(), &address)
        .await
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Io { .. }), "{err}");
}

// ---------------------------------------------------------------------------
// Reconnecting after a restart at the same address.

/// A client calls, the server stops, calls fail while it is down (promptly:
/// nothing is there to wait for), and the next call after a new server took
/// the same address reaches it, through the same client.
async fn a_client_reconnects_after_the_server_restarts_at_the_same_address(transport: Transport) {
    let first = transport.serve(who("first")).await;
    let address = first.address().clone();
    let channel = connect_with(
        rpc::Channel::builder()
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50)),
        &address,
    )
    .await
    .unwrap();
    let client = WhoClient::new(channel);
    assert_eq!(client.server().await.unwrap(), "first");

    first.shutdown().await;
    for _ in 0..3 {
        let started = Instant::now();
        // No server to reconnect to: the connect's own failure, or (while
        // the backoff waits) the last one's.
        let err = client.server().await.unwrap_err();
        assert!(
            matches!(
                err,
                rpc::Error::Io { .. } | rpc::Error::Disconnected { sent: false, .. }
            ),
            "{err}"
        );
        assert!(!err.may_have_run() && err.is_retryable(), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a call to a stopped server took {:?}",
            started.elapsed()
        );
    }

    let second = serve_at(who("second"), &address)
        .await
        .expect("the address is free once the server has shut down");
    let answer = tokio::time::timeout(Duration::from_secs(10), client.server())
        .await
        .expect("the call after the restart hung");
    assert_eq!(answer.unwrap(), "second");
    assert_eq!(second.connections(), 1);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_client_reconnects_after_the_server_restarts_at_the_same_path() {
    a_client_reconnects_after_the_server_restarts_at_the_same_address(Transport::Unix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_client_reconnects_after_the_server_restarts_under_the_same_name() {
    a_client_reconnects_after_the_server_restarts_at_the_same_address(Transport::Memory).await;
}

// ---------------------------------------------------------------------------
// Limits, the same over every transport.

over_all_transports!(
    at_the_handler_cap_requests_wait_and_every_call_completes,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn at_the_handler_cap_requests_wait_and_every_call_completes(transport: Transport) {
    const CAP: usize = 4;
    let (server, probe) = start_probe_over(
        transport,
        rpc::Server::builder().max_handlers_per_connection(CAP),
    )
    .await;
    let client = probe_client_at(server.address()).await;
    let calls: Vec<_> = (0..40).map(|i| tokio::spawn(client.hold(50, i))).collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u32);
    }
    assert_eq!(probe.completed(), 40);
    assert_eq!(
        probe.high_water(),
        CAP,
        "handlers at once: the cap is {CAP}"
    );
    assert_eq!(server.connections(), 1);
}

over_all_transports!(
    frames_larger_than_the_pipe_buffer_at_the_handler_cap_all_arrive,
    flavor = "multi_thread",
    worker_threads = 2
);
/// At its cap the server stops reading, while replies of half a MiB (more
/// than an in-memory pipe holds) go out and requests as large wait to be
/// read: nothing deadlocks, every call gets its own bytes back.
async fn frames_larger_than_the_pipe_buffer_at_the_handler_cap_all_arrive(transport: Transport) {
    let (_server, channel) = start_over(
        transport,
        rpc::Server::builder().max_handlers_per_connection(2),
    )
    .await;
    let client = ShapesClient::new(channel);
    let calls: Vec<_> = (0..16u8)
        .map(|i| {
            let data = vec![i; 512 << 10];
            let call = client.echo(data.clone());
            tokio::spawn(async move { (data, call.await) })
        })
        .collect();
    for call in calls {
        let (sent, echoed) = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("a call hung")
            .unwrap();
        assert!(echoed.unwrap() == sent, "a call got other bytes back");
    }
}

over_all_transports!(
    calls_beyond_the_clients_in_flight_cap_wait_and_every_call_completes,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn calls_beyond_the_clients_in_flight_cap_wait_and_every_call_completes(
    transport: Transport,
) {
    let (server, probe) = start_probe_over(transport, rpc::Server::builder()).await;
    let channel = connect_with(rpc::Channel::builder().max_in_flight(3), server.address())
        .await
        .unwrap();
    let client = ProbeClient::new(channel);
    let calls: Vec<_> = (0..30).map(|i| tokio::spawn(client.hold(50, i))).collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), i as u32);
    }
    assert_eq!(probe.completed(), 30);
    assert_eq!(probe.high_water(), 3, "calls in flight: the cap is 3");
}

over_all_transports!(
    an_idle_connection_is_closed_and_the_next_call_opens_a_new_one,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn an_idle_connection_is_closed_and_the_next_call_opens_a_new_one(transport: Transport) {
    let (server, _) = start_probe_over(
        transport,
        rpc::Server::builder().idle_timeout(Duration::from_millis(300)),
    )
    .await;
    let client = probe_client_at(server.address()).await;
    assert_eq!(client.hold(1, 1).await.unwrap(), 1);
    eventually(
        "the idle connection to close",
        Duration::from_secs(10),
        || server.connections() == 0,
    )
    .await;
    assert_eq!(client.hold(1, 2).await.unwrap(), 2);
    assert_eq!(server.connections(), 1);
    // A call running longer than the idle timeout keeps its connection.
    assert_eq!(client.hold(600, 3).await.unwrap(), 3);
    assert_eq!(server.connections(), 1);
}

over_all_transports!(
    the_connection_cap_holds_a_new_connection_until_one_closes,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn the_connection_cap_holds_a_new_connection_until_one_closes(transport: Transport) {
    let (server, _) = start_probe_over(transport, rpc::Server::builder().max_connections(2)).await;
    let address = server.address().clone();
    let first = CalculatorClient::new(connect(&address).await);
    let second = CalculatorClient::new(connect(&address).await);
    assert_eq!(first.add(1, 1).await.unwrap(), 2);
    assert_eq!(second.add(1, 2).await.unwrap(), 3);

    // A third connection waits in the backlog: its handshake goes unanswered.
    let third = connect_with(
        rpc::Channel::builder().handshake_timeout(Duration::from_millis(300)),
        &address,
    )
    .await
    .unwrap_err();
    assert_handshake_timed_out(&third);
    // The first two, still served; the third never accepted.
    assert_eq!(server.connections(), 2);

    // Dropping a client closes its connection, and frees its slot.
    drop(first);
    let third = connect_with(
        rpc::Channel::builder().handshake_timeout(Duration::from_secs(10)),
        &address,
    )
    .await
    .expect("a slot freed up");
    let third = CalculatorClient::new(third);
    assert_eq!(third.add(2, 2).await.unwrap(), 4);
    // The second and the new third: the first closed before the third was
    // accepted in its slot. (Its task frees the slot as it ends, and may be
    // counted a moment longer on another worker thread.)
    eventually(
        "the first connection's task to end",
        Duration::from_secs(1),
        || server.connections() == 2,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Addresses.

#[tokio::test]
async fn a_server_names_its_address_on_each_transport() {
    let tcp = Transport::Tcp.serve(who("tcp")).await;
    let addr = tcp.local_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "the port the OS picked");
    assert_eq!(tcp.address(), &Address::Tcp(addr));
    assert_eq!(tcp.address().tcp(), Some(addr));
    assert_eq!(tcp.address().to_string(), addr.to_string());

    let unix = Transport::Unix.serve(who("unix")).await;
    let path = unix_path(unix.address()).to_path_buf();
    assert!(path.is_absolute());
    assert_eq!(unix.address().tcp(), None);
    assert_eq!(
        unix.address().to_string(),
        format!("unix:{}", path.display())
    );

    let memory = who("memory").serve_memory("the-name").unwrap();
    assert_eq!(memory.address(), &Address::Memory("the-name".into()));
    assert_eq!(memory.address().to_string(), "memory:the-name");

    // A channel names the server it was connected to the same way.
    for server in [&tcp, &unix, &memory] {
        let channel = connect(server.address()).await;
        assert_eq!(&channel.address(), server.address());
    }
}

#[tokio::test]
async fn local_addr_of_a_server_off_tcp_panics_and_points_to_address() {
    for transport in [Transport::Unix, Transport::Memory] {
        let server = transport.serve(who("off tcp")).await;
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.local_addr()))
            .expect_err("local_addr() of a server off TCP returned");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            message.contains(&server.address().to_string()) && message.contains("address()"),
            "{message:?}"
        );
    }
}
