//! The server half of a two-process example. Stops gracefully on ctrl-c
//! (SIGINT) or SIGTERM: in-flight calls finish, new ones are refused.
//!
//! ```text
//! cargo run --example server -- 127.0.0.1:7878
//! cargo run --example client -- 127.0.0.1:7878
//! ```

use rpc_suite::calculator::{Calc, CalculatorServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let server = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .bind(addr.as_str())
        .await?;
    println!(
        "serving Calculator on {}; ctrl-c to stop",
        server.local_addr()
    );

    shutdown_signal().await;
    println!("draining in-flight calls...");
    server.shutdown().await;
    println!("stopped");
    Ok(())
}

/// Resolves on ctrl-c, or on SIGTERM where there is one (what Kubernetes and
/// systemd send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
