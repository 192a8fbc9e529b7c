#[rpc::service]
pub trait Svc {
    async fn get(&self, #[rpc(shard)] a: String) -> u64;
}

fn main() {}
