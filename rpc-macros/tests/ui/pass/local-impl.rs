//! The trait stays a plain trait: a user type with its own inherent methods
//! implements it and is called in-process, generically and directly.

#![deny(warnings)]

use std::sync::atomic::{AtomicU64, Ordering};

#[rpc::service]
pub trait Store {
    async fn put(&self, value: u64);
    async fn get(&self) -> u64;
}

#[derive(Default)]
struct Memory {
    value: AtomicU64,
}

impl Memory {
    fn raw(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }
}

impl Store for Memory {
    async fn put(&self, value: u64) {
        self.value.store(value, Ordering::SeqCst);
    }
    async fn get(&self) -> u64 {
        self.raw()
    }
}

async fn bump<S: Store>(store: &S) -> u64 {
    let v = store.get().await;
    store.put(v + 1).await;
    store.get().await
}

#[tokio::main]
async fn main() {
    let m = Memory::default();
    m.put(41).await;
    assert_eq!(bump(&m).await, 42);
    assert_eq!(m.raw(), 42);
    // Handler futures are Send: they can be spawned like any task.
    let m = std::sync::Arc::new(m);
    let m2 = m.clone();
    assert_eq!(tokio::spawn(async move { m2.get().await }).await.unwrap(), 42);
}
