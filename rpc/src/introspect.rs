//! The introspection service every server answers (as gRPC's reflection
//! does, for the trait world): which services it serves, and for each
//! method its kind, its arguments' names and types, its return type,
//! whether it is idempotent, and its schema shape and fingerprint, as
//! `#[rpc::service]` saw the trait the server was built from.
//!
//! Every [`Server`](crate::Server) serves [`Introspection`] (as
//! `RpcIntrospection` on the wire) next to its own services and the
//! [health service](crate::health), and lists all of them, itself included.
//! A tool needs no copy of the traits to see what a server offers (see
//! `examples/rpc_cli.rs`), and a client that gets a
//! [`SchemaMismatch`](crate::Error::SchemaMismatch) can compare its shapes
//! with the server's.
//!
//! ```
//! use rpc::introspect::{IntrospectionClient, MethodKind};
//!
//! #[rpc::service]
//! pub trait Echo {
//!     #[rpc(idempotent)]
//!     async fn echo(&self, text: &str) -> String;
//! }
//! struct E;
//! impl Echo for E { async fn echo(&self, text: &str) -> String { text.to_owned() } }
//!
//! # #[tokio::main] async fn main() -> Result<(), rpc::Error> {
//! let server = rpc::Server::builder().add_service(EchoServer::new(E)).bind("127.0.0.1:0").await?;
//! let introspection = IntrospectionClient::connect(server.local_addr()).await?;
//! let services = introspection.services().await?;
//! let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
//! assert_eq!(names, ["Echo", "RpcHealth", "RpcIntrospection"]);
//!
//! let echo = &services[0].methods[0];
//! assert_eq!(echo.name, "Echo.echo");
//! assert_eq!(echo.kind, MethodKind::Unary);
//! assert_eq!((echo.args[0].name.as_str(), echo.args[0].ty.as_str()), ("text", "&str"));
//! assert_eq!(echo.returns, "String");
//! assert!(echo.idempotent);
//! assert_eq!(echo.shape, "echo(String) -> String");
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # On by default
//!
//! Most services' type names are no secret: the client's binary holds
//! them, and listing them makes a server easy to explore and a mismatch
//! easy to diagnose. A server that must not show its schema (one facing
//! untrusted clients, say) turns it off with
//! [`Builder::introspection(false)`](crate::server::Builder::introspection);
//! calls of it then fail with [`UnknownMethod`](crate::Error::UnknownMethod).
//! A server given a service named `RpcIntrospection` of its own serves that
//! one instead.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::server::dispatch::{MethodDesc, Service};

/// The service's name on the wire.
pub const SERVICE_NAME: &str = "RpcIntrospection";

/// Lists the services a server serves, and their methods.
#[crate::service(name = "RpcIntrospection")]
pub trait Introspection {
    /// Every service the server serves, in the order they were added (the
    /// health and introspection services last), with their methods in the
    /// order their traits declare them.
    async fn services(&self) -> Vec<ServiceInfo>;
}

/// One service a server serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceInfo {
    /// Its wire name (`#[rpc::service(name = "...")]`, else the trait's).
    pub name: String,
    /// Its methods, in the order the trait declares them.
    pub methods: Vec<MethodInfo>,
}

/// One method of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MethodInfo {
    /// `"Service.method"`, by wire names.
    pub name: String,
    /// Which way streams go.
    pub kind: MethodKind,
    /// Its arguments, as the trait writes them.
    pub args: Vec<ArgInfo>,
    /// Its return type as the trait writes it (`()` when there is none).
    pub returns: String,
    /// `#[rpc(idempotent)]`: safe to run twice (a balanced channel may
    /// retry and hedge it).
    pub idempotent: bool,
    /// Its normalised shape, `method(T1, T2) -> R` (see the schema check in
    /// `#[rpc::service]`'s docs).
    pub shape: String,
    /// The FNV-1a fingerprint of `shape`: what a client of the same
    /// version sends with each call.
    pub fingerprint: u64,
}

