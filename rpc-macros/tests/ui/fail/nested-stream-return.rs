pub struct Event;

#[rpc::service]
pub trait Svc {
    async fn watch(&self) -> Option<rpc::Stream<Event>>;
}

fn main() {}
