//! The built-in introspection service (`rpc::introspect`): a server lists
//! exactly what its traits say (services, then health and introspection;
//! each method's kind, argument names and types as written, return type,
//! idempotence, shape and fingerprint), the fingerprints it lists are the
//! ones its clients send (so a mismatch can be diagnosed from the list),
//! and a server built with `introspection(false)` answers UnknownMethod.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use rpc::introspect::{IntrospectionClient, MethodInfo, MethodKind, ServiceInfo};
use serde::{Deserialize, Serialize};

/// A service with every kind of streaming method.
#[rpc::service(name = "Feed")]
pub(crate) trait Feed {
    async fn watch(&self, from: u64) -> rpc::Stream<Event>;
    async fn upload(&self, chunks: rpc::Stream<Vec<u8>>) -> u64;
    async fn chat(&self, room: String, inbox: rpc::Stream<String>) -> rpc::Stream<String>;
}

/// A service with a `Result` return, borrowed arguments, an idempotent
/// method and one without arguments or return.
#[rpc::service]
pub(crate) trait Store {
    #[rpc(idempotent)]
    async fn get(&self, key: &str) -> Option<String>;
    async fn put(&self, key: &str, values: &[u8], meta: &Meta) -> Result<u64, StoreError>;
    async fn flush(&self);
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Event(u64);

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    tag: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum StoreError {
    Full,
}

struct Impl;

impl Feed for Impl {
    async fn watch(&self, from: u64) -> rpc::Stream<Event> {
        rpc::Stream::iter((from..from + 2).map(Event))
    }
    async fn upload(&self, _chunks: rpc::Stream<Vec<u8>>) -> u64 {
        0
    }
    async fn chat(&self, _room: String, inbox: rpc::Stream<String>) -> rpc::Stream<String> {
        inbox
    }
}

impl Store for Impl {
    async fn get(&self, key: &str) -> Option<String> {
        Some(key.to_owned())
    }
    async fn put(&self, _key: &str, values: &[u8], _meta: &Meta) -> Result<u64, StoreError> {
        Ok(values.len() as u64)
    }
    async fn flush(&self) {}
}

async fn server(builder: rpc::server::Builder) -> rpc::ServerHandle {
    builder
        .add_service(FeedServer::new(Impl))
        .add_service(StoreServer::new(Impl))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

async fn listed() -> (rpc::ServerHandle, Vec<ServiceInfo>) {
    let server = server(rpc::Server::builder()).await;
    let client = IntrospectionClient::connect(server.local_addr())
        .await
        .unwrap();
    let services = client.services().await.unwrap();
    (server, services)
}

/// A method's kind, arguments, return, idempotence and shape, to compare.
fn summary(m: &MethodInfo) -> (&str, MethodKind, Vec<(&str, &str)>, &str, bool, &str) {
    let args = m
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.ty.as_str()))
        .collect();
    (
        m.name.as_str(),
        m.kind,
        args,
        m.returns.as_str(),
        m.idempotent,
        m.shape.as_str(),
    )
}

#[tokio::test]
async fn a_server_lists_its_services_then_health_and_itself() {
    let (_server, services) = listed().await;
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Feed", "Store", "RpcHealth", "RpcIntrospection"]);
    let own = &services[3].methods;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].name, "RpcIntrospection.services");
    assert_eq!(own[0].returns, "Vec<ServiceInfo>");
    assert_eq!(
        services[2].methods[0].shape,
        "check(String) -> ServingStatus"
    );
}

#[tokio::test]
async fn streaming_methods_are_listed_with_their_kinds() {
    let (_server, services) = listed().await;
    let feed: Vec<_> = services[0].methods.iter().map(summary).collect();
    assert_eq!(
        feed,
        [
            (
                "Feed.watch",
                MethodKind::ServerStreaming,
                vec![("from", "u64")],
                "rpc::Stream<Event>",
                false,
                "watch(u64) -> Stream<Event>",
            ),
            (
                "Feed.upload",
                MethodKind::ClientStreaming,
                vec![("chunks", "rpc::Stream<Vec<u8>>")],
                "u64",
                false,
                "upload(Stream<Vec<u8>>) -> u64",
            ),
            (
                "Feed.chat",
                MethodKind::Bidi,
                vec![("room", "String"), ("inbox", "rpc::Stream<String>")],
                "rpc::Stream<String>",
                false,
                "chat(String, Stream<String>) -> Stream<String>",
            ),
        ]
    );
}

#[tokio::test]
async fn borrowed_arguments_results_and_idempotence_are_listed_as_written() {
    let (_server, services) = listed().await;
    let store: Vec<_> = services[1].methods.iter().map(summary).collect();
    assert_eq!(
        store,
        [
            (
                "Store.get",
                MethodKind::Unary,
                vec![("key", "&str")],
                "Option<String>",
                true,
                "get(String) -> Option<String>",
            ),
            (
                "Store.put",
                MethodKind::Unary,
                vec![("key", "&str"), ("values", "&[u8]"), ("meta", "&Meta")],
                "Result<u64, StoreError>",
                false,
                "put(String, Vec<u8>, Meta) -> Result<u64, StoreError>",
            ),
            (
                "Store.flush",
                MethodKind::Unary,
                vec![],
                "()",
                false,
                "flush() -> ()",
            ),
        ]
    );
}

/// The fingerprint listed is what a client of the same trait sends: a
/// server answering a request carrying it runs the call, and the listed
/// value is the FNV-1a hash of the listed shape.
#[tokio::test]
async fn listed_fingerprints_are_the_ones_clients_send() {
    let (server, services) = listed().await;
    for service in &services {
        for m in &service.methods {
            assert_eq!(
                m.fingerprint,
                rpc::protocol::method_id(&m.shape),
                "{}",
                m.name
            );
        }
    }
    // A client of this build sends the fingerprint, and the server (which
    // checks it against the listed one) runs the call.
    let store = StoreClient::connect(server.local_addr()).await.unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some("k".into()));
    let put = &services[1].methods[1];
    let mut conn = support::raw::RawConn::handshake(server.local_addr()).await;
    let args = support::raw::args(&("k", vec![1u8, 2, 3], ("t",)));
    for (call, fingerprint, status) in [(1, put.fingerprint, 0), (2, !put.fingerprint, 12)] {
        let mut p = rpc::protocol::method_id("Store.put").to_be_bytes().to_vec();
        p.extend_from_slice(&5_000_000u64.to_be_bytes());
        p.extend_from_slice(&fingerprint.to_be_bytes());
        p.extend_from_slice(&args);
        conn.send(&support::raw::frame(
            support::raw::kind::REQUEST,
            0x04,
            call,
            &p,
        ))
        .await;
        let reply = conn.next_reply(support::hand::PROMPTLY).await.unwrap();
        assert_eq!(reply.status(), status, "{}", reply.message());
        if status == 12 {
            assert_eq!(reply.message(), put.shape);
        }
    }
}

#[tokio::test]
async fn a_server_without_introspection_answers_unknown_method() {
    let server = server(rpc::Server::builder().introspection(false)).await;
    let client = IntrospectionClient::connect(server.local_addr())
        .await
        .unwrap();
    let e = client.services().await.unwrap_err();
    assert!(
        matches!(
            e,
            rpc::Error::UnknownMethod {
                method: "RpcIntrospection.services"
            }
        ),
        "{e:?}"
    );
    // The rest is served as before.
    let store = StoreClient::connect(server.local_addr()).await.unwrap();
    assert_eq!(store.get("x").await.unwrap(), Some("x".into()));
}
