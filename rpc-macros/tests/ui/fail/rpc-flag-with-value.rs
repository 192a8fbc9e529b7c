#[rpc::service]
pub trait Svc {
    #[rpc(blocking = true)]
    fn hash(&self, data: Vec<u8>) -> u64;
}

fn main() {}
