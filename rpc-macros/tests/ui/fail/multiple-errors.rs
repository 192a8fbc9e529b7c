// Independent mistakes, found by parsing and by two different rules, are
// all reported in one compile.
#[rpc::service]
pub trait Svc {
    fn not_async(&self) -> u32;
    async fn takes_mut(&mut self);
    #[rpc(bogus)]
    async fn bad_option(&self);
    async fn fine(&self) -> u32;
}

// The trait is still emitted, so its uses do not cascade into more errors.
struct Impl;
impl Svc for Impl {
    fn not_async(&self) -> u32 {
        1
    }
    async fn takes_mut(&mut self) {}
    async fn bad_option(&self) {}
    async fn fine(&self) -> u32 {
        2
    }
}

fn main() {}
