pub struct NotSerde;

#[rpc::service]
pub trait Svc {
    async fn put(&self, key: String, value: NotSerde);
}

fn main() {}
