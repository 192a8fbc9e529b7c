//! A fleet of test servers for the balanced channel's tests: each answers
//! with its id after a delay the test sets, and a ledger shared by all of
//! them counts what ran where.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
pub struct Ledger {
    pub ran: Mutex<HashMap<u64, u32>>,
    pub started: [AtomicUsize; 8],
}

pub struct Worker {
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

pub struct Fleet {
    pub servers: Vec<Option<rpc::ServerHandle>>,
    pub addrs: Vec<SocketAddr>,
    pub delays: Vec<Arc<AtomicU64>>,
    pub ledger: Arc<Ledger>,
}

impl Fleet {
    pub async fn start(delays_ms: &[u64]) -> Fleet {
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

    pub async fn serve(
        &self,
        id: usize,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> rpc::ServerHandle {
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

    pub fn started(&self, id: usize) -> usize {
        self.ledger.started[id].load(SeqCst)
    }

    pub async fn kill(&mut self, id: usize) {
        self.servers[id].take().expect("running").abort().await;
    }
}

/// `calls` reads from `callers` concurrent tasks; what each returned.
pub async fn reads(
    client: &WorkClient,
    callers: usize,
    calls: usize,
) -> Vec<Result<u32, rpc::Error>> {
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

pub fn share(results: &[Result<u32, rpc::Error>], id: u32) -> f64 {
    let n = results
        .iter()
        .filter(|r| matches!(r, Ok(i) if *i == id))
        .count();
    n as f64 / results.len() as f64
}
