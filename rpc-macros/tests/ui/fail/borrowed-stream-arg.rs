pub struct Chunk;

#[rpc::service]
pub trait Svc {
    async fn upload(&self, name: String, chunks: &rpc::Stream<Chunk>) -> u64;
}

fn main() {}
