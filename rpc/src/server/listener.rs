//! The accept loop: one task per server, over any transport's listener.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{Shared, connection};
use crate::transport::{Link, Listener};

/// Accepts until a drain starts. At the connection cap it stops accepting
/// (new connections wait in the OS backlog); accept errors such as EMFILE are
/// waited out, never fatal.
pub(super) async fn run<L: Listener>(mut listener: L, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut error_pause = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = shared.drain.cancelled() => return,
            permit = slots.clone().acquire_owned() => permit.expect("never closed"),
        };
        let accepted = tokio::select! {
            _ = shared.drain.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let setup = match accepted {
            Ok(conn) => {
                error_pause = Duration::from_millis(5);
                conn
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS clear up when connections close; a
                // per-connection error (ECONNABORTED) costs one short pause.
                tracing::warn!(error = %e, "accept failed; pausing {error_pause:?}");
                tokio::select! {
                    _ = shared.drain.cancelled() => return,
                    _ = tokio::time::sleep(error_pause) => {}
                }
                error_pause = (error_pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let shared2 = shared.clone();
        shared.connections.spawn(async move {
            if let Some(link) = set_up(setup, &shared2).await {
                connection::serve(link, shared2).await;
            }
            drop(permit);
        });
    }
}

/// Finishes what the transport does to set a connection up (a TLS
/// handshake, say) in the connection's own task, within the handshake
/// timeout: a peer that stalls it holds up only itself, never the accept
/// loop.
async fn set_up<F>(setup: F, shared: &Shared) -> Option<Link>
where
    F: Future<Output = std::io::Result<Link>>,
{
    let timeout = shared.config.handshake_timeout;
    let done = tokio::select! {
        done = tokio::time::timeout(timeout, setup) => done,
        _ = shared.drain.cancelled() => return None,
    };
    match done {
        Ok(Ok(link)) => Some(link),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "setting up a connection failed");
            None
        }
        Err(_) => {
            tracing::debug!("a connection was not set up within {timeout:?}");
            None
        }
    }
}
