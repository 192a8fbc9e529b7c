//! A handler's context in the tasks it spawns, over TCP: carried by
//! `rpc::context::spawn`, `Context::scope` and `rpc::context::spawn_blocking`
//! (a call made there gets what is left of the caller's budget, and
//! `try_current()` is the handler's own call), and not by a bare
//! `tokio::spawn` (no context, and a call there gets the full default
//! timeout), on either kind of runtime.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use support::hand::{watchdog, within};

/// The service the handlers under test call in turn.
#[rpc::service]
pub trait Back {
    /// The budget this handler was given, in milliseconds.
    async fn budget_ms(&self) -> u64;
}

struct BackImpl;

impl Back for BackImpl {
    async fn budget_ms(&self) -> u64 {
        rpc::context::current().remaining().as_millis() as u64
    }
}

/// How a handler hands its work to another task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum How {
    /// `tokio::spawn(async { call })`: the context stays behind.
    Bare,
    /// `rpc::context::spawn(async { call })`.
    Spawn,
    /// `tokio::spawn(rpc::context::current().scope(async { call }))`.
    Scope,
    /// `rpc::context::spawn_blocking(|| block_on(call))`.
    SpawnBlocking,
    /// The call made in the handler, its future spawned bare.
    SpawnCallFuture,
}

/// What the other task saw.
#[derive(Debug, Serialize, Deserialize)]
pub struct Seen {
    /// The handler's own call id.
    handler_call: u64,
    /// The call id `try_current()` gave in the other task.
    task_call: Option<u64>,
    /// The budget the call made from the other task arrived with.
    nested_budget_ms: u64,
}

/// The service whose handlers spawn.
#[rpc::service]
pub trait Front {
    /// Calls `Back::budget_ms` from a task started as `how` says.
    async fn fan_out(&self, how: How) -> Seen;
}

struct FrontImpl {
    back: BackClient,
}

fn task_call() -> Option<u64> {
    rpc::context::try_current().map(|c| c.call_id())
}

impl Front for FrontImpl {
    async fn fan_out(&self, how: How) -> Seen {
        let handler_call = rpc::context::current().call_id();
        let back = self.back.clone();
        let work = async move { (task_call(), back.budget_ms().await) };
        let (task_call, budget) = match how {
            How::Bare => tokio::spawn(work).await.unwrap(),
            How::Spawn => rpc::context::spawn(work).await.unwrap(),
            How::Scope => tokio::spawn(rpc::context::current().scope(work))
                .await
                .unwrap(),
            How::SpawnBlocking => {
                let back = self.back.clone();
                let runtime = tokio::runtime::Handle::current();
                rpc::context::spawn_blocking(move || {
                    // The call is made here, on the blocking thread.
                    (task_call(), runtime.block_on(back.budget_ms()))
                })
                .await
                .unwrap()
            }
            How::SpawnCallFuture => {
                let call = self.back.budget_ms();
                let budget = tokio::spawn(call).await.unwrap();
                (tokio::spawn(async { task_call() }).await.unwrap(), budget)
            }
        };
        Seen {
            handler_call,
            task_call,
            nested_budget_ms: budget.expect("the nested call failed"),
        }
    }
}

/// Serves `Front`, whose handlers call a `Back` server, and calls each way
/// of spawning with a 700 ms budget.
async fn budgets_in_spawned_tasks() {
    let back = rpc::Server::builder()
        .add_service(BackServer::new(BackImpl))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let front_impl = FrontImpl {
        back: BackClient::connect(back.local_addr()).await.unwrap(),
    };
    let front = rpc::Server::builder()
        .add_service(FrontServer::new(front_impl))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = FrontClient::connect(front.local_addr())
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(700));
    let fan_out = |how| {
        let client = client.clone();
        async move {
            within("fan_out", client.fan_out(how))
                .await
                .unwrap_or_else(|e| panic!("{how:?}: {e}"))
        }
    };

    for how in [How::Spawn, How::Scope, How::SpawnBlocking] {
        let seen = fan_out(how).await;
        assert_eq!(
            seen.task_call,
            Some(seen.handler_call),
            "{how:?}: the task did not see its handler's context"
        );
        assert!(
            seen.nested_budget_ms <= 700,
            "{how:?}: the nested call did not inherit the caller's 700 ms budget: {seen:?}"
        );
    }

    // A call future is given its deadline when it is made: spawning it bare
    // keeps it, though the task has no context.
    let seen = fan_out(How::SpawnCallFuture).await;
    assert_eq!(seen.task_call, None);
    assert!(seen.nested_budget_ms <= 700, "{seen:?}");

    // What the docs warn about: a bare `tokio::spawn` starts without the
    // context, and a call made there has the client's default 30 s.
    let seen = fan_out(How::Bare).await;
    assert_eq!(
        seen.task_call, None,
        "a bare tokio::spawn carried the context"
    );
    assert!(seen.nested_budget_ms > 20_000, "{seen:?}");

    front.shutdown().await;
    back.shutdown().await;
}

/// On a multi-thread runtime the spawned task may run on another worker
/// thread than its handler, or on the blocking pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_task_carries_its_handlers_budget_on_a_multi_thread_runtime() {
    let _watchdog = watchdog();
    budgets_in_spawned_tasks().await;
}

/// On a current-thread runtime the spawned task runs on the handler's own
/// thread, between the handler's polls, when the context is not set.
#[tokio::test]
async fn a_spawned_task_carries_its_handlers_budget_on_a_current_thread_runtime() {
    let _watchdog = watchdog();
    budgets_in_spawned_tasks().await;
}
