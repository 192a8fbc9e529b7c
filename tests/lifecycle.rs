//! Graceful shutdown and reconnect: in-flight calls finish, late calls are
//! refused and never run, the grace period is enforced, and the same client
//! object follows GoAway and survives a server restart. Tests through
//! generated clients run over each transport (TCP, Unix sockets, in-memory);
//! those that play a peer or a proxy by hand run over TCP.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use rpc::transport::Address;
use support::probe::*;
use support::raw::{self, RawConn};
use support::transport::{connect, over_all_transports, serve_at};
use tokio::net::TcpListener;

const PROMPTLY: Duration = Duration::from_secs(3);

over_all_transports!(
    twenty_in_flight_calls_survive_a_graceful_shutdown,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn twenty_in_flight_calls_survive_a_graceful_shutdown(transport: Transport) {
    let (server, probe) = start_probe_over(transport, rpc::Server::builder()).await;
    let client = probe_client_at(server.address()).await;
    let calls: Vec<_> = (0..20).map(|i| tokio::spawn(client.hold(300, i))).collect();
    probe
        .wait_for("20 handlers to start", PROMPTLY, |p| p.started() == 20)
        .await;
    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    assert_eq!(
        probe.completed(),
        20,
        "shutdown returned before the calls finished"
    );
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(
            call.await.unwrap().unwrap(),
            i as u32,
            "call {i} lost its response"
        );
    }
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_arrive_after_goaway_are_refused_with_shutting_down_and_never_run() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    peer.send(&raw::hold(1, Duration::from_secs(60), 500u64, 1u32))
        .await;
    probe
        .wait_for("the first call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let shutdown = tokio::spawn(server.shutdown());
    let goaway = peer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!(goaway.goaway_reason(), raw::goaway::SHUTDOWN, "{goaway:?}");

    // A peer that ignores the GoAway is refused, call by call.
    for id in 2..=4 {
        peer.send(&raw::hold(id, Duration::from_secs(60), 1u64, id as u32))
            .await;
        let refused = peer.next_reply(PROMPTLY).await.unwrap();
        assert_eq!(
            (refused.call_id, refused.status()),
            (id, raw::status::SHUTTING_DOWN)
        );
    }
    let first = peer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!((first.call_id, first.value::<u32>()), (1, 1));
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown did not finish")
        .unwrap();
    assert_eq!(probe.started(), 1, "a refused call ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_during_a_drain_never_run_and_are_told_so() {
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let client = probe_client(server.local_addr()).await;
    let in_flight = tokio::spawn(client.hold(1_000, 1));
    probe
        .wait_for("the first call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    // A raw peer tells us when the drain has begun: after its GoAway, every
    // connection's driver takes the drain before any frame it reads next.
    let mut observer = RawConn::handshake(server.local_addr()).await;
    let shutdown = tokio::spawn(server.shutdown());
    let goaway = observer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!(goaway.goaway_reason(), raw::goaway::SHUTDOWN);
    // A call that crosses the GoAway on the wire is refused (ShuttingDown);
    // one made after the client saw it finds no new connection (the server
    // accepts none now) and says why. Neither runs, and either way the
    // caller is told that it did not run and that a retry can help.
    let mut refused = 0;
    while !in_flight.is_finished() && refused < 20 {
        let err = client.hold(1, 2).await.unwrap_err();
        assert!(
            matches!(err, rpc::Error::ShuttingDown { .. } | rpc::Error::Io { .. }),
            "{err}"
        );
        assert!(!err.may_have_run() && err.is_retryable(), "{err:?}");
        refused += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused > 0);
    assert_eq!(in_flight.await.unwrap().unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown did not finish")
        .unwrap();
    assert_eq!(probe.started(), 1, "a refused call ran");
}

over_all_transports!(
    handlers_still_running_when_the_grace_period_ends_are_dropped,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn handlers_still_running_when_the_grace_period_ends_are_dropped(transport: Transport) {
    let (server, probe) = start_probe_over(
        transport,
        rpc::Server::builder().shutdown_grace(Duration::from_millis(300)),
    )
    .await;
    let client = probe_client_at(server.address()).await;
    let stuck = tokio::spawn(client.hold(u64::MAX, 1));
    let quick = tokio::spawn(client.hold(100, 2));
    probe
        .wait_for("both calls to start", PROMPTLY, |p| p.started() == 2)
        .await;
    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "shutdown took {took:?} with a 300 ms grace period"
    );
    assert_eq!(
        quick.await.unwrap().unwrap(),
        2,
        "a call that finished in time has its answer"
    );
    let err = stuck.await.unwrap().unwrap_err();
    assert!(matches!(err, rpc::Error::Disconnected { .. }), "{err}");
    probe
        .wait_for("the stuck handler to be dropped", PROMPTLY, |p| {
            p.dropped() == 1
        })
        .await;
}

/// Serves `address` again with a calculator, retrying briefly: the old
/// listener may still be closing.
async fn rebind(address: &Address) -> rpc::ServerHandle {
    for _ in 0..50 {
        let builder = rpc::Server::builder().add_service(CalculatorServer::new(Calc));
        match serve_at(builder, address).await {
            Ok(server) => return server,
            Err(e) => {
                eprintln!("rebinding {address}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("could not bind {address} again");
}

over_all_transports!(
    a_killed_and_restarted_server_is_reached_again_by_the_same_client,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn a_killed_and_restarted_server_is_reached_again_by_the_same_client(transport: Transport) {
    let (server, _) = start_probe_over(transport, rpc::Server::builder()).await;
    let address = server.address().clone();
    let client = CalculatorClient::new(connect(&address).await);
    assert_eq!(client.add(1, 1).await.unwrap(), 2);

    server.abort().await;
    // Lost on the old connection, or no new one to be had: either way a
    // retry can help.
    let err = client.add(1, 2).await.unwrap_err();
    assert!(
        matches!(err, rpc::Error::Disconnected { .. } | rpc::Error::Io { .. }),
        "{err}"
    );
    assert!(err.is_retryable(), "{err:?}");

    let restarted = rebind(&address).await;
    // The next call waits out the reconnect backoff (well under its 30 s
    // deadline) and goes through.
    assert_eq!(client.add(2, 3).await.unwrap(), 5);
    assert_eq!(restarted.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_attempts_back_off() {
    // Where the server was, something now accepts and hangs up at once.
    let (client, listener) = client_of_a_replaced_server().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let closer = tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, SeqCst);
            drop(s);
        }
    });
    // A second of calls with short deadlines, as fast as they fail.
    let quick = client.with_timeout(Duration::from_millis(50));
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(1) {
        // The attempt's own failure (the peer hung up during the handshake),
        // or, while the backoff waits, the last one's.
        let err = quick.add(1, 1).await.unwrap_err();
        assert!(
            matches!(
                err,
                rpc::Error::Disconnected { .. }
                    | rpc::Error::Io { .. }
                    | rpc::Error::DeadlineExceeded { .. }
            ),
            "{err}"
        );
        calls += 1;
    }
    let attempts = attempts.load(SeqCst);
    eprintln!("{calls} calls in 1 s made {attempts} connection attempts");
    // 100 ms x1.6 (+-20%): attempts near 0, 0.1, 0.26, 0.52 and 0.93 s.
    assert!(
        (2..=8).contains(&attempts),
        "{attempts} attempts for {calls} calls"
    );
    assert!(calls > attempts, "calls during the backoff failed fast");
    closer.abort();
}

/// A TCP front that sends its n-th connection to `backends[n]` (the last one
/// takes the rest), as a load balancer in front of servers being replaced one
/// after another does.
async fn front(backends: Vec<SocketAddr>) -> SocketAddr {
    counting_front(backends, Arc::default()).await
}

/// [`front`], counting the connections it accepts in `accepted`.
async fn counting_front(backends: Vec<SocketAddr>, accepted: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0.. {
            let (mut inbound, _) = listener.accept().await.unwrap();
            accepted.fetch_add(1, SeqCst);
            let backend = backends[n.min(backends.len() - 1)];
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_leaving_a_drained_connection_open_one_new_connection() {
    // Callers that find the connection draining at once must share one
    // reconnect: a caller that looked just before another's attempt finished
    // must take that connection, not open one of its own.
    const CALLERS: u32 = 64;
    let (first, _) = start_probe(rpc::Server::builder()).await;
    let (second, second_probe) = start_probe(rpc::Server::builder()).await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let addr = counting_front(
        vec![first.local_addr(), second.local_addr()],
        accepted.clone(),
    )
    .await;
    let client = probe_client(addr).await;
    let done = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let (client, done) = (client.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(SeqCst) {
                    assert_eq!(client.hold(0, c).await.unwrap(), c);
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(20), first.shutdown())
        .await
        .expect("the first server did not drain");
    second_probe
        .wait_for("calls on the second server", Duration::from_secs(10), |p| {
            p.completed() >= 1_000
        })
        .await;
    done.store(true, SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    assert_eq!(
        accepted.load(SeqCst),
        2,
        "one connection to each server, no more"
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_goaway_to_a_new_connection_without_failing_calls() {
    // Eight servers behind one address; all but the last are drained in turn
    // while callers keep calling, each drain racing the calls on the wire.
    const SERVERS: usize = 8;
    let mut servers = Vec::new();
    for _ in 0..SERVERS {
        servers.push(start_probe(rpc::Server::builder()).await);
    }
    let probes: Vec<_> = servers.iter().map(|(_, p)| p.clone()).collect();
    let addr = front(servers.iter().map(|(s, _)| s.local_addr()).collect()).await;
    let client = probe_client(addr).await;

    let done = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4u32)
        .map(|c| {
            let (client, done) = (client.clone(), done.clone());
            tokio::spawn(async move {
                let mut made = 0;
                while !done.load(SeqCst) && made < 100_000 {
                    let tag = c * 100_000 + made;
                    let got = client.hold(0, tag).await;
                    assert_eq!(got.unwrap(), tag, "caller {c}, call {made}");
                    made += 1;
                }
                made as usize
            })
        })
        .collect();
    let mut drained = 0;
    for (server, probe) in servers.drain(..SERVERS - 1) {
        probe
            .wait_for(
                "the callers to reach this server",
                Duration::from_secs(10),
                |p| p.started() >= 20,
            )
            .await;
        tokio::time::timeout(Duration::from_secs(20), server.shutdown())
            .await
            .expect("a server did not drain");
        drained += 1;
    }
    probes[SERVERS - 1]
        .wait_for(
            "the callers to reach the last server",
            Duration::from_secs(10),
            |p| p.started() >= 20,
        )
        .await;
    done.store(true, SeqCst);
    let mut made = 0;
    for caller in callers {
        made += caller.await.unwrap();
    }
    let ran: Vec<_> = probes.iter().map(|p| p.started()).collect();
    eprintln!("{made} calls across {drained} drains, run per server: {ran:?}");
    assert_eq!(
        ran.iter().sum::<usize>(),
        made,
        "every call ran exactly once"
    );
    assert_eq!(servers[0].0.connections(), 1, "one new connection, shared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_after_goaway_is_retried_on_a_new_connection() {
    let (real, probe) = start_probe(rpc::Server::builder()).await;
    // The first connection goes to a server that answers the first request
    // with GoAway then ShuttingDown, as a draining server does when a request
    // crosses its GoAway.
    let draining = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let draining_addr = draining.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = draining.accept().await.unwrap();
        let mut conn = RawConn::accept_handshake(s).await;
        let request = conn.next_frame(Duration::from_secs(10)).await.unwrap();
        assert_eq!(request.kind, raw::kind::REQUEST);
        conn.send(&raw::goaway(raw::goaway::SHUTDOWN, "draining"))
            .await;
        conn.send(&raw::refusal(
            request.call_id,
            raw::status::SHUTTING_DOWN,
            "draining",
        ))
        .await;
        // The client owes nothing more on this connection: it should leave.
        let _ = closed_tx.send(conn.frames_until_closed(Duration::from_secs(10)).await);
    });
    let addr = front(vec![draining_addr, real.local_addr()]).await;
    let client = probe_client(addr).await;
    assert_eq!(client.hold(0, 42).await.unwrap(), 42);
    assert_eq!(probe.started(), 1, "ran once, on the new connection");
    let (frames, _) = tokio::time::timeout(PROMPTLY, closed_rx)
        .await
        .expect("the client kept the drained connection open")
        .unwrap();
    assert!(
        frames.iter().all(|f| f.kind == raw::kind::PONG),
        "{frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_last_call_of_a_drain_lets_shutdown_finish_at_once() {
    // The default 30 s grace period: only the end of the drain can stop it.
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let mut peer = RawConn::handshake(server.local_addr()).await;
    peer.send(&raw::hold(1, Duration::from_secs(60), u64::MAX, 1u32))
        .await;
    probe
        .wait_for("the call to start", PROMPTLY, |p| p.started() == 1)
        .await;
    let shutdown = tokio::spawn(server.shutdown());
    let goaway = peer.next_reply(PROMPTLY).await.unwrap();
    assert_eq!(goaway.goaway_reason(), raw::goaway::SHUTDOWN);
    peer.send(&raw::cancel(1)).await;
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown waited for a cancelled call")
        .unwrap();
    assert_eq!(probe.dropped(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_never_outlasts_the_calls_deadline() {
    // Where the server was, something accepts and never answers the handshake
    // (as a server at its connection cap does): the default handshake
    // timeout is 10 s.
    let (client, listener) = client_of_a_replaced_server().await;
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(listener.accept().await.unwrap().0);
        }
    });
    let quick = client.with_timeout(Duration::from_millis(300));
    for _ in 0..3 {
        let started = Instant::now();
        let err = quick.add(1, 1).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(
                err,
                rpc::Error::DeadlineExceeded { .. } | rpc::Error::Disconnected { .. }
            ),
            "{err}"
        );
        assert!(took < Duration::from_secs(2), "a 300 ms call took {took:?}");
    }
    silent.abort();
}

/// A client whose server died, and a bare listener now on the server's
/// address (for the test to decide how it treats the client's reconnects).
async fn client_of_a_replaced_server() -> (CalculatorClient, TcpListener) {
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let client = CalculatorClient::connect(addr).await.unwrap();
    server.abort().await;
    (client, TcpListener::bind(addr).await.unwrap())
}
