//! Marker supertraits and `where Self:` marker bounds have no methods to
//! miss on the client, so they are allowed.

#![deny(warnings)]

#[rpc::service]
pub trait Svc: Send + Sync + 'static
where
    Self: Sized + Unpin,
{
    async fn get(&self) -> u32;

    async fn twice(&self) -> u32
    where
        Self: Sync,
    {
        self.get().await * 2
    }
}

struct Impl;
impl Svc for Impl {
    async fn get(&self) -> u32 {
        5
    }
}

fn assert_service<S: rpc::__private::Service>(_: S) {}

#[tokio::main]
async fn main() {
    assert_eq!(Impl.get().await, 5);
    assert_eq!(Impl.twice().await, 10);
    assert_service(SvcServer::new(Impl));
}
