pub struct Chunk;

#[rpc::service]
pub trait Svc {
    async fn upload(&self, #[rpc(key)] chunks: rpc::Stream<Chunk>) -> u64;
}

fn main() {}
