//! Where handlers run and how they end, over real TCP: on a multi-thread
//! runtime a handler busy with synchronous work holds up no other call on its
//! connection, and a handler dropped early (deadline, cancel) is dropped with
//! its call's context still visible to its destructors.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// A service whose handlers stand for the kinds of work a server does.
#[rpc::service]
pub trait Work {
    /// Returns at once.
    async fn quick(&self) -> u32;
    /// Blocks its thread for `ms` before its first await (CPU work, say).
    async fn busy(&self, ms: u64) -> u64;
    /// Never returns; records, when dropped, whether its context was visible.
    async fn hang(&self) -> u32;
}

static DROPPED: AtomicU32 = AtomicU32::new(0);
static CONTEXT_IN_DROP: AtomicBool = AtomicBool::new(false);

struct DropProbe;

impl Drop for DropProbe {
    fn drop(&mut self) {
        CONTEXT_IN_DROP.store(rpc::context::try_current().is_some(), SeqCst);
        DROPPED.fetch_add(1, SeqCst);
    }
}

struct Worker;

impl Work for Worker {
    async fn quick(&self) -> u32 {
        7
    }

    async fn busy(&self, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    async fn hang(&self) -> u32 {
        let _probe = DropProbe;
        std::future::pending::<()>().await;
        0
    }
}

async fn start() -> (rpc::ServerHandle, WorkClient) {
    let server = rpc::Server::builder()
        .add_service(WorkServer::new(Worker))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = WorkClient::connect(server.local_addr()).await.unwrap();
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quick_call_does_not_wait_behind_another_calls_synchronous_work() {
    let (_server, client) = start().await;
    assert_eq!(client.quick().await.unwrap(), 7);
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.busy(1_500).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let quick = client
        .with_timeout(Duration::from_millis(700))
        .quick()
        .await;
    let took = started.elapsed();
    assert_eq!(
        quick.unwrap_or_else(|e| panic!("the quick call failed after {took:?}: {e}")),
        7
    );
    assert_eq!(slow.await.unwrap().unwrap(), 1_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_dropped_at_its_deadline_still_sees_its_context_in_drop() {
    let (_server, client) = start().await;
    let r = client.with_timeout(Duration::from_millis(100)).hang().await;
    assert!(
        matches!(r, Err(rpc::Error::DeadlineExceeded { .. })),
        "{r:?}"
    );
    let until = Instant::now() + Duration::from_secs(5);
    while DROPPED.load(SeqCst) == 0 {
        assert!(Instant::now() < until, "the handler was never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        CONTEXT_IN_DROP.load(SeqCst),
        "rpc::context::try_current() was None in the handler's destructor"
    );
}
