//! The health service every server answers, so that a balancer, a load
//! balancer's prober or an orchestrator can ask a server whether to send it
//! calls, with this library's own client.
//!
//! Every [`Server`](crate::Server) serves [`Health`] (as `RpcHealth` on the
//! wire) next to its own services, unless it was given one of its own. A
//! check names a service by its wire name, or `""` for the whole server,
//! and is answered from the server's [`Reporter`], which the application
//! sets through [`ServerHandle::health`](crate::ServerHandle::health):
//!
//! ```
//! use rpc::health::{HealthClient, ServingStatus};
//!
//! #[rpc::service]
//! pub trait Echo { async fn echo(&self, s: String) -> String; }
//! struct E;
//! impl Echo for E { async fn echo(&self, s: String) -> String { s } }
//!
//! # #[tokio::main] async fn main() -> Result<(), rpc::Error> {
//! let server = rpc::Server::builder().add_service(EchoServer::new(E)).bind("127.0.0.1:0").await?;
//! let health = HealthClient::connect(server.local_addr()).await?;
//! assert_eq!(health.check("".into()).await?, ServingStatus::Serving);       // the whole server
//! assert_eq!(health.check("Echo".into()).await?, ServingStatus::Serving);   // one service
//! assert_eq!(health.check("Nope".into()).await?, ServingStatus::Unknown);   // not served here
//!
//! server.health().set("Echo", ServingStatus::NotServing);  // say, its database is down
//! assert_eq!(health.check("Echo".into()).await?, ServingStatus::NotServing);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Shutting down
//!
//! A graceful [`shutdown`](crate::ServerHandle::shutdown) first sets the
//! whole server and every service `NotServing` (for good: later `set`s are
//! ignored), then drains. What a prober sees:
//!
//! - during the [`shutdown_delay`](crate::server::Builder::shutdown_delay)
//!   (none by default), the server still serves every call, and a check
//!   answers `NotServing`: a balancer moves its calls elsewhere before any
//!   connection is drained;
//! - once draining, every connection has been sent GoAway and refuses new
//!   calls, checks included, and the server accepts no new connection: a
//!   check fails with an error that [`is_retryable`](crate::Error::is_retryable)
//!   and did not run (the connection refused, or `ShuttingDown`). Either
//!   way, the endpoint is not to be sent calls;
//! - in-process, [`Reporter::get`] says `NotServing` from the start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The service's name on the wire.
pub const SERVICE_NAME: &str = "RpcHealth";

/// Whether a server, or one of its services, wants calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServingStatus {
    /// Ready for calls.
    Serving,
    /// Up, but do not send calls: shutting down, or the application said so.
    NotServing,
    /// The server does not serve a service of that name.
    Unknown,
}

/// Answers whether the server, or one of its services, wants calls.
#[crate::service(name = "RpcHealth")]
pub trait Health {
    /// The status of `service` (its wire name), or of the whole server
    /// for `""`.
    async fn check(&self, service: String) -> ServingStatus;
}

/// The statuses a server's [`Health`] service reports, shared by the
/// server and the application: clones set and read the same statuses.
///
/// Each served service, and the whole server (`""`), start `Serving`. They
/// are independent: a service set `NotServing` leaves the others and the
/// whole server as they were (use [`set_all`](Self::set_all) for all).
#[derive(Debug, Clone)]
pub struct Reporter {
    inner: Arc<Mutex<Statuses>>,
}

#[derive(Debug)]
struct Statuses {
    /// By service name; `""` is the whole server.
    by_name: HashMap<String, ServingStatus>,
    /// Set when the server starts shutting down: nothing changes after.
    shutting_down: bool,
}

impl Reporter {
    /// A reporter for a server serving `services`, all `Serving`.
    pub(crate) fn new<'a>(services: impl IntoIterator<Item = &'a str>) -> Reporter {
        let by_name = std::iter::once("")
            .chain(services)
            .map(|name| (name.to_owned(), ServingStatus::Serving))
            .collect();
        Reporter {
            inner: Arc::new(Mutex::new(Statuses {
                by_name,
                shutting_down: false,
            })),
        }
    }

    /// Sets the status of `service` (a wire name; `""` for the whole
    /// server). A name the server does not serve is added: checks of it
    /// then answer `status` (a part of the application it reports on, say).
    /// Ignored once the server has started shutting down.
    pub fn set(&self, service: &str, status: ServingStatus) {
        let mut statuses = self.statuses();
        if !statuses.shutting_down {
            statuses.by_name.insert(service.to_owned(), status);
        }
    }

    /// Sets the whole server and every service to `status`. Ignored once
    /// the server has started shutting down.
    pub fn set_all(&self, status: ServingStatus) {
        let mut statuses = self.statuses();
        if !statuses.shutting_down {
            statuses.by_name.values_mut().for_each(|s| *s = status);
        }
    }

    /// The status of `service` (`""`: the whole server), as a check answers
    /// it: `Unknown` for a name the server does not serve.
    pub fn get(&self, service: &str) -> ServingStatus {
        let statuses = self.statuses();
        let status = statuses.by_name.get(service);
        status.copied().unwrap_or(ServingStatus::Unknown)
    }

    /// Everything `NotServing`, for good: the server is shutting down, and
    /// an application's periodic `set(.., Serving)` must not undo that.
    pub(crate) fn shut_down(&self) {
        let mut statuses = self.statuses();
        statuses
            .by_name
            .values_mut()
            .for_each(|s| *s = ServingStatus::NotServing);
        statuses.shutting_down = true;
    }

    fn statuses(&self) -> MutexGuard<'_, Statuses> {
        // Nothing panics while holding it: a poisoned lock holds whole statuses.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The server's own [`Health`]: answers from its [`Reporter`].
#[derive(Debug)]
pub(crate) struct Checker {
    pub(crate) reporter: Reporter,
}

impl Health for Checker {
    async fn check(&self, service: String) -> ServingStatus {
        self.reporter.get(&service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServingStatus::*;

    #[test]
    fn statuses_start_serving_and_are_set_one_or_all() {
        let reporter = Reporter::new(["A", "B"]);
        assert_eq!(
            ["", "A", "B", "C"].map(|n| reporter.get(n)),
            [Serving, Serving, Serving, Unknown]
        );
        reporter.set("A", NotServing);
        assert_eq!(
            ["", "A", "B"].map(|n| reporter.get(n)),
            [Serving, NotServing, Serving]
        );
        reporter.set_all(NotServing);
        reporter.set("", Serving);
        assert_eq!(
            ["", "A", "B"].map(|n| reporter.get(n)),
            [Serving, NotServing, NotServing]
        );
    }

    #[test]
    fn a_shutdown_is_final() {
        let reporter = Reporter::new(["A"]);
        reporter.shut_down();
        reporter.set("A", Serving);
        reporter.set_all(Serving);
        assert_eq!(["", "A"].map(|n| reporter.get(n)), [NotServing, NotServing]);
    }
}
