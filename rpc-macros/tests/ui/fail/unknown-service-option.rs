#[rpc::service(bogus = 1)]
pub trait Svc {
    async fn get(&self) -> u32;
}

fn main() {}
