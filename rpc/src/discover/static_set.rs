//! [`Static`]: a list of servers given once.

use super::backoff::Backoff;
use super::resolve::{AddrSpec, resolve_all};
use super::{SetStream, Target};
use crate::Error;
use futures::stream::{self, Stream, StreamExt};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A fixed list of servers: yields the whole set once, then nothing more
/// (it stays pending, so the channel keeps the set for good).
///
/// Takes anything iterable of strings (`"127.0.0.1:7001"`,
/// `"localhost:7001"`, `"unix:/run/svc.sock"`, `"memory:svc"`),
/// [`SocketAddr`](std::net::SocketAddr)s, [`Address`](crate::transport::Address)es
/// or [`Target`]s. Names are resolved once, when the stream is first
/// polled (so `new` needs no runtime), with the system resolver; a name that
/// resolves to several addresses gives a target for each. An address listed
/// twice is one target.
///
/// If a name does not resolve, the stream yields that error and tries the
/// whole list again later (after 100 ms, growing to 10 s), until it
/// resolves: a list is used whole, so a mistyped name is reported rather
/// than the channel running on part of its servers.
///
/// ```
/// use rpc::discover::Static;
/// use std::net::SocketAddr;
///
/// let by_name = Static::new(["127.0.0.1:7001", "localhost:7002"]);
/// let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
/// let b: SocketAddr = "127.0.0.1:7002".parse().unwrap();
/// let by_addr = Static::new(vec![a, b]);
/// ```
pub struct Static {
    specs: Vec<AddrSpec>,
    inner: SetStream,
}

impl Static {
    /// The servers at these addresses. Nothing is resolved until the stream
    /// is first polled.
    pub fn new<I>(addrs: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<AddrSpec>,
    {
        let specs: Vec<AddrSpec> = addrs.into_iter().map(Into::into).collect();
        let inner = resolve_until_done(specs.clone())
            .chain(stream::pending())
            .boxed();
        Static { specs, inner }
    }
}

/// Resolves the list until it resolves once, yielding each failure and then
/// the set, then ends.
fn resolve_until_done(
    specs: Vec<AddrSpec>,
) -> impl Stream<Item = Result<Vec<Target>, Error>> + Send + 'static {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    // State: the list still to resolve (None once it has), the backoff, and
    // whether the last attempt failed (then wait before the next).
    stream::unfold(
        (Some(specs), backoff, false),
        |(specs, mut backoff, failed)| async move {
            let specs = specs?;
            if failed {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            match resolve_all(&specs).await {
                Ok(set) => Some((Ok(set), (None, backoff, false))),
                Err(e) => Some((Err(e), (Some(specs), backoff, true))),
            }
        },
    )
}

impl Stream for Static {
    type Item = Result<Vec<Target>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl fmt::Debug for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Static")
            .field("addrs", &self.specs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Address;
    use std::net::SocketAddr;

    fn tcp(s: &str) -> Target {
        Target::from(s.parse::<SocketAddr>().unwrap())
    }

    #[tokio::test]
    async fn yields_the_set_once_then_stays_pending() {
        let mut s = Static::new(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7001"]);
        let set = s.next().await.unwrap().unwrap();
        assert_eq!(set, vec![tcp("127.0.0.1:7001"), tcp("127.0.0.1:7002")]);
        let more = tokio::time::timeout(Duration::from_millis(50), s.next()).await;
        assert!(more.is_err(), "a static list yielded again: {more:?}");
    }

    #[tokio::test]
    async fn takes_socket_addrs_addresses_and_targets() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:2".parse().unwrap();
        let set = Static::new(vec![a, b]).next().await.unwrap().unwrap();
        assert_eq!(set, vec![Target::from(a), Target::from(b)]);

        let mixed: Vec<AddrSpec> = vec![
            Address::Memory("m".into()).into(),
            tcp("127.0.0.1:3").with_weight(5).into(),
            "unix:/tmp/x.sock".into(),
        ];
        let set = Static::new(mixed).next().await.unwrap().unwrap();
        assert_eq!(set[1].weight, 5);
        assert_eq!(set[2].address, Address::Unix("/tmp/x.sock".into()));
    }

    #[tokio::test]
    async fn a_name_gives_every_address_it_resolves_to() {
        let set = Static::new(["localhost:7001"])
            .next()
            .await
            .unwrap()
            .unwrap();
        let all = crate::discover::resolve::lookup("localhost:7001")
            .await
            .unwrap();
        assert!(set.contains(&tcp("127.0.0.1:7001")), "{set:?}");
        assert_eq!(set, all.into_iter().map(Target::from).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_reported_and_tried_again() {
        let mut s = Static::new(["127.0.0.1:1", "nonexistent.invalid:1"]);
        let err = s.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("nonexistent.invalid:1"), "{err}");
        // Tried again after the backoff (about 100 ms): another error, not
        // an end.
        assert!(s.next().await.unwrap().is_err());
    }
}
