//! Discovery: where the servers of a balanced channel are.
//!
//! A source of servers is a [`Discover`]: a stream whose every item is the
//! *whole* current set of [`Target`]s (never a delta), so a consumer that
//! misses an item loses nothing but time. A balanced channel
//! (`rpc::Channel::balanced(source)`) follows the latest set. An `Err`, an
//! empty set, or the end of the stream all mean "keep the last good set":
//! a discovery outage never takes working servers away.
//!
//! | source | the set comes from | changes |
//! |---|---|---|
//! | [`Static`] | a list given once (addresses, or names resolved once) | never |
//! | [`Manual`] | a [`ManualHandle`] the program keeps | at each [`ManualHandle::set`] |
//! | [`Dns`] | one name, re-resolved on an interval | when the answer changes |
//! | `Etcd` (feature `etcd`; see the `etcd` module) | the keys under a prefix, read then watched | at each put or delete |
//!
//! Any stream of `Result<Vec<Target>, rpc::Error>` that is `Send + Unpin +
//! 'static` is a source too, so a registry of your own needs no adapter
//! beyond a stream.
//!
//! # Example
//!
//! ```
//! use futures::StreamExt;
//! use rpc::discover::{Manual, Static, Target};
//!
//! # #[tokio::main] async fn main() -> Result<(), rpc::Error> {
//! // A fixed list: strings ("host:port", resolved once), SocketAddrs,
//! // Addresses or Targets.
//! let mut fixed = Static::new(["127.0.0.1:7001", "127.0.0.1:7002"]);
//! let set = fixed.next().await.unwrap()?;
//! assert_eq!(set.len(), 2);
//!
//! // A list the program changes at run time.
//! let (mut source, handle) = Manual::new(set.clone());
//! assert_eq!(source.next().await.unwrap()?, set);
//! handle.set(vec![Target::new(set[0].address.clone()).with_weight(3)]);
//! assert_eq!(source.next().await.unwrap()?[0].weight, 3);
//! # Ok(()) }
//! ```
//!
//! # Addresses as strings
//!
//! Wherever a source takes an address as a string (a [`Static`] entry, an
//! etcd value), it is one of: an IP socket address (`127.0.0.1:7001`,
//! `[::1]:7001`); a `host:port` name, resolved with the system resolver
//! (all the addresses it resolves to are used); `unix:PATH` for a Unix domain
//! socket; or `memory:NAME` for an in-memory server. The last two read as
//! [`Address`]'s `Display` writes them.

mod backoff;
mod dns;
#[cfg(feature = "etcd")]
pub mod etcd;
mod manual;
mod resolve;
mod static_set;

use crate::transport::Address;
use std::net::SocketAddr;

pub use dns::Dns;
#[cfg(feature = "etcd")]
pub use etcd::Etcd;
pub use manual::{Manual, ManualHandle};
pub use resolve::AddrSpec;
pub use static_set::Static;

/// A server the balanced channel may call, as discovery found it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Where the server is.
    pub address: Address,
    /// Its share of the calls relative to the other targets: at least 1
    /// (the default). A target of weight 3 is meant to get three times the
    /// calls of one of weight 1.
    pub weight: u32,
}

impl Target {
    /// A target of weight 1.
    pub fn new(address: Address) -> Self {
        Target { address, weight: 1 }
    }

    /// The same target with another weight. A weight of 0 is taken as 1:
    /// a server that should get no calls is one to leave out of the set.
    pub fn with_weight(self, weight: u32) -> Self {
        Target {
            weight: weight.max(1),
            ..self
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target::new(Address::Tcp(addr))
    }
}

impl From<Address> for Target {
    fn from(address: Address) -> Self {
        Target::new(address)
    }
}

/// A source of the current set of servers. Each item is the WHOLE current
/// set (not a delta). An `Err` or an empty set means "keep the last good
/// set" (the balancer does that); `None` (the source ended) also keeps the
/// last set.
///
/// Implemented for every stream of that item type that is `Send + Unpin +
/// 'static`.
pub trait Discover:
    futures::Stream<Item = Result<Vec<Target>, crate::Error>> + Send + Unpin + 'static
{
}

impl<S> Discover for S where
    S: futures::Stream<Item = Result<Vec<Target>, crate::Error>> + Send + Unpin + 'static
{
}

/// The stream every source here is built on: its logic is plain async code
/// (an `unfold` over the source's state), boxed so the source is `Unpin`.
type SetStream = futures::stream::BoxStream<'static, Result<Vec<Target>, crate::Error>>;

/// Removes repeated addresses, keeping each one's first target, so a name
/// listed twice (or resolving to an address listed too) is called as one
/// server.
fn dedup_by_address(targets: Vec<Target>) -> Vec<Target> {
    let mut seen = std::collections::HashSet::new();
    targets
        .into_iter()
        .filter(|t| seen.insert(t.address.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_is_at_least_one() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(Target::from(addr).weight, 1);
        assert_eq!(Target::from(addr).with_weight(0).weight, 1);
        assert_eq!(Target::from(addr).with_weight(7).weight, 7);
    }

    #[test]
    fn dedup_keeps_first_of_each_address() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let set = vec![
            Target::from(a).with_weight(2),
            Target::from(b),
            Target::from(a),
        ];
        assert_eq!(
            dedup_by_address(set),
            vec![Target::from(a).with_weight(2), Target::from(b)]
        );
    }
}
