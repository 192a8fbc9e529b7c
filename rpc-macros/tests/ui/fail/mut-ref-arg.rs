#[rpc::service]
pub trait Svc {
    async fn fill(&self, out: &mut Vec<u8>);
}

fn main() {}
