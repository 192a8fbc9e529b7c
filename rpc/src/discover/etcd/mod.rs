//! Discovery through etcd (feature `etcd`): servers register a key under a
//! prefix, clients read the prefix and watch it.
//!
//! - A server calls [`Registration::register`]: it puts its key under a lease
//!   and keeps the lease alive from a background task. On graceful shutdown
//!   it calls [`Registration::deregister`], which revokes the lease (and so
//!   deletes the key) at once; a server that dies without doing so (SIGKILL,
//!   a lost machine) disappears when its lease expires, one TTL after its
//!   last keep-alive.
//! - A client makes an [`Etcd`] source for the prefix and hands it to a
//!   balanced channel.
//!
//! # The value of a key
//!
//! UTF-8 text: an address, then optional space-separated `name=value`
//! attributes:
//!
//! ```text
//! 127.0.0.1:7001
//! 10.0.0.7:7001 weight=3
//! calc-2.internal:7001 weight=2
//! ```
//!
//! The address is read as the [module docs](super#addresses-as-strings)
//! say (a name is resolved when the key is read or changes, and gives all
//! its addresses). `weight` (at least 1; default 1) is the only attribute
//! read; others are ignored, so that registrations can add some without
//! breaking older clients. A key whose value cannot be read, or whose name
//! does not resolve, is left out of the set (with a warning in the log):
//! one bad registration does not take the others away. [`value`] writes a
//! value in this form.
//!
//! # Example
//!
//! ```no_run
//! use rpc::discover::etcd::{Etcd, Registration};
//! use std::time::Duration;
//!
//! # async fn run(server: rpc::ServerHandle) -> Result<(), rpc::Error> {
//! let etcd = vec!["http://127.0.0.1:2379".to_string()];
//!
//! // Server side: advertise an address clients can reach (not 0.0.0.0).
//! let me = Registration::register(
//!     etcd.clone(),
//!     "/services/calc/host-a",
//!     server.local_addr().to_string(),
//!     Duration::from_secs(10),
//! )
//! .await?;
//! // On SIGTERM: leave the set first, so clients stop picking this
//! // server, then let the calls in flight finish.
//! me.deregister().await?;
//! server.shutdown().await;
//!
//! // Client side: every server under the prefix, kept up to date.
//! let source = Etcd::new(etcd, "/services/calc/");
//! # let _ = source;
//! # Ok(()) }
//! ```

mod registration;
mod watch;

use super::resolve::AddrSpec;
use super::{SetStream, Target};
use crate::Error;
use futures::stream::{self, Stream, StreamExt};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub use registration::Registration;

/// How long connecting to etcd, and each read, may take before the attempt
/// counts as failed (the client's connect timeout, for the same reason: a
/// dead peer is noticed in seconds).
const ETCD_TIMEOUT: Duration = Duration::from_secs(5);

/// The servers registered under a key prefix in etcd, kept up to date.
///
/// When first polled, the source connects, reads every key under the prefix
/// and yields the whole set; then it watches the prefix from the revision
/// it read (so no change in between is missed) and yields the whole set
/// after each change. Each value is an address, optionally with a weight:
/// see [the value format](self#the-value-of-a-key).
///
/// If etcd cannot be reached, or the watch breaks (etcd restarted, the
/// revision was compacted), the source yields the error and connects and
/// reads again, after 200 ms growing to 5 s between attempts; the balanced
/// channel keeps its last set meanwhile. An empty prefix yields an empty
/// set, which the balanced channel also takes as "keep the last set".
pub struct Etcd {
    endpoints: Vec<String>,
    prefix: String,
    inner: SetStream,
}

