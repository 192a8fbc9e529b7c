use super::*;

fn ctx(call_id: u64) -> Context {
    Context {
        deadline: Instant::now() + Duration::from_secs(5),
        peer: Peer::Memory,
        call_id,
        method: "Svc.m",
        metadata: None,
        reply_metadata: None,
        trace: None,
    }
}

#[tokio::test]
async fn current_is_set_inside_a_scope_only() {
    assert!(try_current().is_none());
    // An `async` block is `!Unpin`: the wrapper takes it as it is.
    let (id, left) = ctx(42)
        .scope(async { (current().call_id(), current().remaining()) })
        .await;
    assert_eq!(id, 42);
    assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));
    assert!(current_deadline().is_none());
}

/// A handler polled inside another's poll sees its own context, and the
/// outer one's comes back after; a handler that panics leaves nothing
/// behind for the next one polled on the thread.
#[tokio::test]
async fn scopes_nest_and_a_panic_restores_the_context() {
    let inner = ctx(2).scope(async { current().call_id() });
    let outer = ctx(1).scope(async move {
        let before = current().call_id();
        let inside = inner.await;
        (before, inside, current().call_id())
    });
    assert_eq!(outer.await, (1, 2, 1));
    assert!(try_current().is_none());

    let panicking = ctx(3).scope(async {
        assert_eq!(current().call_id(), 3);
        panic!("the handler failed");
    });
    let caught = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(panicking)).await;
    assert!(caught.is_err());
    assert!(
        try_current().is_none(),
        "the panicked handler's context leaked"
    );
    assert!(current_deadline().is_none());
}

/// A handler dropped before it finished runs its destructors with its
/// context set.
#[tokio::test]
async fn a_dropped_handler_sees_its_context_in_destructors() {
    struct Probe(std::sync::Arc<std::sync::Mutex<Option<u64>>>);
    impl Drop for Probe {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = try_current().map(|c| c.call_id());
        }
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let probe = Probe(seen.clone());
    let mut handler = Box::pin(ctx(7).scope(async move {
        let _probe = probe;
        std::future::pending::<()>().await;
    }));
    assert!(futures::poll!(&mut handler).is_pending());
    drop(handler);
    assert_eq!(*seen.lock().unwrap(), Some(7));
    assert!(try_current().is_none());
}

/// What makes the wrapper usable with `tokio::spawn` and cheap for the
/// server: `Send` and `Unpin` exactly when the inner future is.
#[test]
fn the_wrapper_is_send_and_unpin_when_its_future_is() {
    fn send<T: Send>(_: &T) {}
    fn unpin<T: Unpin>(_: &T) {}
    let boxed: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async {});
    let scoped = ctx(1).scope(boxed);
    send(&scoped);
    unpin(&scoped);
    send(&ctx(1).scope(async {}));
}

#[test]
fn enter_lends_the_context_to_a_closure_and_takes_it_back() {
    assert!(try_current().is_none());
    let id = ctx(5).enter(|| ctx(6).enter(|| current().call_id()) * 10 + current().call_id());
    assert_eq!(id, 65);
    assert!(try_current().is_none());
    let panicked = std::panic::catch_unwind(|| ctx(8).enter(|| panic!("in a blocking handler")));
    assert!(panicked.is_err());
    assert!(try_current().is_none(), "a panic left the context set");
}

/// `spawn` and `spawn_blocking` carry the context into a task that may run
/// on another thread; outside a handler they carry nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_and_spawn_blocking_carry_the_current_context() {
    let seen = ctx(9)
        .scope(async {
            let bare = tokio::spawn(async { try_current().map(|c| c.call_id()) });
            let task = spawn(async {
                tokio::task::yield_now().await;
                current().call_id()
            });
            let blocking = spawn_blocking(|| current().call_id());
            (
                bare.await.unwrap(),
                task.await.unwrap(),
                blocking.await.unwrap(),
            )
        })
        .await;
    assert_eq!(seen, (None, 9, 9));
    let outside = spawn(async { try_current().is_none() });
    assert!(outside.await.unwrap());
    let outside = spawn_blocking(|| try_current().is_none());
    assert!(outside.await.unwrap());
}
