//! A private trait: the client and server are generated with its visibility,
//! and nothing warns about private items leaking (or about missing docs).

#![deny(warnings, private_interfaces, private_bounds, missing_docs, unreachable_pub)]

mod inner {
    #[rpc::service]
    trait Secret {
        async fn whisper(&self) -> String;
    }

    struct Impl;
    impl Secret for Impl {
        async fn whisper(&self) -> String {
            "psst".into()
        }
    }

    pub(crate) async fn run() -> Result<String, rpc::Error> {
        let server = rpc::Server::builder()
            .add_service(SecretServer::new(Impl))
            .bind("127.0.0.1:0")
            .await?;
        let client = SecretClient::connect(server.local_addr()).await?;
        let out = client.whisper().await?;
        server.shutdown().await;
        Ok(out)
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(inner::run().await.unwrap(), "psst");
}
