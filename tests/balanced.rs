//! One client over many servers, against real servers on loopback: the
//! default policy avoids a slow server, a killed server costs idempotent
//! calls nothing and never runs a call twice, a restarted one gets traffic
//! again, the retry budget holds when every server fails, one deadline
//! covers every attempt, and discovery changes are followed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc::client::{Ejection, Policy};
use rpc::discover::{Manual, Static, Target};
use support::raw::{self, RawConn};

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

/// The test servers' service.
#[rpc::service]
pub trait Work {
    /// Sleeps the server's delay, then answers with the server's id.
    #[rpc(idempotent)]
    async fn read(&self) -> u32;
    /// Records `op` as run on this server; then as `read`.
    async fn write(&self, op: u64) -> u32;
    /// As `read`; calls with the same key go to the same server.
    #[rpc(idempotent)]
    async fn get(&self, #[rpc(key)] key: String) -> u32;
}

/// What every test server shares: how often each op ran, and how many calls
/// each server started.
#[derive(Default)]
struct Ledger {
    ran: Mutex<HashMap<u64, u32>>,
    started: [AtomicUsize; 8],
}

struct Worker {
    id: u32,
    delay_ms: Arc<AtomicU64>,
    ledger: Arc<Ledger>,
}

impl Work for Worker {
    async fn read(&self) -> u32 {
        self.ledger.started[self.id as usize].fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(SeqCst))).await;
        self.id
    }

    async fn write(&self, op: u64) -> u32 {
        *self.ledger.ran.lock().unwrap().entry(op).or_default() += 1;
        self.read().await
    }

    async fn get(&self, _key: String) -> u32 {
        self.read().await
    }
}

struct Fleet {
    servers: Vec<Option<rpc::ServerHandle>>,
    addrs: Vec<SocketAddr>,
    delays: Vec<Arc<AtomicU64>>,
    ledger: Arc<Ledger>,
}

impl Fleet {
    async fn start(delays_ms: &[u64]) -> Fleet {
        let ledger = Arc::new(Ledger::default());
        let mut fleet = Fleet {
            servers: Vec::new(),
            addrs: Vec::new(),
            delays: Vec::new(),
            ledger,
        };
        for &ms in delays_ms {
            let delay = Arc::new(AtomicU64::new(ms));
            fleet.delays.push(delay);
            let id = fleet.servers.len();
            let server = fleet.serve(id, "127.0.0.1:0").await;
            fleet.addrs.push(server.local_addr());
            fleet.servers.push(Some(server));
        }
        fleet
    }

    async fn serve(&self, id: usize, addr: impl tokio::net::ToSocketAddrs) -> rpc::ServerHandle {
        let worker = Worker {
            id: id as u32,
            delay_ms: self.delays[id].clone(),
            ledger: self.ledger.clone(),
        };
        rpc::Server::builder()
            .add_service(WorkServer::new(worker))
            .bind(addr)
            .await
            .expect("bind")
    }

    fn started(&self, id: usize) -> usize {
        self.ledger.started[id].load(SeqCst)
    }

    async fn kill(&mut self, id: usize) {
        self.servers[id].take().expect("running").abort().await;
    }
}

