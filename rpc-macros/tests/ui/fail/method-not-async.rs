#[rpc::service]
pub trait Svc {
    fn sync(&self) -> u32;
}

fn main() {}
