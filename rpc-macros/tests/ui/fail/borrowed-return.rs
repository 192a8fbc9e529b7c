#[rpc::service]
pub trait Svc {
    async fn name(&self) -> &str;
}

fn main() {}
