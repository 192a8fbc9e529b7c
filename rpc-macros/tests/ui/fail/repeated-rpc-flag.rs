#[rpc::service]
pub trait Svc {
    #[rpc(blocking, blocking)]
    fn hash(&self, data: Vec<u8>) -> u64;
}

fn main() {}
