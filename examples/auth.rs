//! A token checked by a server interceptor and set once on the client: a
//! call without it is refused before its handler runs, and the handler
//! learns who called from the metadata the interceptor added.
//!
//! ```text
//! cargo run --example auth
//! ```

use rpc::intercept::{CallInfo, Interceptor, Rejection};
use rpc_suite::calculator::{Calc, CalculatorClient, CalculatorServer};

/// The server's check: `authorization: Bearer <token>` of a known user.
struct CheckToken;

impl Interceptor for CheckToken {
    async fn before(&self, call: &mut CallInfo) -> Result<(), Rejection> {
        let user = match call.metadata().get_str("authorization") {
            None => {
                return Err(Rejection::unauthenticated(
                    "send `authorization: Bearer <token>`",
                ));
            }
            Some("Bearer token-of-alice") => "alice",
            Some(_) => return Err(Rejection::permission_denied("unknown token")),
        };
        // The handler reads it with rpc::context::current().metadata().
        call.metadata_mut().insert("user", user);
        Ok(())
    }

    fn after(&self, call: &CallInfo, outcome: Result<(), &rpc::Error>) {
        let outcome = outcome.map_or_else(|e| e.to_string(), |()| "ok".into());
        println!(
            "server: {} took {:?}: {outcome}",
            call.method(),
            call.elapsed()
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let server = rpc::Server::builder()
        .interceptor(CheckToken)
        .add_service(CalculatorServer::new(Calc))
        .bind("127.0.0.1:0")
        .await?;

    // Without the token: refused, typed.
    let anonymous = CalculatorClient::connect(server.local_addr()).await?;
    match anonymous.add(2, 3).await {
        Err(rpc::Error::Unauthenticated { message, .. }) => {
            println!("client: without a token: unauthenticated ({message})");
        }
        other => panic!("expected Unauthenticated, got {other:?}"),
    }

    // The token set once: every call through this client carries it.
    let channel = rpc::Channel::connect(server.local_addr()).await?;
    let calc =
        CalculatorClient::new(channel.with_metadata("authorization", "Bearer token-of-alice"));
    println!("client: add(2, 3) = {}", calc.add(2, 3).await?);
    server.shutdown().await;
    Ok(())
}
