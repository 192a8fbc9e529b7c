#[rpc::service]
pub trait Svc {
    #[rpc(blocking)]
    async fn hash(&self, data: Vec<u8>) -> u64;
}

fn main() {}
