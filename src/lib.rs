//! Services shared by the examples, benches and integration tests, as a user's
//! "api" crate would be shared by their client and server.

pub mod calculator;
pub mod feed;
pub mod replica;
