//! [`ServerHandle`]: a running server, as `bind` returns it: where it
//! listens, its connections, its health reporter, and its shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Shared;
use crate::health::Reporter;
use crate::transport::Address;

/// A running server. Dropping the handle leaves the server running in the
/// background (until the runtime stops); call [`shutdown`](Self::shutdown) to
/// stop it gracefully.
#[derive(Debug)]
pub struct ServerHandle {
    pub(super) address: Address,
    pub(super) shared: Arc<Shared>,
    pub(super) health: Reporter,
    pub(super) accept: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The TCP address the server listens on (with the real port if `:0`
    /// was bound).
    ///
    /// # Panics
    ///
    /// If the server is not on TCP; [`address`](Self::address) says where
    /// any server serves.
    pub fn local_addr(&self) -> SocketAddr {
        match self.address.tcp() {
            Some(addr) => addr,
            None => panic!(
                "local_addr() of a server on {}: use address()",
                self.address
            ),
        }
    }

    /// Where the server serves: a TCP address, a Unix socket's path, an
    /// in-memory name.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.shared.connections.len()
    }

    /// The statuses the server's built-in health service reports (see
    /// [`rpc::health`](crate::health)): set them to tell probers and
    /// balancers whether to send calls here.
    pub fn health(&self) -> Reporter {
        self.health.clone()
    }

    /// Graceful shutdown: reports `NotServing` from the health service,
    /// waits the [`shutdown_delay`](super::Builder::shutdown_delay) (none by
    /// default) still serving, then stops accepting, sends GoAway on every
    /// connection, lets in-flight calls finish within the grace period (then
    /// drops the rest), and returns once every connection is closed. Calls
    /// that arrive after GoAway are refused with [`Error::ShuttingDown`](crate::Error::ShuttingDown) and
    /// never run.
    ///
    /// To stop on ctrl-c or SIGTERM, await the signal first:
    /// `tokio::signal::ctrl_c().await?; server.shutdown().await;`
    /// (see `examples/server.rs`).
    pub async fn shutdown(self) {
        self.health.shut_down();
        // Probers see NotServing while every call is still served, so
        // balancers can move away before connections drain.
        let delay = self.shared.config.shutdown_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.shared.drain.cancel();
        let _ = self.accept.await;
        self.shared.connections.close();
        if tokio::time::timeout(self.shared.config.grace, self.shared.connections.wait())
            .await
            .is_err()
        {
            self.shared.kill.cancel();
            self.shared.connections.wait().await;
        }
    }

    /// Stops at once: closes the listener and every connection without waiting
    /// for in-flight calls (their callers get [`Error::Disconnected`](crate::Error::Disconnected)).
    pub async fn abort(self) {
        self.health.shut_down();
        self.shared.kill.cancel();
        self.shared.drain.cancel();
        let _ = self.accept.await;
        self.shared.connections.close();
        self.shared.connections.wait().await;
    }
}
