//! A key-value service with shared state behind interior mutability: the
//! server shares one instance across concurrent calls, so handlers take
//! `&self` and guard what they change.
//!
//! ```text
//! cargo run --example kv
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Why a compare-and-swap failed.
#[derive(Debug, Serialize, Deserialize)]
pub enum CasError {
    /// The key held another value (here it is).
    Mismatch(Option<String>),
}

/// A string-to-string store.
#[rpc::service]
pub trait Kv {
    /// Stores `value` under `key`, returning the previous value.
    async fn put(&self, key: String, value: String) -> Option<String>;
    /// The value under `key`. Borrowed arguments stay borrows on the client.
    async fn get(&self, key: &str) -> Option<String>;
    /// Sets `key` to `new` only if it currently holds `expected`.
    async fn cas(&self, key: String, expected: Option<String>, new: String)
    -> Result<(), CasError>;
    /// Every key, sorted.
    async fn keys(&self) -> Vec<String>;
}

#[derive(Default)]
struct Store {
    map: Mutex<HashMap<String, String>>,
}

impl Kv for Store {
    async fn put(&self, key: String, value: String) -> Option<String> {
        self.map.lock().unwrap().insert(key, value)
    }

    async fn get(&self, key: &str) -> Option<String> {
        self.map.lock().unwrap().get(key).cloned()
    }

    async fn cas(
        &self,
        key: String,
        expected: Option<String>,
        new: String,
    ) -> Result<(), CasError> {
        let mut map = self.map.lock().unwrap();
        let current = map.get(&key).cloned();
        if current != expected {
            return Err(CasError::Mismatch(current));
        }
        map.insert(key, new);
        Ok(())
    }

    async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<_> = self.map.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let server = rpc::Server::builder()
        .add_service(KvServer::new(Store::default()))
        .bind("127.0.0.1:0")
        .await?;
    let kv = KvClient::connect(server.local_addr()).await?;

    // 100 concurrent writers on one connection, one shared store.
    let writes: Vec<_> = (0..100)
        .map(|i| tokio::spawn(kv.put(format!("key{i:03}"), format!("value {i}"))))
        .collect();
    for w in writes {
        w.await.expect("task")?;
    }
    println!("stored {} keys", kv.keys().await?.len());
    println!("get(key042) = {:?}", kv.get("key042").await?);

    let won = kv
        .cas("key042".into(), Some("value 42".into()), "changed".into())
        .await?;
    let lost = kv
        .cas("key042".into(), Some("value 42".into()), "again".into())
        .await?;
    println!("first cas: {won:?}; second cas: {lost:?}");

    server.shutdown().await;
    Ok(())
}
