//! One server, as a channel sees it: how to reach it (a [`Connector`]), the
//! connection in use, and reconnecting when that one dies or the server
//! drains it (`reconnect.rs`). The balanced channel of a later issue keeps
//! one of these per server it spreads calls over.

use std::sync::{Arc, Mutex};

use super::Config;
use super::backoff::Backoff;
use super::connection::Connection;
use super::reconnect::Reconnect;
use crate::Error;
use crate::transport::{Address, Connector};

pub(crate) struct Endpoint {
    connector: Box<dyn Connector>,
    pub(super) config: Config,
    /// The connection calls go to; replaced by a reconnect.
    current: Mutex<Arc<Connection>>,
    /// One connection attempt at a time, spaced by the backoff.
    pub(super) reconnect: Mutex<Reconnect>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.connector.address())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Connects for the first time: an error here is the caller's, with no
    /// reconnect behind it.
    pub(super) async fn connect(
        connector: Box<dyn Connector>,
        config: Config,
    ) -> Result<Arc<Endpoint>, Error> {
        let conn = open(connector.as_ref(), &config).await?;
        let backoff = Backoff::new(config.backoff_initial, config.backoff_max);
        Ok(Arc::new(Endpoint {
            connector,
            config,
            current: Mutex::new(conn),
            reconnect: Mutex::new(Reconnect::new(backoff)),
        }))
    }

    /// The connection in use, whatever its state: a call tries it first.
    #[inline]
    pub(super) fn current(&self) -> Arc<Connection> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The connection in use, if it takes calls.
    pub(super) fn usable(&self) -> Option<Arc<Connection>> {
        Some(self.current()).filter(|c| c.takes_calls())
    }

    /// Makes `conn` the connection in use.
    pub(super) fn replace(&self, conn: Arc<Connection>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = conn;
    }

    /// Opens a new connection to the server, not yet in use.
    pub(super) async fn open(&self) -> Result<Arc<Connection>, Error> {
        open(self.connector.as_ref(), &self.config).await
    }

    /// Where the server is.
    pub(super) fn address(&self) -> Address {
        self.connector.address()
    }
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
    Connection::start(link, config).await
}
