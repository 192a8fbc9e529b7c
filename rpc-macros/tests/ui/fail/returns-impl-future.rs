use std::future::Future;

#[rpc::service]
pub trait Svc {
    fn get(&self) -> impl Future<Output = u32> + Send;
}

fn main() {}
