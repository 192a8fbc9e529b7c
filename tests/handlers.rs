//! Where handlers run and how they end, over real TCP: on a multi-thread
//! runtime a handler busy with synchronous work holds up no other call on its
//! connection, a handler dropped early (deadline, cancel) is dropped with
//! its call's context still visible to its destructors, and a handler's
//! context (`rpc::context`) stays with that handler, on either runtime: not
//! seen by tasks it spawns, nor by other handlers.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use support::hand::{watchdog, within};

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

// ---------------------------------------------------------------------------
// The handler's context.

/// A service whose handlers report what they see of their own context.
#[rpc::service]
trait Ctx {
    /// Whether a task spawned by the handler (and run on this runtime,
    /// perhaps on this very thread) sees no handler context.
    async fn spawned_sees_none(&self) -> bool;
    /// The call id the context gives, after the handler waited a few times
    /// (and perhaps moved thread).
    async fn id_after_waits(&self) -> u64;
}

struct CtxImpl;

impl Ctx for CtxImpl {
    async fn spawned_sees_none(&self) -> bool {
        assert!(rpc::context::try_current().is_some());
        let seen = tokio::spawn(async { rpc::context::try_current().is_none() });
        // Give the spawned task its turn while this handler waits.
        let seen = seen.await.unwrap();
        seen && rpc::context::try_current().is_some()
    }

    async fn id_after_waits(&self) -> u64 {
        let before = rpc::context::current().call_id();
        for _ in 0..3 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = rpc::context::current().call_id();
        assert_eq!(before, after);
        after
    }
}

/// Checks, on whatever runtime the test runs, that a spawned task never sees
/// its handler's context, and that each handler sees its own call id.
async fn context_stays_with_its_handler() {
    let server = rpc::Server::builder()
        .add_service(CtxServer::new(CtxImpl))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = CtxClient::connect(server.local_addr()).await.unwrap();
    for _ in 0..5 {
        assert!(
            within("spawned_sees_none", client.spawned_sees_none())
                .await
                .unwrap(),
            "a task spawned by a handler saw the handler's context"
        );
    }
    let calls: Vec<_> = (0..8).map(|_| client.id_after_waits()).collect();
    let ids = within("id_after_waits", futures::future::join_all(calls)).await;
    let mut ids: Vec<u64> = ids.into_iter().map(Result::unwrap).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8, "handlers saw each other's call ids");
    // And outside any handler, nothing.
    assert!(rpc::context::try_current().is_none());
    server.shutdown().await;
}

/// On a current-thread runtime the server polls a handler first in its
/// connection's driver, then in a task of its own, and the context lives in
/// a thread-local set for each poll: it must be gone between polls, so a
/// task the handler spawns (run on the same thread) does not see it, and a
/// handler sees its own call, not another's, after waiting.
#[tokio::test]
async fn the_handler_context_stays_with_its_handler_on_a_current_thread_runtime() {
    let _watchdog = watchdog();
    context_stays_with_its_handler().await;
}

/// The same on a multi-thread runtime, where a handler may also move
/// between threads while it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_context_stays_with_its_handler_on_a_multi_thread_runtime() {
    let _watchdog = watchdog();
    context_stays_with_its_handler().await;
}
