//! [`Dns`]: the servers a name resolves to, re-resolved on an interval.

use super::resolve::lookup;
use super::{SetStream, Target};
use crate::Error;
use futures::stream::{self, Stream, StreamExt};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// How often a name is resolved again by default. Kubernetes' cluster DNS
/// (CoreDNS) gives service records a TTL of 5 s, so asking more often would
/// mostly get the same cached answer, and asking less often would leave a
/// new pod without traffic for longer. One lookup per channel every 5 s is
/// no load on a resolver. A server that went away before the next lookup
/// costs nothing but failed connection attempts, which the balancer
/// handles (it ejects the endpoint).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The servers a `host:port` name resolves to, such as a Kubernetes
/// headless service (`my-svc.default.svc.cluster.local:7000`), which
/// resolves to one address per ready pod.
///
/// The name is resolved with the system resolver (the one
/// `std::net::ToSocketAddrs` uses: `/etc/hosts`, then DNS) when the stream
/// is first polled and again every [`interval`](Self::interval) (5 s by
/// default). The stream yields every address returned, sorted and without
/// repeats, each time the set differs from the last one it yielded; an
/// unchanged answer yields nothing. A lookup that fails yields that error
/// (the balanced channel keeps its set) and is tried again on the next
/// tick.
///
/// A name with both IPv4 and IPv6 addresses (`localhost` often resolves to
/// `127.0.0.1` and `::1`) gives a target for each: a server listening on
/// only one of them leaves the other failing, which the balancer ejects.
///
/// ```
/// use futures::StreamExt;
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() -> Result<(), rpc::Error> {
/// let mut source = rpc::discover::Dns::new("localhost:7000").interval(Duration::from_secs(1));
/// let set = source.next().await.unwrap()?;
/// assert!(set.iter().any(|t| t.address.to_string() == "127.0.0.1:7000"));
/// # Ok(()) }
/// ```
pub struct Dns {
    name: String,
    interval: Duration,
    // Made at the first poll, so that `interval` can still be set.
    inner: Option<SetStream>,
}

impl Dns {
    /// The servers `name` (`host:port`) resolves to. Nothing is resolved
    /// until the stream is first polled.
    pub fn new(name: impl Into<String>) -> Self {
        Dns {
            name: name.into(),
            interval: DEFAULT_INTERVAL,
            inner: None,
        }
    }

    /// How long to wait after each lookup before the next (at least 1 ms).
    /// Takes effect if set before the stream is first polled.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }
}

/// What the stream carries from one lookup to the next.
struct Lookups {
    name: String,
    interval: Duration,
    /// The set last yielded, to yield only changes.
    last: Option<Vec<Target>>,
    /// Whether a lookup has happened yet: the first one does not wait.
    started: bool,
}

impl Lookups {
    /// Looks the name up until the answer differs from the last set
    /// yielded, or fails.
    async fn next_change(&mut self) -> Result<Vec<Target>, Error> {
        loop {
            if self.started {
                tokio::time::sleep(self.interval).await;
            }
            self.started = true;
            let set: Vec<Target> = lookup(&self.name)
                .await?
                .into_iter()
                .map(Target::from)
                .collect();
            if self.last.as_ref() != Some(&set) {
                self.last = Some(set.clone());
                return Ok(set);
            }
        }
    }
}

impl Stream for Dns {
    type Item = Result<Vec<Target>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let inner = this.inner.get_or_insert_with(|| {
            let lookups = Lookups {
                name: this.name.clone(),
                interval: this.interval,
                last: None,
                started: false,
            };
            stream::unfold(lookups, |mut l| async move {
                let item = l.next_change().await;
                Some((item, l))
            })
            .boxed()
        });
        inner.poll_next_unpin(cx)
    }
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[tokio::test]
    async fn localhost_resolves_to_loopback_sorted() {
        let mut dns = Dns::new("localhost:7000").interval(Duration::from_millis(20));
        let set = dns.next().await.unwrap().unwrap();
        let addrs: Vec<SocketAddr> = set.iter().map(|t| t.address.tcp().unwrap()).collect();
        assert!(
            addrs.contains(&"127.0.0.1:7000".parse().unwrap()),
            "{addrs:?}"
        );
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(addrs.is_sorted(), "{addrs:?}");
        assert!(set.iter().all(|t| t.weight == 1));
    }

    #[tokio::test]
    async fn an_unchanged_answer_is_not_yielded_again() {
        let mut dns = Dns::new("localhost:7000").interval(Duration::from_millis(20));
        dns.next().await.unwrap().unwrap();
        // About 15 more lookups happen in this window, all with the same
        // answer.
        let more = tokio::time::timeout(Duration::from_millis(300), dns.next()).await;
        assert!(more.is_err(), "yielded an unchanged set again: {more:?}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_yields_errors_and_goes_on() {
        let mut dns = Dns::new("nonexistent.invalid:1").interval(Duration::from_millis(20));
        for _ in 0..2 {
            let err = dns.next().await.unwrap().unwrap_err();
            assert!(matches!(err, Error::Io { .. }), "{err:?}");
            assert!(err.to_string().contains("nonexistent.invalid:1"), "{err}");
        }
    }

    #[test]
    fn the_interval_defaults_to_five_seconds() {
        let dns = Dns::new("localhost:1");
        assert_eq!(dns.interval, Duration::from_secs(5));
        assert_eq!(
            dns.interval(Duration::ZERO).interval,
            Duration::from_millis(1)
        );
    }
}
