//! Starts a server and calls it, in one process.
//!
//! ```text
//! cargo run --example hello
//! ```

use std::time::Duration;

use rpc_suite::calculator::{Calc, CalculatorClient, CalculatorServer, MathError};

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let server = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .bind("127.0.0.1:0")
        .await?;
    println!("server: listening on {}", server.local_addr());

    let calc = CalculatorClient::connect(server.local_addr()).await?;
    println!("client: connected");

    let sum = calc.add(2, 3).await?;
    println!("client: add(2, 3) = {sum}");

    let quotient = calc.div(7, 2).await?;
    println!("client: div(7, 2) = {quotient:?}");

    // The application's own error arrives typed, inside Ok.
    let by_zero: Result<i64, MathError> = calc.div(1, 0).await?;
    println!("client: div(1, 0) = {by_zero:?}");

    // A client handle with a deadline, on the same connection.
    let quick = calc.with_timeout(Duration::from_millis(50));
    quick.ping().await?;
    println!("client: ping with a 50 ms deadline: ok");

    // Calls are multiplexed: a thousand at once on one connection.
    let calls = (0..1000).map(|i| calc.add(i, i));
    let sums = futures_join_all(calls).await?;
    println!("client: 1000 concurrent adds, last = {}", sums[999]);

    server.shutdown().await;
    println!("server: shut down gracefully");
    Ok(())
}

/// Awaits all futures concurrently (each call future is `Send + 'static`, so
/// they could as well be spawned).
async fn futures_join_all<F, T>(calls: impl Iterator<Item = F>) -> Result<Vec<T>, rpc::Error>
where
    F: std::future::Future<Output = Result<T, rpc::Error>> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("call task panicked")?);
    }
    Ok(out)
}