impl Etcd {
    /// The servers under `prefix` in the etcd cluster at `endpoints`
    /// (`"http://127.0.0.1:2379"` or `"127.0.0.1:2379"`). Nothing happens
    /// until the stream is first polled.
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let watcher = watch::Watcher::new(endpoints.clone(), prefix.clone());
        let inner = stream::unfold(watcher, |mut w| async move {
            let item = w.next_set().await;
            Some((item, w))
        })
        .boxed();
        Etcd {
            endpoints,
            prefix,
            inner,
        }
    }
}

impl Stream for Etcd {
    type Item = Result<Vec<Target>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A key's value in the [format](self#the-value-of-a-key) [`Etcd`] reads:
/// `"10.0.0.7:7001"`, or with a weight other than 1,
/// `"10.0.0.7:7001 weight=3"`.
pub fn value(address: impl fmt::Display, weight: u32) -> String {
    if weight <= 1 {
        address.to_string()
    } else {
        format!("{address} weight={weight}")
    }
}

/// Reads a key's value.
fn parse_value(value: &str) -> Result<AddrSpec, String> {
    let mut words = value.split_whitespace();
    let address = words.next().ok_or("the value is empty")?;
    let mut spec = AddrSpec::from(address);
    for word in words {
        if let Some(w) = word.strip_prefix("weight=") {
            let w: u32 = w
                .parse()
                .map_err(|_| format!("`{word}`: the weight must be a whole number from 1"))?;
            spec = spec.with_weight(w);
        }
    }
    Ok(spec)
}

/// An etcd failure as an [`Error::Io`], saying what was being done.
fn etcd_error(what: &str, endpoints: &[String], e: etcd_client::Error) -> Error {
    Error::Io {
        method: None,
        context: format!("etcd at {}: {what}", endpoints.join(",")),
        source: std::io::Error::other(e),
    }
}

/// A stream that ended or broke without an error of etcd's, as an
/// [`Error::Io`].
fn aborted(what: &str, endpoints: &[String], why: &str) -> Error {
    Error::Io {
        method: None,
        context: format!("etcd at {}: {what}", endpoints.join(",")),
        source: std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why.to_owned()),
    }
}

/// A step that took longer than [`ETCD_TIMEOUT`], as an [`Error::Io`].
fn timed_out(what: &str, endpoints: &[String]) -> Error {
    Error::Io {
        method: None,
        context: format!("etcd at {}: {what}", endpoints.join(",")),
        source: std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {ETCD_TIMEOUT:?}"),
        ),
    }
}

/// Runs one etcd request within [`ETCD_TIMEOUT`].
async fn within<T>(
    what: &str,
    endpoints: &[String],
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(ETCD_TIMEOUT, request).await {
        Ok(result) => result.map_err(|e| etcd_error(what, endpoints, e)),
        Err(_) => Err(timed_out(what, endpoints)),
    }
}

/// Connects a client to etcd. HTTP/2 keepalive pings notice an etcd that
/// went silent (a lost machine, not just a closed socket) within 15 s, so a
/// watch never waits forever on a dead connection.
async fn connect(endpoints: &[String]) -> Result<etcd_client::Client, Error> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(ETCD_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    within(
        "connecting",
        endpoints,
        etcd_client::Client::connect(endpoints, Some(options)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    async fn targets(value: &str) -> Vec<Target> {
        parse_value(value).unwrap().resolve().await.unwrap()
    }

    #[tokio::test]
    async fn values_are_an_address_and_optional_attributes() {
        let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(targets("127.0.0.1:7001").await, vec![Target::from(a)]);
        assert_eq!(
            targets(" 127.0.0.1:7001  weight=3 zone=b\n").await,
            vec![Target::from(a).with_weight(3)]
        );
        assert_eq!(
            targets(&value(a, 3)).await,
            vec![Target::from(a).with_weight(3)]
        );
        assert_eq!(value(a, 1), "127.0.0.1:7001");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse_value("  ").is_err());
        assert!(parse_value("127.0.0.1:1 weight=x").is_err());
        assert!(parse_value("127.0.0.1:1 weight=-1").is_err());
    }
}
