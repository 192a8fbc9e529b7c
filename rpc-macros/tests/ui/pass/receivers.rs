//! The spellings of `&self`: `&self`, `&'a self` and `self: &Self`, with
//! lifetime parameters on the method.

#![deny(warnings)]

#[rpc::service]
pub trait Receivers {
    async fn short(&self) -> u8;
    async fn named<'a>(&'a self, s: &'a str) -> usize;
    async fn long(self: &Self) -> u8;
}

struct Impl;
impl Receivers for Impl {
    async fn short(&self) -> u8 {
        1
    }
    async fn named<'a>(&'a self, s: &'a str) -> usize {
        s.len()
    }
    async fn long(self: &Self) -> u8 {
        3
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(Impl.short().await + Impl.long().await, 4);
    assert_eq!(Impl.named("abc").await, 3);
}
