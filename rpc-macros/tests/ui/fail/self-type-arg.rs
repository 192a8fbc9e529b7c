#[rpc::service]
pub trait Svc {
    async fn merge(&self, other: Self) -> u32;
}

fn main() {}
