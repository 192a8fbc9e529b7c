//! The expansion names everything by absolute path: it compiles in a module
//! without the prelude, next to local modules named `core`, `std`, `rpc` and
//! `serde`, and user items named like the ones generated code uses. Then one
//! call of each shape round-trips over real TCP.

mod hygiene {
    #![no_implicit_prelude]
    #![allow(dead_code, non_camel_case_types, non_upper_case_globals)]

    mod core {}
    mod std {}
    mod rpc {}
    mod serde {}

    pub(crate) struct Result;
    pub(crate) struct Option;
    pub(crate) struct Box;
    pub(crate) struct Vec;
    pub(crate) struct String;
    pub(crate) struct Arc;
    pub(crate) struct Send;
    pub(crate) struct Sync;
    pub(crate) struct Future;
    pub(crate) struct Clone;
    pub(crate) struct Debug;
    pub(crate) struct Ok;
    pub(crate) struct Err;
    pub(crate) struct Some;
    pub(crate) struct None;
    pub(crate) struct S;
    pub(crate) struct T;
    pub(crate) struct u64;
    pub(crate) struct usize;
    pub(crate) struct str;
    // Consts named like locals would turn a `let` binding into a pattern.
    pub(crate) const call: () = ();
    pub(crate) const request: () = ();
    pub(crate) const f: () = ();
    pub(crate) const args: () = ();
    pub(crate) const reply: () = ();
    pub(crate) const out: () = ();

    #[::rpc::service]
    pub(crate) trait Echo {
        /// Borrowed text and bytes, and an owned number.
        async fn echo(
            &self,
            text: &::core::primitive::str,
            data: &[::core::primitive::u8],
            n: ::core::primitive::u32,
        ) -> ::std::string::String;
        async fn bytes(
            &self,
            data: ::std::vec::Vec<::core::primitive::u8>,
        ) -> ::std::vec::Vec<::core::primitive::u8>;
        async fn maybe(
            &self,
            x: ::core::option::Option<::core::primitive::i32>,
        ) -> ::core::result::Result<::core::primitive::i32, ::std::string::String>;
        async fn unit(&self);
        async fn with_default(&self) -> ::core::primitive::u8 {
            7
        }
        /// A plain `fn` on the blocking pool, with a borrow.
        #[rpc(blocking)]
        fn count(&self, text: &::core::primitive::str) -> ::core::primitive::usize;
        /// Streams in each position. Only compiled here: calling them is
        /// for the runtime's stream tests.
        async fn watch(&self) -> ::rpc::Stream<::core::primitive::u32>;
        async fn relay(
            &self,
            inbox: ::rpc::Stream<::core::primitive::u32>,
            n: ::core::primitive::u32,
        ) -> ::rpc::Stream<::core::primitive::u32>;
        #[rpc(no_deadline)]
        async fn relay_or(
            &self,
            inbox: ::rpc::Stream<::core::primitive::u32>,
        ) -> ::core::result::Result<::rpc::Stream<::core::primitive::u32>, ::std::string::String>;
        async fn total(
            &self,
            inbox: ::rpc::Stream<::core::primitive::u32>,
        ) -> ::core::primitive::u64;
    }

    pub(crate) struct Impl;

    impl Echo for Impl {
        async fn echo(
            &self,
            text: &::core::primitive::str,
            data: &[::core::primitive::u8],
            n: ::core::primitive::u32,
        ) -> ::std::string::String {
            ::std::format!("{text}:{}:{n}", data.len())
        }
        async fn bytes(
            &self,
            data: ::std::vec::Vec<::core::primitive::u8>,
        ) -> ::std::vec::Vec<::core::primitive::u8> {
            data
        }
        async fn maybe(
            &self,
            x: ::core::option::Option<::core::primitive::i32>,
        ) -> ::core::result::Result<::core::primitive::i32, ::std::string::String> {
            ::core::option::Option::ok_or(x, ::std::string::ToString::to_string("none"))
        }
        async fn unit(&self) {}
        fn count(&self, text: &::core::primitive::str) -> ::core::primitive::usize {
            ::core::primitive::str::len(text)
        }
        async fn watch(&self) -> ::rpc::Stream<::core::primitive::u32> {
            ::rpc::Stream::new(::futures::stream::empty())
        }
        async fn relay(
            &self,
            inbox: ::rpc::Stream<::core::primitive::u32>,
            _: ::core::primitive::u32,
        ) -> ::rpc::Stream<::core::primitive::u32> {
            inbox
        }
        async fn relay_or(
            &self,
            inbox: ::rpc::Stream<::core::primitive::u32>,
        ) -> ::core::result::Result<::rpc::Stream<::core::primitive::u32>, ::std::string::String>
        {
            ::core::result::Result::Ok(inbox)
        }
        async fn total(&self, _: ::rpc::Stream<::core::primitive::u32>) -> ::core::primitive::u64 {
            0
        }
    }
}

use hygiene::{EchoClient, EchoServer, Impl};

#[tokio::test]
async fn the_expansion_compiles_without_the_prelude_and_round_trips() {
    let server = rpc::Server::builder()
        .add_service(EchoServer::new(Impl))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = EchoClient::connect(server.local_addr()).await.unwrap();

    assert_eq!(client.echo("hi", &[1, 2, 3], 9).await.unwrap(), "hi:3:9");
    let data: Vec<u8> = (0..=255).collect();
    assert_eq!(client.bytes(data.clone()).await.unwrap(), data);
    assert_eq!(client.maybe(Some(4)).await.unwrap(), Ok(4));
    assert_eq!(client.maybe(None).await.unwrap(), Err("none".to_string()));
    client.unit().await.unwrap();
    assert_eq!(client.with_default().await.unwrap(), 7);
    assert_eq!(client.count("four").await.unwrap(), 4);

    server.shutdown().await;
}
