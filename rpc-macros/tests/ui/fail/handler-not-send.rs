use std::rc::Rc;

#[rpc::service]
pub trait Svc {
    async fn get(&self) -> u32;
}

struct Impl;

impl Svc for Impl {
    async fn get(&self) -> u32 {
        let local = Rc::new(1);
        tokio::task::yield_now().await;
        *local
    }
}

fn main() {}
