#[rpc::service]
pub trait Svc {
    async fn clone(&self) -> u32;
}

fn main() {}
