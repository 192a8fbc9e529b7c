#[rpc::service]
pub trait Svc {
    async fn boxed(self: Box<Self>) -> u32;
}

fn main() {}
