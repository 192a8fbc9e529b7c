#[rpc::service]
pub trait Svc {
    const LIMIT: u32;
    async fn get(&self) -> u32;
}

fn main() {}
