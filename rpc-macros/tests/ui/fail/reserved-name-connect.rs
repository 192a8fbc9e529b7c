#[rpc::service]
pub trait Svc {
    async fn connect(&self, host: String) -> bool;
}

fn main() {}
