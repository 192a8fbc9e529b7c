#[rpc::service]
pub trait Svc {
    #[rpc(name = "a", name = "b")]
    async fn get(&self) -> u32;
}

fn main() {}
