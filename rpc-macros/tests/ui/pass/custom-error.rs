//! `Result<T, E>` with the application's own serializable error: it stays
//! typed, inside the client's `Result<_, rpc::Error>`.

#![deny(warnings)]

use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum BankError {
    Insufficient { missing: u64 },
    Frozen(String),
}

#[rpc::service]
pub trait Bank {
    async fn withdraw(&self, amount: u64) -> Result<u64, BankError>;
    async fn check(&self) -> std::result::Result<(), String>;
}

struct Impl;
impl Bank for Impl {
    async fn withdraw(&self, amount: u64) -> Result<u64, BankError> {
        if amount > 10 {
            Err(BankError::Insufficient { missing: amount - 10 })
        } else {
            Ok(10 - amount)
        }
    }
    async fn check(&self) -> Result<(), String> {
        Err("frozen".into())
    }
}

#[allow(dead_code)]
async fn client_types(client: &BankClient) -> Result<(), rpc::Error> {
    let r: Result<u64, BankError> = client.withdraw(3).await?;
    let _ = r;
    let c: Result<(), String> = client.check().await?;
    let _ = c;
    Ok(())
}

#[tokio::main]
async fn main() {
    assert_eq!(Impl.withdraw(4).await, Ok(6));
    assert_eq!(Impl.withdraw(15).await, Err(BankError::Insufficient { missing: 5 }));
    assert!(Impl.check().await.is_err());
}
