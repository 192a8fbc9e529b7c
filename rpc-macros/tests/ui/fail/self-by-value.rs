#[rpc::service]
pub trait Svc {
    async fn consume(self) -> u32;
}

fn main() {}
