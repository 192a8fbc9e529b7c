//! Every generated item is documented and `Debug`: a crate that denies
//! missing docs can define a public service.

#![deny(warnings)]

#![deny(missing_docs, missing_debug_implementations)]

/// A documented service.
#[rpc::service]
pub trait Documented {
    /// Says hello.
    async fn hello(&self) -> String;
}

fn main() {
    fn assert_debug<T: std::fmt::Debug>() {}
    assert_debug::<DocumentedClient>();
    assert_debug::<DocumentedServer<()>>();
}
