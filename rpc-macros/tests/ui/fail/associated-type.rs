#[rpc::service]
pub trait Svc {
    type Item;
    async fn get(&self) -> u32;
}

fn main() {}
