//! Methods without arguments.

#![deny(warnings)]

#[rpc::service]
pub trait Clock {
    async fn now(&self) -> u64;
    async fn name(&self) -> String;
}

struct Fixed;
impl Clock for Fixed {
    async fn now(&self) -> u64 {
        7
    }
    async fn name(&self) -> String {
        "fixed".into()
    }
}

#[allow(dead_code)]
async fn client_calls(client: &ClockClient) -> Result<(u64, String), rpc::Error> {
    Ok((client.now().await?, client.name().await?))
}

#[tokio::main]
async fn main() {
    assert_eq!(Fixed.now().await, 7);
    assert_eq!(Fixed.name().await, "fixed");
}
