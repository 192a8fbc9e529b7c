pub struct Event;

#[rpc::service]
pub trait Svc {
    #[rpc(blocking)]
    fn watch(&self, prefix: String) -> rpc::Stream<Event>;
}

fn main() {}
