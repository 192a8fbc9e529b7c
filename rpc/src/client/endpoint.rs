//! One server, as a channel sees it: how to reach it (a [`Connector`]), the
//! connection in use, and reconnecting when that one dies or the server
//! drains it: one connection attempt at a time, spaced by the backoff, and
//! never holding a caller past its deadline. A channel over many servers
//! keeps one of these per server it spreads calls over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::Config;
use super::backoff::Backoff;
use super::connection::Connection;
use crate::Error;
use crate::transport::{Address, Connector};

pub(crate) struct Endpoint {
    connector: Box<dyn Connector>,
    pub(super) config: Config,
    /// The connection calls go to; replaced by a reconnect. None until the
    /// first connection of an endpoint made without one (a balanced
    /// channel's: its servers may be down when it learns of them).
    current: Mutex<Option<Arc<Connection>>>,
    /// How many times `current` was replaced (see [`Known`]).
    generation: AtomicU64,
    /// One connection attempt at a time, spaced by the backoff.
    reconnect: Mutex<Reconnect>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.connector.address())
            .finish_non_exhaustive()
    }
}

/// How an endpoint gets a new connection.
struct Reconnect {
    backoff: Backoff,
    /// The attempt in progress, shared by every caller waiting for it.
    attempt: Option<Attempt>,
}

impl Reconnect {
    fn new(backoff: Backoff) -> Self {
        Reconnect {
            backoff,
            attempt: None,
        }
    }
}

/// A connection attempt running as its own task: callers wait for it as long
/// as their deadlines allow, and it runs to its end (connect and handshake
/// timeouts) whoever still waits, so its outcome always reaches the backoff.
type Attempt = Shared<BoxFuture<'static, Result<Arc<Connection>, AttemptFailed>>>;

/// Why a connection attempt gave no connection. Shared by every caller that
/// waited for it: each reports its own copy, naming its method.
#[derive(Clone)]
enum AttemptFailed {
    /// Opening the connection failed.
    Open(Arc<Error>),
    /// The attempt's task panicked or was cancelled.
    Aborted,
}

impl Endpoint {
    /// Connects for the first time: an error here is the caller's, with no
    /// reconnect behind it.
    pub(super) async fn connect(
        connector: Box<dyn Connector>,
        config: Config,
    ) -> Result<Arc<Endpoint>, Error> {
        let conn = open(connector.as_ref(), &config).await?;
        let endpoint = Endpoint::unconnected(connector, config);
        *endpoint.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        Ok(endpoint)
    }

    /// An endpoint with no connection yet: the first call (or
    /// [`warm`](Self::warm)) connects.
    pub(super) fn unconnected(connector: Box<dyn Connector>, config: Config) -> Arc<Endpoint> {
        let backoff = Backoff::new(config.backoff_initial, config.backoff_max);
        Arc::new(Endpoint {
            connector,
            config,
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            reconnect: Mutex::new(Reconnect::new(backoff)),
        })
    }

    /// The connection in use, whatever its state: a call tries it first.
    #[inline]
    pub(super) fn current(&self) -> Option<Arc<Connection>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The connection in use, if it takes calls.
    pub(super) fn usable(&self) -> Option<Arc<Connection>> {
        self.current().filter(|c| c.takes_calls())
    }

    /// Starts connecting unless a connection is in use or being made (or the
    /// backoff says not yet); the outcome reaches the backoff as for a
    /// call's attempt. Returns the attempt to wait for, if one runs.
    pub(super) fn warm(self: &Arc<Self>) -> Option<impl Future<Output = bool> + use<>> {
        if self.usable().is_some() {
            return None;
        }
        let mut reconnect = self.reconnect.lock().unwrap_or_else(|e| e.into_inner());
        let attempt = match &reconnect.attempt {
            Some(attempt) => attempt.clone(),
            None if reconnect.backoff.retry_at().is_some() => return None,
            None => {
                let attempt = self.start_attempt();
                reconnect.attempt = Some(attempt.clone());
                attempt
            }
        };
        Some(async move { attempt.await.is_ok() })
    }

