#[rpc::service]
pub trait Svc {
    #[rpc(bogus)]
    async fn get(&self) -> u32;
}

fn main() {}
