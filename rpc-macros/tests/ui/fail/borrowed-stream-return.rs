pub struct Event;

#[rpc::service]
pub trait Svc {
    async fn watch(&self) -> &'static rpc::Stream<Event>;
}

fn main() {}
