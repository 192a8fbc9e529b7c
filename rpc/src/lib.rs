//! Zero-IDL RPC for Rust: one trait is the whole schema.
//!
//! Put `#[rpc::service]` on a trait in a crate that client and server share,
//! implement the trait on the server, and call it from the client as async
//! methods. Calls are multiplexed over one connection as length-prefixed
//! frames of bincode-encoded payloads.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! pub enum MathError { DivideByZero }
//!
//! #[rpc::service]
//! pub trait Calculator {
//!     /// Adds two numbers.
//!     async fn add(&self, a: i64, b: i64) -> i64;
//!     async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
//! }
//!
//! struct Calc;
//! impl Calculator for Calc {
//!     async fn add(&self, a: i64, b: i64) -> i64 { a + b }
//!     async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
//!         if b == 0 { Err(MathError::DivideByZero) } else { Ok(a / b) }
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), rpc::Error> {
//! let server = rpc::Server::builder()
//!     .add_service(CalculatorServer::new(Calc))
//!     .bind("127.0.0.1:0")
//!     .await?;
//!
//! let calc = CalculatorClient::connect(server.local_addr()).await?;
//! assert_eq!(calc.add(2, 3).await?, 5);
//! assert!(matches!(calc.div(1, 0).await?, Err(MathError::DivideByZero)));
//! let quick = calc.with_timeout(Duration::from_millis(50));
//! assert_eq!(quick.add(1, 2).await?, 3);
//!
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What a call returns
//!
//! A client method returns `Result<R, rpc::Error>` where `R` is the trait
//! method's return type exactly: an application error stays typed inside `R`,
//! and [`Error`] holds only the RPC machinery's failures.
//!
//! # Streams
//!
//! A method that returns or takes [`rpc::Stream<T>`](Stream) streams items
//! over the same connection, flow-controlled per stream (a slow consumer
//! holds its producer back), cancelled when either side drops its end: see
//! [`stream`].
//!
//! # TLS
//!
//! With the feature `tls`, servers serve TLS and mutual TLS over TCP
//! (`Server::builder().tls(config)`), clients connect with
//! `Channel::connect_tls(addr, config, server_name)`, and a handler sees a
//! client's certificate chain in its context's peer: see the `rpc::tls`
//! module (rustls, with the *ring* provider). Off by default, so that the
//! default build compiles no C.
//!
//! # Formats
//!
//! Values travel in bincode. With the feature `json`, a channel built with
//! `.format(Format::Json)` sends and receives JSON instead, a server accepts
//! both (each connection in its client's format; `accept_formats` narrows
//! that), and `Channel::call_json` calls any unary method with arguments
//! written as JSON: see [`Format`].
//!
//! # Cancel safety
//!
//! Dropping a call's future cancels the call: the server is told and drops the
//! handler's future. The call may or may not have run by then. A server
//! running its maximum of handlers on the connection still reads Cancels: a
//! request waiting there for a slot is dropped before it starts. A call
//! future borrows nothing (its arguments are encoded when the method is
//! called), so it can be spawned.
//!
//! # Deadlines
//!
//! Every call has a deadline (30 s unless the client or
//! [`with_timeout`](Channel::with_timeout) says otherwise). The remaining budget
//! travels with the request; the server drops the handler when it runs out, and
//! calls made from inside a handler inherit what is left (see [`context`]).
//! A task the handler spawns with a bare `tokio::spawn` does not: there the
//! handler's context is gone, and a call gets the full 30 s again. Spawn it
//! with [`context::spawn`] (or wrap its future with
//! [`current().scope(..)`](context::Context::scope)) to carry the context.
//! On the client, one timer per connection enforces the deadlines of all its
//! calls, in the connection's reader task: that task (and its writer) run on
//! the runtime that made the connection, so keep that runtime running while
//! the connection is used (dropping it fails the connection's calls at once).
//!
//! # Where handlers run
//!
//! On a multi-thread runtime every request's handler is a task of its own, so
//! the handlers of one connection run in parallel. On a current-thread
//! runtime, where a spawned task would run on the same thread anyway, the
//! server polls each handler once in the connection's own task: one that
//! finishes in that poll (most do: they compute and return) is answered
//! without a task, and one that has to wait moves to a task of its own; the
//! same task also writes the connection's replies.
//!
//! Either way a handler runs on the runtime's worker threads, between its
//! awaits. **A handler that blocks its thread** (`std::thread::sleep`, a
//! blocking file or database call, long CPU work) holds up every handler and
//! connection on that thread meanwhile, and once as many handlers block as
//! there are worker threads, the whole server stops answering. Declare such a
//! method as a plain `fn` marked `#[rpc(blocking)]`:
//!
//! ```
//! #[rpc::service]
//! pub trait Hasher {
//!     /// CPU-bound: runs on tokio's blocking thread pool.
//!     #[rpc(blocking)]
//!     fn hash(&self, data: Vec<u8>) -> u64;
//! }
//!
//! struct Fnv;
//! impl Hasher for Fnv {
//!     fn hash(&self, data: Vec<u8>) -> u64 {
//!         data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
//!             (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
//!         })
//!     }
//! }
//! # async fn client(hasher: HasherClient) -> Result<(), rpc::Error> {
//! // The client's method is `async`, like every other:
//! let h: u64 = hasher.hash(vec![1, 2, 3]).await?;
//! # Ok(()) }
//! ```
//!
//! The server runs it with `spawn_blocking`, with the call's context set
//! ([`context::current`] works), and a panic in it is a `Panicked` reply. At
//! the deadline or on Cancel its caller is answered and its reply dropped,
//! but a thread cannot be interrupted: a function already running runs to
//! its end (one still waiting for a thread of the pool never starts). The
//! pool is bounded (512 threads unless the runtime's builder says otherwise;
//! calls beyond wait for a thread). In an `async fn`, move the part that
//! blocks into [`context::spawn_blocking`] instead.

// The code `#[rpc::service]` generates names this crate `::rpc`: so does
// the crate's own service (`health`).
extern crate self as rpc;

#[cfg(feature = "hooks")]
#[doc(hidden)]
pub mod bench_api;
pub mod bytes;
pub mod client;
mod codec;
mod compression;
pub mod context;
mod deadline;
pub mod discover;
mod error;
pub mod fault;
pub mod health;
pub mod intercept;
pub mod introspect;
pub mod metadata;
pub mod observe;
pub mod protocol;
mod rng;
pub mod server;
pub mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;

pub use client::Channel;
pub use codec::Format;
pub use compression::Compression;
pub use error::Error;
pub use metadata::Metadata;
pub use rpc_macros::service;
pub use server::{Server, ServerHandle};
pub use stream::Stream;

/// Items used by code that `#[rpc::service]` generates. Not a public API: it
/// changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::bytes::{ByteBuf, BytesRef};
    pub use crate::client::{Method, key_of};
    pub use crate::codec::{FlatArgs, Scalar};
    pub use crate::server::dispatch::{Call, Handler, MethodDesc, Reply, Service};
    /// Generated code implements `Serialize`/`Deserialize` for each method's
    /// arguments, so that a type error lands under the user's argument type.
    pub use serde;
    pub use std::boxed::Box;
    pub use std::future::Future;
    pub use std::string::String;
    pub use std::sync::Arc;
    pub use std::vec::Vec;
    pub use tokio::net::ToSocketAddrs;
}
