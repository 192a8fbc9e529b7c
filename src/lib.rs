//! Services shared by the examples, benches and integration tests, as a user's
//! "api" crate would be shared by their client and server.

pub mod calculator;
#[cfg(feature = "tls")]
pub mod certs;
pub mod feed;
pub mod replica;
