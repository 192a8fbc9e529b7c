//! Metrics through the `metrics` facade, exported for Prometheus: a server
//! and a client in one process, a few calls, then the scrape a Prometheus
//! server would read, printed.
//!
//! `cargo run -p rpc-suite --features metrics --example metrics`
//!
//! The recorder here is metrics-exporter-prometheus's, without its HTTP
//! listener; a real service would serve `handle.render()` on `/metrics`
//! (or turn on the exporter's `http-listener` feature).

use rpc_suite::calculator::{Calc, CalculatorClient, CalculatorServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;

    let server = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .bind("127.0.0.1:0")
        .await?;
    let calc = CalculatorClient::connect(server.local_addr()).await?;
    for i in 0..10 {
        calc.add(i, i).await?;
    }
    let _ = calc.div(1, 0).await?; // an application error: still an Ok call
    println!("{}", handle.render());
    server.shutdown().await;
    Ok(())
}