/// Which way a method's streams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MethodKind {
    /// Arguments in, one value out.
    Unary,
    /// Returns a stream.
    ServerStreaming,
    /// Takes a stream, returns one value.
    ClientStreaming,
    /// Takes a stream and returns one.
    Bidi,
}

/// One argument of a method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ArgInfo {
    /// Its name in the trait (not on the wire: a client may name it
    /// otherwise).
    pub name: String,
    /// Its type as the trait writes it (`&str`, `rpc::Stream<Chunk>`).
    pub ty: String,
}

impl ServiceInfo {
    /// What a served service's descriptors say about it.
    pub(crate) fn of(name: &str, methods: &[MethodDesc]) -> Self {
        ServiceInfo {
            name: name.to_owned(),
            methods: methods.iter().map(MethodInfo::of).collect(),
        }
    }
}

impl MethodInfo {
    fn of(desc: &MethodDesc) -> Self {
        let kind = match (desc.request_stream, desc.response_stream) {
            (false, false) => MethodKind::Unary,
            (false, true) => MethodKind::ServerStreaming,
            (true, false) => MethodKind::ClientStreaming,
            (true, true) => MethodKind::Bidi,
        };
        MethodInfo {
            name: desc.name.to_owned(),
            kind,
            args: desc
                .args
                .iter()
                .map(|&(name, ty)| ArgInfo {
                    name: name.to_owned(),
                    ty: ty.to_owned(),
                })
                .collect(),
            returns: desc.returns.to_owned(),
            idempotent: desc.idempotent,
            shape: desc.shape.to_owned(),
            fingerprint: desc.fingerprint,
        }
    }
}

/// The server's own [`Introspection`]: answers from the list the server
/// made of its services once they were all added (itself included, which
/// is why the list is set after the service is made).
#[derive(Debug, Clone, Default)]
pub(crate) struct Lister {
    pub(crate) services: Arc<OnceLock<Vec<ServiceInfo>>>,
}

impl Introspection for Lister {
    async fn services(&self) -> Vec<ServiceInfo> {
        self.services.get().cloned().unwrap_or_default()
    }
}

/// Adds the introspection service to `services`, listing them all and
/// itself, unless a service of its name is there already.
pub(crate) fn add_to(services: &mut Vec<Arc<dyn Service>>) {
    if services.iter().any(|s| s.name() == SERVICE_NAME) {
        return;
    }
    let lister = Lister::default();
    services.push(Arc::new(IntrospectionServer::new(lister.clone())));
    let listed = services
        .iter()
        .map(|s| ServiceInfo::of(s.name(), s.methods()))
        .collect();
    // Set once, here, before the server starts: never already set.
    let _ = lister.services.set(listed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(request_stream: bool, response_stream: bool) -> MethodDesc {
        MethodDesc {
            name: "S.m",
            id: 1,
            request_stream,
            response_stream,
            no_deadline: false,
            fingerprint: 7,
            shape: "m(String) -> ()",
            args: &[("s", "&str")],
            returns: "()",
            idempotent: true,
        }
    }

    #[test]
    fn kinds_follow_the_streams_and_the_rest_is_copied() {
        let kinds = [(false, false), (false, true), (true, false), (true, true)]
            .map(|(req, resp)| MethodInfo::of(&desc(req, resp)).kind);
        assert_eq!(
            kinds,
            [
                MethodKind::Unary,
                MethodKind::ServerStreaming,
                MethodKind::ClientStreaming,
                MethodKind::Bidi
            ]
        );
        let info = ServiceInfo::of("S", &[desc(false, false)]);
        let m = &info.methods[0];
        assert_eq!(
            (m.name.as_str(), m.returns.as_str(), m.shape.as_str()),
            ("S.m", "()", "m(String) -> ()")
        );
        assert_eq!((m.fingerprint, m.idempotent), (7, true));
        assert_eq!(
            m.args,
            [ArgInfo {
                name: "s".into(),
                ty: "&str".into()
            }]
        );
    }
}
