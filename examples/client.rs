//! The client half of a two-process example (start `server` first).
//!
//! ```text
//! cargo run --example client -- 127.0.0.1:7878
//! ```

use std::time::Duration;

use rpc_suite::calculator::CalculatorClient;

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let calc = CalculatorClient::connect(addr.as_str()).await?;
    println!("connected to {addr}");

    println!("add(40, 2) = {}", calc.add(40, 2).await?);
    println!("div(9, 3) = {:?}", calc.div(9, 3).await?);
    println!("div(9, 0) = {:?}", calc.div(9, 0).await?);

    let quick = calc.with_timeout(Duration::from_millis(100));
    match quick.ping().await {
        Ok(()) => println!("ping within 100 ms: ok"),
        Err(e) => println!("ping: {e}"),
    }
    Ok(())
}
