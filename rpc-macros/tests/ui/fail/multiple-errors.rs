// Two independent mistakes: both are reported in one compile.
#[rpc::service]
pub trait Svc {
    fn not_async(&self) -> u32;
    async fn takes_mut(&mut self);
    async fn fine(&self) -> u32;
}

// The trait is still emitted, so its uses do not cascade into more errors.
struct Impl;
impl Svc for Impl {
    fn not_async(&self) -> u32 {
        1
    }
    async fn takes_mut(&mut self) {}
    async fn fine(&self) -> u32 {
        2
    }
}

fn main() {}
