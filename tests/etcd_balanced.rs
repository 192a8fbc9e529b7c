//! A balanced channel over etcd discovery, end to end, with a real etcd
//! (feature `etcd`; needs Debian's `etcd-server`): three servers register
//! themselves and calls spread over all three; one is SIGKILLed and leaves
//! the channel's set when its lease expires, with no call failing
//! meanwhile; then etcd itself goes down and comes back while calls keep
//! going, and the channel keeps its set and fails no call.
#![cfg(feature = "etcd")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_server::{EtcdServer, register_in_child};
use rpc::discover::etcd::{Etcd, Registration};
use rpc::transport::Address;
use rpc_suite::replica::{Named, ReplicaClient, ReplicaServer};

// Not in `support`: that is shared with packages that have no `etcd`
// feature (tests/fuzz), and this needs the `etcd-register` binary.
#[path = "support/etcd.rs"]
mod etcd_server;

const PREFIX: &str = "/services/replica/";

/// Calls from a few concurrent callers, on and on until stopped: where each
/// went, and every failure.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    by_server: Arc<Mutex<HashMap<String, usize>>>,
    failures: Arc<Mutex<Vec<rpc::Error>>>,
    callers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &ReplicaClient, callers: usize) -> Load {
        let mut load = Load {
            stop: Arc::default(),
            calls: Arc::default(),
            by_server: Arc::default(),
            failures: Arc::default(),
            callers: Vec::new(),
        };
        for _ in 0..callers {
            let client = client.clone();
            let (stop, calls) = (load.stop.clone(), load.calls.clone());
            let (by_server, failures) = (load.by_server.clone(), load.failures.clone());
            load.callers.push(tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    match client.name().await {
                        Ok(name) => *by_server.lock().unwrap().entry(name).or_default() += 1,
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                    calls.fetch_add(1, SeqCst);
                    // Paced, so the test measures a steady stream of calls
                    // rather than how fast two shared cores can spin.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
        load
    }

    fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }

    fn served(&self, name: &str) -> usize {
        self.by_server
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    fn assert_no_failures(&self, during: &str) {
        let failures = self.failures.lock().unwrap();
        assert!(failures.is_empty(), "calls failed {during}: {failures:?}");
    }

    async fn stop(self) {
        self.stop.store(true, SeqCst);
        for caller in self.callers {
            caller.await.unwrap();
        }
    }
}

/// A server answering `name`, registered in `etcd` under a lease of `ttl`.
async fn serve_and_register(
    etcd: &EtcdServer,
    name: &str,
    ttl: Duration,
) -> (rpc::ServerHandle, Registration) {
    let server = rpc::Server::builder()
        .add_service(ReplicaServer::new(Named::new(name)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let key = format!("{PREFIX}{name}");
    let addr = server.local_addr().to_string();
    let registration = Registration::register(etcd.endpoints(), key, addr, ttl)
        .await
        .unwrap();
    (server, registration)
}

/// Waits until the channel's set has `n` servers; how long that took.
async fn until_set_has(channel: &rpc::Channel, n: usize, within: Duration) -> Duration {
    let started = Instant::now();
    while channel.endpoints().len() != n {
        assert!(
            started.elapsed() < within,
            "the set still has {} servers after {within:?}, not {n}",
            channel.endpoints().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_registered_in_etcd_share_calls_through_a_crash_and_an_etcd_restart() {
    let mut etcd = EtcdServer::start();
    // Longer than etcd's outage below, so these stay registered through it.
    let ttl = Duration::from_secs(10);
    let (a, _a) = serve_and_register(&etcd, "a", ttl).await;
    let (b, _b) = serve_and_register(&etcd, "b", ttl).await;
    // The crash victim: short-lived lease (etcd's minimum is about 2 s).
    let crash_ttl = Duration::from_secs(2);
    let ttl_secs = crash_ttl.as_secs().to_string();
    let mut c = register_in_child(&[
        "--serve",
        "c",
        &etcd.endpoint(),
        &format!("{PREFIX}c"),
        &ttl_secs,
    ])
    .await;

    let channel = rpc::Channel::balanced(Etcd::new(etcd.endpoints(), PREFIX))
        .connect()
        .await
        .unwrap();
    until_set_has(&channel, 3, Duration::from_secs(5)).await;
    let client = ReplicaClient::new(channel.clone());
    let load = Load::start(&client, 4);

    // Spread: every server takes calls.
    let since = Instant::now();
    while ["a", "b", "c"].iter().any(|s| load.served(s) < 20) {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "calls did not spread: {:?}",
            load.by_server.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A crash: the process dies with its lease still held.
    c.start_kill().unwrap();
    c.wait().await.unwrap();
    let gone = until_set_has(&channel, 2, crash_ttl + Duration::from_secs(4)).await;
    let served_c = load.served("c");
    eprintln!(
        "SIGKILLed server left the set after {gone:?} (lease TTL {crash_ttl:?}); \
         {} calls so far",
        load.calls()
    );
    load.assert_no_failures("while a killed server was still in the set");
    let mut left: Vec<_> = channel.endpoints().into_iter().map(|e| e.address).collect();
    left.sort_by_key(|a| a.to_string());
    let mut alive = vec![Address::Tcp(a.local_addr()), Address::Tcp(b.local_addr())];
    alive.sort_by_key(|a| a.to_string());
    assert_eq!(left, alive, "the set after the crash");

    // etcd goes down: the channel keeps its last set and its calls.
    etcd.stop();
    let before = load.calls();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        assert_eq!(channel.endpoints().len(), 2, "the set changed without etcd");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = Instant::now();
    // `run` waits for etcd with blocking sleeps: off the callers' threads.
    tokio::task::block_in_place(|| etcd.run());
    let during_outage = load.calls() - before;
    eprintln!(
        "{during_outage} calls while etcd was down ({:?}, of which {:?} its restart)",
        down.elapsed(),
        restarted.elapsed()
    );
    assert!(
        during_outage > 100,
        "only {during_outage} calls during the outage"
    );

    // Past the restart: the set is read again, and is the same.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(channel.endpoints().len(), 2);
    load.assert_no_failures("through the crash and etcd's restart");
    assert_eq!(load.served("c"), served_c, "calls reached the dead server");
    eprintln!(
        "{} calls in all: {:?}",
        load.calls(),
        load.by_server.lock().unwrap()
    );
    load.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}
