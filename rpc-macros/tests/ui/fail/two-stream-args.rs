pub struct Chunk;

#[rpc::service]
pub trait Svc {
    async fn merge(&self, a: rpc::Stream<Chunk>, b: rpc::Stream<Chunk>) -> u64;
}

fn main() {}
