#[rpc::service]
pub trait Svc: Clone {
    async fn get(&self) -> u32;
}

fn main() {}
