#[rpc::service]
pub trait Svc {
    #[rpc(name = "get")]
    async fn get_v1(&self) -> u32;
    #[rpc(name = "get")]
    async fn get_v2(&self) -> u64;
}

fn main() {}
