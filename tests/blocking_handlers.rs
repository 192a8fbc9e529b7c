//! `#[rpc(blocking)]` handlers, over TCP: they run on tokio's blocking pool,
//! so more of them blocking at once than there are worker threads still
//! leaves the server answering other calls; they see their call's context;
//! a panic in one is a `Panicked` reply; past its deadline the caller is
//! answered at once, while a function already running runs to its end and
//! one not yet started never starts.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::hand::{watchdog, within};

/// Blocking handlers, and one async one.
#[rpc::service]
pub trait Pool {
    /// Blocks its thread (`std::thread::sleep`, in steps) until the test
    /// releases it, then returns `id`.
    #[rpc(blocking)]
    fn block(&self, id: u32) -> u32;
    /// Answers at once.
    async fn quick(&self) -> u32;
    /// The method name and the budget left (ms) its context gives.
    #[rpc(blocking)]
    fn context(&self) -> (String, u64);
    /// Panics with `message`.
    #[rpc(blocking)]
    fn panic(&self, message: String) -> u32;
}

/// What the blocking handlers did, shared with the test.
#[derive(Default)]
struct Record {
    /// The ids of the `block` calls whose function started, in order.
    started: Mutex<Vec<u32>>,
    finished: AtomicU32,
    release: AtomicBool,
}

impl Record {
    fn started(&self) -> Vec<u32> {
        self.started.lock().unwrap().clone()
    }
}

struct PoolImpl(Arc<Record>);

impl Pool for PoolImpl {
    fn block(&self, id: u32) -> u32 {
        self.0.started.lock().unwrap().push(id);
        // Bounded, so that a failed test cannot leave a thread behind forever.
        for _ in 0..4_000 {
            if self.0.release.load(SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.0.finished.fetch_add(1, SeqCst);
        id
    }

    async fn quick(&self) -> u32 {
        7
    }

    fn context(&self) -> (String, u64) {
        let ctx = rpc::context::current();
        (ctx.method().to_string(), ctx.remaining().as_millis() as u64)
    }

    fn panic(&self, message: String) -> u32 {
        panic!("{message}")
    }
}

async fn start() -> (rpc::ServerHandle, PoolClient, Arc<Record>) {
    let record = Arc::new(Record::default());
    let server = rpc::Server::builder()
        .add_service(PoolServer::new(PoolImpl(record.clone())))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = PoolClient::connect(server.local_addr()).await.unwrap();
    (server, client, record)
}

/// Waits (a bounded while) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Four handlers block their threads on a runtime with two workers. Were
/// they `async fn`s calling `std::thread::sleep`, the first two would hold
/// both workers: the other two would not start, and `quick` would not be
/// answered, on any connection, until a sleeper returned. As
/// `#[rpc(blocking)]` they hold threads of the blocking pool instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_blocking_handlers_than_workers_leave_other_calls_answered() {
    let _watchdog = watchdog();
    let (server, client, record) = start().await;
    let sleepers: Vec<_> = (1..=4).map(|id| tokio::spawn(client.block(id))).collect();
    until("four blocking handlers started", || {
        record.started().len() == 4
    })
    .await;

    // Another connection, and the sleepers' own, are answered while all
    // four still block.
    let other = PoolClient::connect(server.local_addr()).await.unwrap();
    assert_eq!(
        within("quick, other connection", other.quick())
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        within("quick, same connection", client.quick())
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        record.finished.load(SeqCst),
        0,
        "a sleeper was released early"
    );

    record.release.store(true, SeqCst);
    let mut ids = Vec::new();
    for sleeper in sleepers {
        ids.push(
            within("a released sleeper", sleeper)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(ids, [1, 2, 3, 4]);
    server.shutdown().await;
}

/// `rpc::context::current()` inside the blocking function gives its call,
/// with the caller's budget; a panic there fails that call only.
async fn context_and_panics() {
    let (server, client, _) = start().await;
    let (method, left) = client
        .with_timeout(Duration::from_millis(700))
        .context()
        .await
        .unwrap();
    assert_eq!(method, "Pool.context");
    assert!(left > 0 && left <= 700, "{left} ms left of 700");

    let r = client.panic("hashing failed".into()).await;
    match r {
        Err(rpc::Error::Panicked { method, message }) => {
            assert_eq!(method, "Pool.panic");
            assert!(message.contains("hashing failed"), "{message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(client.quick().await.unwrap(), 7);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_has_its_context_and_its_panic_is_a_reply_on_a_multi_thread_runtime() {
    let _watchdog = watchdog();
    context_and_panics().await;
}

#[tokio::test]
async fn a_blocking_handler_has_its_context_and_its_panic_is_a_reply_on_a_current_thread_runtime() {
    let _watchdog = watchdog();
    context_and_panics().await;
}

/// A blocking pool of one thread, held by call 1: call 2 waits in the
/// pool's queue, meets its deadline there and is answered at once; its
/// function never starts. Call 1's caller also gives up at its deadline,
/// but its function, already running, runs to its end. The pool runs its
/// queue in order, so call 3, made after call 1 ended, would come after
/// call 2 had call 2 still been waiting.
#[test]
fn past_the_deadline_the_caller_is_answered_and_a_function_not_started_never_runs() {
    let _watchdog = watchdog();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (server, client, record) = start().await;
        let short = client.with_timeout(Duration::from_millis(300));
        let first = tokio::spawn(short.block(1));
        until("call 1 started", || record.started() == [1]).await;
        let second = within("call 2", short.block(2)).await;
        assert!(
            matches!(second, Err(rpc::Error::DeadlineExceeded { .. })),
            "{second:?}"
        );
        let first = within("call 1", first).await.unwrap();
        assert!(
            matches!(first, Err(rpc::Error::DeadlineExceeded { .. })),
            "{first:?}"
        );
        // Both callers have their answer; the blocking thread has not
        // been interrupted.
        assert_eq!(record.finished.load(SeqCst), 0);

        record.release.store(true, SeqCst);
        until("call 1's function ended", || {
            record.finished.load(SeqCst) >= 1
        })
        .await;
        assert_eq!(within("call 3", client.block(3)).await.unwrap(), 3);
        assert_eq!(record.started(), [1, 3], "call 2's function ran after all");
        server.shutdown().await;
    });
}
