#[rpc::service]
pub trait Svc<T> {
    async fn get(&self) -> T;
}

fn main() {}
