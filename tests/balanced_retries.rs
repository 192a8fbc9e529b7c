//! A balanced channel's retries and hedges against real servers on
//! loopback: with every server failing the retry budget holds, and hedging
//! halves the p99 of a server with slow outliers within the budget.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use rpc::client::Policy;
use rpc::discover::Static;
use support::fleet::{Ledger, Work, WorkClient, WorkServer};
use support::raw::{self, RawConn};

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

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
