pub struct Chunk;

#[rpc::service]
pub trait Svc {
    async fn upload(&self, parts: Vec<rpc::Stream<Chunk>>) -> u64;
}

fn main() {}
