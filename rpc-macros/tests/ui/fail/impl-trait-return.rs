#[rpc::service]
pub trait Svc {
    async fn items(&self) -> impl Iterator<Item = u32>;
}

fn main() {}