/// `calls` reads from `callers` concurrent tasks; what each returned.
async fn reads(client: &WorkClient, callers: usize, calls: usize) -> Vec<Result<u32, rpc::Error>> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let client = client.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                while next.fetch_add(1, SeqCst) < calls {
                    out.push(client.read().await);
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn share(results: &[Result<u32, rpc::Error>], id: u32) -> f64 {
    let n = results
        .iter()
        .filter(|r| matches!(r, Ok(i) if *i == id))
        .count();
    n as f64 / results.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_policy_sends_a_ten_times_slower_server_under_a_tenth_of_calls() {
    let fleet = Fleet::start(&[2, 20, 2]).await;
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let results = reads(&client, 8, 600).await;
    assert!(results.iter().all(Result::is_ok));
    let slow = share(&results, 1);
    eprintln!(
        "power of two choices: the slow server took {:.1}%",
        slow * 100.0
    );
    assert!(
        slow < 0.10,
        "the slow server took {:.1}% of calls",
        slow * 100.0
    );

    // Round robin, the control, gives it about a third.
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .policy(Policy::RoundRobin)
        .connect()
        .await
        .unwrap();
    let results = reads(&WorkClient::new(channel), 8, 300).await;
    let slow = share(&results, 1);
    eprintln!("round robin: the slow server took {:.1}%", slow * 100.0);
    assert!(
        (0.25..0.42).contains(&slow),
        "round robin gave it {:.1}%",
        slow * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_servers_fails_no_idempotent_call_and_runs_no_call_twice() {
    let mut fleet = Fleet::start(&[5, 5, 5]).await;
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let load = {
        let client = client.clone();
        tokio::spawn(async move { reads(&client, 32, 3_000).await })
    };
    let writes = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            for op in 0..400u64 {
                out.push(client.write(op).await);
            }
            out
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    fleet.kill(1).await;
    let reads = load.await.unwrap();
    let failed: Vec<_> = reads.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "idempotent calls failed: {failed:?}");

    let writes = writes.await.unwrap();
    for e in writes.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            e.may_have_run(),
            "a failure that did not run was not retried: {e}"
        );
    }
    // One caller of writes: at most its one call in flight at the kill.
    assert!(writes.iter().filter(|r| r.is_err()).count() <= 1);
    let failed_writes = writes.iter().filter(|r| r.is_err()).count();
    eprintln!(
        "killed 1 of 3: {} reads, {} failed; {} writes, {failed_writes} failed",
        reads.len(),
        failed.len(),
        writes.len(),
    );
    let ran = fleet.ledger.ran.lock().unwrap();
    assert!(ran.values().all(|&n| n == 1), "a write ran twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_gets_traffic_again_within_twice_its_ejection_backoff() {
    let mut fleet = Fleet::start(&[1, 1, 1]).await;
    let ejection = Ejection {
        consecutive_failures: 1,
        base: Duration::from_millis(500),
        ..Ejection::default()
    };
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .ejection(ejection)
        .settings(
            rpc::Channel::builder()
                .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
        )
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    fleet.kill(2).await;
    let results = reads(&client, 4, 200).await;
    assert!(results.iter().all(Result::is_ok));
    let before = fleet.started(2);
    let restarted = fleet.serve(2, fleet.addrs[2]).await;
    let since = tokio::time::Instant::now();
    loop {
        let _ = reads(&client, 4, 40).await;
        if fleet.started(2) > before {
            eprintln!("the restarted server got calls after {:?}", since.elapsed());
            break;
        }
        assert!(
            since.elapsed() < 2 * ejection.base + ejection.base / 2,
            "no traffic to the restarted server after {:?}",
            since.elapsed()
        );
    }
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_silent_one_deadline_covers_every_attempt() {
    let fleet = Fleet::start(&[60_000, 60_000, 60_000]).await;
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let started = tokio::time::Instant::now();
    let e = client.read().await.unwrap_err();
    let took = started.elapsed();
    eprintln!("every server silent: failed after {took:?} with a 100 ms deadline");
    assert!(matches!(e, rpc::Error::DeadlineExceeded { .. }), "{e}");
    assert!(took < Duration::from_millis(190), "took {took:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let attempts: usize = (0..3).map(|i| fleet.started(i)).sum();
    assert_eq!(attempts, 1, "an attempt started after the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_changes_are_followed() {
    let fleet = Fleet::start(&[1, 1, 1]).await;
    let (source, handle) = Manual::new([Target::from(fleet.addrs[0])]);
    let channel = rpc::Channel::balanced(source).connect().await.unwrap();
    let client = WorkClient::new(channel.clone());
    assert!(
        reads(&client, 2, 50)
            .await
            .iter()
            .all(|r| *r.as_ref().unwrap() == 0)
    );

    handle.set(fleet.addrs.iter().map(|&a| Target::from(a)));
    let since = tokio::time::Instant::now();
    loop {
        let results = reads(&client, 4, 300).await;
        let shares: Vec<f64> = (0..3).map(|i| share(&results, i)).collect();
        if shares.iter().all(|&s| s > 0.2) {
            eprintln!(
                "added servers' shares after {:?}: {shares:?}",
                since.elapsed()
            );
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "shares {shares:?}"
        );
    }
    assert_eq!(channel.endpoints().len(), 3);

    // Calls in flight on server 0 when it leaves the set complete.
    fleet.delays[0].store(300, SeqCst);
    let in_flight: Vec<_> = (0..12)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.read().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let on_zero = fleet.started(0);
    handle.set([Target::from(fleet.addrs[1]), Target::from(fleet.addrs[2])]);
    let mut on_removed = 0;
    for call in in_flight {
        let served_by = call.await.unwrap().expect("a call in flight failed");
        on_removed += usize::from(served_by == 0);
    }
    assert!(on_removed > 0, "no call was in flight on server 0");
    assert_eq!(
        fleet.started(0) - on_zero,
        0,
        "server 0 took a call after removal"
    );
    let before = fleet.started(0);
    let results = reads(&client, 4, 200).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fleet.started(0), before, "a removed server got calls");
    assert_eq!(channel.endpoints().len(), 2);
}

/// A server that takes each request and then drops the connection: every
/// call fails in a way that may have run, which an idempotent call retries.
async fn cutting_server(attempts: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let attempts = attempts.clone();
            tokio::spawn(async move {
                let mut conn = RawConn::accept_handshake(stream).await;
                while let Ok(frame) = conn.next_frame(Duration::from_secs(60)).await {
                    if frame.kind == raw::kind::REQUEST {
                        attempts.fetch_add(1, SeqCst);
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_failing_the_retry_budget_holds_and_calls_are_still_attempted() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut addrs = Vec::new();
    for _ in 0..3 {
        addrs.push(cutting_server(attempts.clone()).await);
    }
    let channel = rpc::Channel::balanced(Static::new(addrs))
        .settings(rpc::Channel::builder().reconnect_backoff(Duration::ZERO, Duration::ZERO))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel.clone());
    const CALLS: usize = 300;
    let started = tokio::time::Instant::now();
    for _ in 0..CALLS {
        let e = client.read().await.unwrap_err();
        assert!(e.may_have_run(), "{e}");
    }
    let secs = started.elapsed().as_secs_f64().ceil();
    let total = attempts.load(SeqCst) as f64;
    eprintln!("every server failing: {total} attempts for {CALLS} calls in {secs} s");
    // Default budget: 20% of calls, plus 10 a second (one second's worth
    // may be saved up).
    let bound = 1.2 * CALLS as f64 + 10.0 * (secs + 1.0);
    assert!(
        total <= bound,
        "{total} attempts for {CALLS} calls in {secs} s"
    );
    assert!(total > CALLS as f64, "no call was retried: {total}");
    // At most half the set is ejected, and calls still reach every server
    // that is.
    assert!(channel.endpoints().iter().filter(|e| e.ejected).count() <= 1);
}

/// One call in twenty takes 200 ms; the rest 1 ms.
struct Spiky {
    id: u32,
    every: usize,
    count: AtomicUsize,
    ledger: Arc<Ledger>,
}

impl Work for Spiky {
    async fn read(&self) -> u32 {
        self.ledger.started[self.id as usize].fetch_add(1, SeqCst);
        let n = self.count.fetch_add(1, SeqCst);
        let slow = self.every > 0 && n % self.every == self.every - 1;
        tokio::time::sleep(Duration::from_millis(if slow { 200 } else { 1 })).await;
        self.id
    }

    async fn write(&self, _op: u64) -> u32 {
        self.read().await
    }

    async fn get(&self, _key: String) -> u32 {
        self.read().await
    }
}

async fn p99(client: &WorkClient, calls: usize) -> Duration {
    let mut took = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = tokio::time::Instant::now();
        client.read().await.unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    took[calls * 99 / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_halves_the_p99_within_the_budget() {
    let ledger = Arc::new(Ledger::default());
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for (id, every) in [(0u32, 20usize), (1, 0)] {
        let spiky = Spiky {
            id,
            every,
            count: AtomicUsize::new(0),
            ledger: ledger.clone(),
        };
        let server = rpc::Server::builder()
            .add_service(WorkServer::new(spiky))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        addrs.push(server.local_addr());
        servers.push(server);
    }
    const CALLS: usize = 400;
    let plain = rpc::Channel::balanced(Static::new(addrs.clone()))
        .policy(Policy::RoundRobin)
        .connect()
        .await
        .unwrap();
    let unhedged = p99(&WorkClient::new(plain), CALLS).await;

    let hedged = rpc::Channel::balanced(Static::new(addrs))
        .policy(Policy::RoundRobin)
        .hedge(rpc::client::Hedge::Fixed(Duration::from_millis(20)))
        .connect()
        .await
        .unwrap();
    let before: usize = (0..2).map(|i| ledger.started[i].load(SeqCst)).sum();
    let started = tokio::time::Instant::now();
    let with_hedges = p99(&WorkClient::new(hedged), CALLS).await;
    let secs = started.elapsed().as_secs_f64().ceil();
    let attempts: usize = (0..2)
        .map(|i| ledger.started[i].load(SeqCst))
        .sum::<usize>()
        - before;
    eprintln!(
        "hedging: p99 {unhedged:?} without, {with_hedges:?} with; {attempts} attempts for {CALLS} calls"
    );
    assert!(
        with_hedges * 2 <= unhedged,
        "p99 {with_hedges:?} hedged, {unhedged:?} not"
    );
    let extra = (attempts - CALLS) as f64;
    assert!(
        extra <= 0.2 * CALLS as f64 + 10.0 * (secs + 1.0),
        "{extra} hedges for {CALLS} calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_reports_not_serving_gets_no_calls_until_it_serves_again() {
    let fleet = Fleet::start(&[1, 1, 1]).await;
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .health_checks(Some(Duration::from_millis(50)))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let reporter = fleet.servers[1].as_ref().unwrap().health();
    reporter.set_all(rpc::health::ServingStatus::NotServing);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = fleet.started(1);
    let results = reads(&client, 4, 200).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fleet.started(1), before, "a server not serving got calls");

    reporter.set_all(rpc::health::ServingStatus::Serving);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let results = reads(&client, 4, 300).await;
    assert!(share(&results, 1) > 0.1, "it got no calls back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_sends_a_key_to_one_server_and_moves_only_a_removed_server_s_keys() {
    let fleet = Fleet::start(&[0, 0, 0]).await;
    let (source, handle) = Manual::new(fleet.addrs.iter().map(|&a| Target::from(a)));
    let channel = rpc::Channel::balanced(source)
        .policy(Policy::Affinity)
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let keys: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let mut home = HashMap::new();
    for key in &keys {
        let first = client.get(key.clone()).await.unwrap();
        for _ in 0..3 {
            assert_eq!(client.get(key.clone()).await.unwrap(), first, "{key} moved");
        }
        home.insert(key.clone(), first);
    }
    let used: std::collections::HashSet<_> = home.values().collect();
    assert_eq!(used.len(), 3, "keys all went to {used:?}");

    handle.set([Target::from(fleet.addrs[0]), Target::from(fleet.addrs[2])]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for key in &keys {
        let now = client.get(key.clone()).await.unwrap();
        if home[key] != 1 {
            assert_eq!(now, home[key], "{key} moved though its server stayed");
        } else {
            assert_ne!(now, 1, "{key} still went to the removed server");
        }
    }
}
