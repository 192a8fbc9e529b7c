pub struct Chunk;

#[rpc::service]
pub trait Svc {
    // A stream argument is not enough: only a returned stream outlives the
    // default deadline.
    #[rpc(no_deadline)]
    async fn upload(&self, chunks: rpc::Stream<Chunk>) -> u64;
}

fn main() {}
