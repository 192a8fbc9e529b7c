//! A TLS server and client in one process, with certificates made on the
//! spot (a CA of our own signs the server's): the client trusts the CA and
//! checks the server's name.
//!
//! ```text
//! cargo run --example tls --features tls
//! ```
//!
//! With certificates from files, the server's config is
//! `rpc::tls::server_config_from_pem("server.crt", "server.key")?` and the
//! client's `rpc::tls::client_config(rpc::tls::certificates_from_pem("ca.crt")?)?`.

use rpc_suite::calculator::{Calc, CalculatorClient, CalculatorServer};
use rpc_suite::certs::{Ca, Validity};

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let ca = Ca::new("example CA");
    let identity = ca.server(&["localhost"], Validity::Current);

    let server = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .tls(rpc::tls::server_config(
            identity.chain.clone(),
            identity.key(),
        )?)
        .bind("127.0.0.1:0")
        .await?;
    println!("server: serving TLS on {}", server.local_addr());

    let config = rpc::tls::client_config(vec![ca.certificate()])?;
    let channel = rpc::Channel::connect_tls(server.local_addr(), config, "localhost").await?;
    println!("client: connected to {}", channel.peer());
    let calc = CalculatorClient::new(channel);
    println!("client: add(2, 3) = {}", calc.add(2, 3).await?);

    server.shutdown().await;
    Ok(())
}
