//! Wire names survive refactoring: the service and methods keep their ids
//! when their Rust names change, and a method may take a reserved Rust name's
//! place on the wire.

#![deny(warnings)]

#[rpc::service(name = "Greeter")]
pub trait GreeterV2 {
    #[rpc(name = "hello")]
    async fn say_hello(&self, name: &str) -> String;

    /// A method whose wire name is `connect`, a name the client reserves.
    #[rpc(name = "connect")]
    async fn connect_to(&self, host: String) -> bool;

    async fn unchanged(&self);
}

struct Impl;
impl GreeterV2 for Impl {
    async fn say_hello(&self, name: &str) -> String {
        format!("hello {name}")
    }
    async fn connect_to(&self, host: String) -> bool {
        !host.is_empty()
    }
    async fn unchanged(&self) {}
}

#[tokio::main]
async fn main() {
    use rpc::__private::Service;
    let server = GreeterV2Server::new(Impl);
    assert_eq!(server.name(), "Greeter");
    let methods: Vec<_> = server.methods().iter().map(|m| (m.name, m.id)).collect();
    let expected = ["Greeter.hello", "Greeter.connect", "Greeter.unchanged"];
    for ((name, id), want) in methods.into_iter().zip(expected) {
        assert_eq!(name, want);
        assert_eq!(id, rpc::protocol::method_id(want));
    }
    assert_eq!(Impl.say_hello("x").await, "hello x");
    assert!(Impl.connect_to("h".into()).await);
}
