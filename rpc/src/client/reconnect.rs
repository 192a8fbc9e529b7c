//! Reconnecting: one connection attempt at a time, spaced by the backoff, and
//! never holding a caller past its deadline.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::connection::Connection;
use super::endpoint::Endpoint;
use crate::Error;

/// How an endpoint gets a new connection.
pub(super) struct Reconnect {
    backoff: Backoff,
    /// The attempt in progress, shared by every caller waiting for it.
    attempt: Option<Attempt>,
}

impl Reconnect {
    pub(super) fn new(backoff: Backoff) -> Self {
        Reconnect {
            backoff,
            attempt: None,
        }
    }
}

/// A connection attempt running as its own task: callers wait for it as long
/// as their deadlines allow, and it runs to its end (connect and handshake
/// timeouts) whoever still waits, so its outcome always reaches the backoff.
type Attempt = Shared<BoxFuture<'static, Result<Arc<Connection>, Arc<str>>>>;

impl Endpoint {
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
                        return Err(Error::disconnected(method, why));
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
            Ok(Err(e)) => Err(Error::disconnected(
                method,
                format!("reconnecting failed: {e}"),
            )),
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
            let result = endpoint.open().await;
            let mut reconnect = endpoint.reconnect.lock().unwrap_or_else(|e| e.into_inner());
            reconnect.attempt = None;
            match result {
                Ok(conn) => {
                    reconnect.backoff.succeeded();
                    endpoint.replace(conn.clone());
                    Ok(conn)
                }
                Err(e) => {
                    reconnect.backoff.failed(e.to_string());
                    Err(Arc::from(e.to_string()))
                }
            }
        });
        async move {
            task.await
                .unwrap_or_else(|_| Err(Arc::from("the connection attempt was aborted")))
        }
        .boxed()
        .shared()
    }
}