    /// Makes `conn` the connection in use; returns the one it replaces, to
    /// drop once no lock is held (dropping it stops its tasks).
    #[must_use]
    fn replace(&self, conn: Arc<Connection>) -> Option<Arc<Connection>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let old = current.replace(conn);
        self.generation.fetch_add(1, Ordering::Relaxed);
        old
    }

    /// The connection in use now, to remember in a handle.
    pub(super) fn known(&self) -> Known {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        Known {
            conn: current.as_ref().map_or_else(Weak::new, Arc::downgrade),
            // Read under the lock that `replace` bumps it under.
            generation: self.generation.load(Ordering::Relaxed),
        }
    }

    /// `known` if it is still the connection in use, else the one now.
    pub(super) fn refresh(&self, known: &Known) -> Known {
        if self.generation.load(Ordering::Relaxed) == known.generation {
            known.clone()
        } else {
            self.known()
        }
    }

    /// `known`'s connection if it is still the one in use: no lock taken.
    /// A stale answer (replaced just now) only sends a call to a connection
    /// that no longer takes calls; the call then goes elsewhere.
    #[inline]
    pub(super) fn still(&self, known: &Known) -> Option<Arc<Connection>> {
        if self.generation.load(Ordering::Relaxed) == known.generation {
            known.conn.upgrade()
        } else {
            None
        }
    }

    /// Opens a new connection to the server, not yet in use.
    async fn open(&self) -> Result<Arc<Connection>, Error> {
        open(self.connector.as_ref(), &self.config).await
    }

    /// Where the server is.
    pub(super) fn address(&self) -> Address {
        self.connector.address()
    }

    /// A connection that takes calls: the current one, or a new one (one
    /// attempt at a time, spaced by the backoff). Waits no longer than
    /// `deadline`.
    pub(super) async fn connection(
        self: Arc<Self>,
        method: &'static str,
        deadline: Instant,
    ) -> Result<Arc<Connection>, Error> {
        let attempt = loop {
            if let Some(conn) = self.usable() {
                return Ok(conn);
            }
            let wait_until = {
                let mut reconnect = self.reconnect.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(attempt) = &reconnect.attempt {
                    break attempt.clone();
                }
                // An attempt may have installed a connection since we looked:
                // it does so under this lock, so a second look here is final
                // (without it, two callers could open two connections).
                if let Some(conn) = self.usable() {
                    return Ok(conn);
                }
                match reconnect.backoff.retry_at() {
                    Some(wait_until) if wait_until > deadline => {
                        let why = reconnect.backoff.describe(wait_until);
                        return Err(Error::disconnected(method, why, false));
                    }
                    Some(wait_until) => wait_until,
                    None => {
                        let attempt = self.start_attempt();
                        reconnect.attempt = Some(attempt.clone());
                        break attempt;
                    }
                }
            };
            tokio::time::sleep_until(wait_until).await;
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(AttemptFailed::Open(e))) => Err(e.for_call(method)),
            Ok(Err(AttemptFailed::Aborted)) => {
                let why = "the connection attempt panicked or was cancelled";
                Err(Error::disconnected(method, why, false))
            }
            Err(_) => Err(Error::DeadlineExceeded {
                method,
                budget: Duration::ZERO,
            }),
        }
    }

    /// Spawns a connection attempt that installs its connection, or records
    /// its failure in the backoff, when it ends.
    fn start_attempt(self: &Arc<Self>) -> Attempt {
        let endpoint = self.clone();
        let task = tokio::spawn(async move {
            let mut unfinished = Unfinished(Some(&endpoint));
            let result = endpoint.open().await;
            unfinished.0 = None;
            let mut reconnect = endpoint.reconnect.lock().unwrap_or_else(|e| e.into_inner());
            reconnect.attempt = None;
            match result {
                Ok(conn) => {
                    reconnect.backoff.succeeded();
                    let old = endpoint.replace(conn.clone());
                    drop(reconnect);
                    drop(old);
                    Ok(conn)
                }
                Err(e) => {
                    reconnect.backoff.failed(e.to_string());
                    Err(AttemptFailed::Open(Arc::new(e)))
                }
            }
        });
        async move { task.await.unwrap_or(Err(AttemptFailed::Aborted)) }
            .boxed()
            .shared()
    }
}

/// An attempt that has not finished: if it never does (the connector
/// panicked, or the runtime running it shut down), the endpoint forgets it
/// and backs off, so that a later call starts another instead of waiting on
/// this one for ever.
struct Unfinished<'a>(Option<&'a Endpoint>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(endpoint) = self.0 {
            let mut reconnect = endpoint.reconnect.lock().unwrap_or_else(|e| e.into_inner());
            reconnect.attempt = None;
            let why = "the connection attempt panicked or was cancelled";
            reconnect.backoff.failed(why.to_string());
        }
    }
}

/// The connection a handle saw in use when it was made: its calls take it
/// without locking [`Endpoint::current`] while it is still in use. Weak, so
/// a handle does not keep a replaced connection open.
#[derive(Debug, Clone)]
pub(super) struct Known {
    conn: Weak<Connection>,
    generation: u64,
}

/// Opens a link within the connect timeout and shakes hands over it.
async fn open(connector: &dyn Connector, config: &Config) -> Result<Arc<Connection>, Error> {
    let address = connector.address();
    let link = match tokio::time::timeout(config.connect_timeout, connector.connect()).await {
        Ok(Ok(link)) => link,
        Ok(Err(e)) => return Err(Error::io(format!("connecting to {address}"), e)),
        Err(_) => {
            let timed_out = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", config.connect_timeout),
            );
            return Err(Error::io(format!("connecting to {address}"), timed_out));
        }
    };
    // The handshake's errors name the server only as "the peer".
    Connection::start(link, config).await.map_err(|e| match e {
        Error::Protocol { method, message } => Error::Protocol {
            method,
            message: format!("the handshake with {address}: {message}"),
        },
        Error::Io {
            method,
            context,
            source,
        } => Error::Io {
            method,
            context: format!("{context} with {address}"),
            source,
        },
        e => e,
    })
}
