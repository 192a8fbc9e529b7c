#[rpc::service]
pub trait Svc
where
    Self: Clone,
{
    async fn get(&self) -> u32;
}

fn main() {}
