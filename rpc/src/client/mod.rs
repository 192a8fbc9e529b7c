//! The client side, by role; dependencies point one way, down this list:
//!
//! - `channel.rs`: [`Channel`], what generated clients call through: the
//!   server behind it and the [`CallOptions`] of the handle;
//! - `call.rs`: one call's future, as generated clients return it, and its
//!   reply decoded; `attempt.rs`: one attempt of it on one server, the one
//!   place that decides its fate (reply, deadline, cancel, lost connection,
//!   refusal and whether it may go elsewhere); `intercepted.rs`: a call with
//!   the channel's interceptors around it; `streaming.rs`: streaming calls;
//! - `endpoint.rs`, `backoff.rs`: one server, its
//!   connection in use, and getting a new one;
//! - `connection/`: one multiplexed connection, a leaf that knows nothing of
//!   the channel (see its docs);
//! - `builder.rs`, `config.rs`, `options.rs`: settings of a channel and of
//!   calls.
//!
//! Below all of it, `crate::transport` moves the bytes.
//!
//! # The call seam
//!
//! Generated `{Trait}Client`s hold a concrete [`Channel`] and call
//! `Channel::call(method, id, &args, map)`, which returns a [`Call`]. tarpc's
//! generated clients are generic over a `Stub` trait, and tonic's over a
//! `GrpcService` (tower's `Service` of HTTP requests); both let anything that
//! sends a request stand behind a client, at the price of a type parameter on
//! every client and a boxed or generic future per layer. Here the variety
//! lives inside the channel instead: what a call needs from the servers
//! behind it is a connection to try now (`Endpoint::current`) and one that
//! takes calls, waiting if it must (`Endpoint::connection`). Today a channel
//! has one endpoint; the channel over many servers (a later issue) answers
//! the same two questions by choosing among its endpoints (and learns from
//! each call's outcome, which `attempt.rs` decides), so
//! `{Trait}Client::new(channel)` works for it with no change to generated
//! code, and the common call stays one concrete future with no boxing.
//! Per-call options travel in one value, [`CallOptions`], carried by the
//! handle, so a new option (metadata, compression) is a field there, not a
//! parameter on every function.
//!
//! # Cancel safety
//!
//! Dropping a call's future before it completes cancels the call: the request
//! is removed from the connection, a Cancel frame tells the server to drop the
//! handler, and a response that still arrives is discarded. The call may or
//! may not have run on the server by then.

mod attempt;
mod backoff;
pub(crate) mod balance;
mod balanced;
mod builder;
mod call;
#[cfg(feature = "json")]
mod call_json;
mod channel;
mod config;
mod connection;
mod endpoint;
mod intercepted;
mod method;
mod options;
mod reply;
mod streaming;

pub use balance::{Ejection, Hedge, Policy, RetryBudget};
pub use balanced::{Balanced, EndpointSnapshot, EndpointState};
pub use builder::Builder;
pub use call::Call;
pub use channel::Channel;
pub(crate) use config::Config;
#[doc(hidden)]
pub use method::{Method, key_of};
pub use options::CallOptions;
pub use streaming::StreamCall;
