#[rpc::service]
pub trait Svc {
    async fn free(x: u32) -> u32;
}

fn main() {}
