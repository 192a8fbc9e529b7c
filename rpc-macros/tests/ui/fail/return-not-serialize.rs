pub struct NotSerde;

#[rpc::service]
pub trait Svc {
    async fn get(&self) -> Option<NotSerde>;
}

fn main() {}
