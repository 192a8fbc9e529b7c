//! Reconnecting: one connection attempt at a time, spaced by the backoff, and
//! never holding a caller past its deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::Inner;
use super::backoff::Backoff;
use super::connection::Connection;
use crate::Error;

/// How a channel gets a new connection.
pub(super) struct Reconnect {
    pub(super) backoff: Backoff,
    /// The attempt in progress, shared by every caller waiting for it.
    pub(super) attempt: Option<Attempt>,
}

/// A connection attempt running as its own task: callers wait for it as long
/// as their deadlines allow, and it runs to its end (connect and handshake
/// timeouts) whoever still waits, so its outcome always reaches the backoff.
pub(super) type Attempt = Shared<BoxFuture<'static, Result<Arc<Connection>, Arc<str>>>>;

impl Inner {
    /// A live connection: the current one, or a new one (one attempt at a
    /// time, spaced by the backoff). Waits no longer than `deadline`.
    pub(super) async fn connection(
        self: &Arc<Self>,
        method: &'static str,
        deadline: Instant,
    ) -> Result<Arc<Connection>, Error> {
        let attempt = loop {
            if let Some(conn) = self.usable() {
                return Ok(conn);
            }
            let wait_until = {
                let mut reconnect = self.reconnect.lock().unwrap();
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
        let inner = self.clone();
        let task = tokio::spawn(async move {
            let result = Connection::connect(&inner.addrs, &inner.config).await;
            let mut reconnect = inner.reconnect.lock().unwrap();
            reconnect.attempt = None;
            match result {
                Ok(conn) => {
                    conn.serve(&inner);
                    reconnect.backoff.succeeded();
                    let mut current = inner.current.lock().unwrap();
                    *current = Some(conn.clone());
                    inner.generation.fetch_add(1, Ordering::Relaxed);
                    drop(current);
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
