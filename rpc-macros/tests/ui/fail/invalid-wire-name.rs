#[rpc::service]
pub trait Svc {
    #[rpc(name = "get.v2")]
    async fn get(&self) -> u32;
}

fn main() {}
