#[rpc::service]
pub trait Svc {
    async fn find(&self, name: Option<&str>) -> u32;
}

fn main() {}
