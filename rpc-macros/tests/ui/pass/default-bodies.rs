//! Default method bodies stay in the trait; implementations may override them.

#![deny(warnings)]

#[rpc::service]
pub trait Counter {
    async fn get(&self) -> u64;

    /// Twice the count, unless the implementation knows better.
    async fn double(&self) -> u64 {
        self.get().await * 2
    }

    async fn describe(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.get().await)
    }
}

struct Plain;
impl Counter for Plain {
    async fn get(&self) -> u64 {
        21
    }
}

struct Custom;
impl Counter for Custom {
    async fn get(&self) -> u64 {
        1
    }
    async fn double(&self) -> u64 {
        100
    }
}

fn assert_service<S: rpc::__private::Service>(_: S) {}

#[tokio::main]
async fn main() {
    assert_eq!(Plain.double().await, 42);
    assert_eq!(Plain.describe("n=").await, "n=21");
    assert_eq!(Custom.double().await, 100);
    // The default bodies' futures are Send, so both can be served.
    assert_service(CounterServer::new(Plain));
    assert_service(CounterServer::new(Custom));
}
