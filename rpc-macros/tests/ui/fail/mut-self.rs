#[rpc::service]
pub trait Svc {
    async fn bump(&mut self) -> u32;
}

fn main() {}
