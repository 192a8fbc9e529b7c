#[rpc::service]
pub trait Svc {
    async fn get(&self, #[rpc(key)] a: String, #[rpc(key)] b: String) -> u64;
}

fn main() {}
