//! Interceptors on the server and the client: an auth check that refuses a
//! call before its handler runs (unary and streaming), metadata they add,
//! the order several run in, what they see of the peer and the outcome,
//! and the same through the balanced channel.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use rpc::intercept::{CallInfo, Interceptor, Rejection, Side};

#[rpc::service]
trait Guarded {
    async fn whoami(&self) -> Option<String>;
    async fn numbers(&self, n: u32) -> rpc::Stream<u32>;
    async fn boom(&self);
}

#[derive(Clone, Default)]
struct GuardedImpl {
    ran: Arc<AtomicUsize>,
}

impl Guarded for GuardedImpl {
    async fn whoami(&self) -> Option<String> {
        self.ran.fetch_add(1, SeqCst);
        rpc::context::current()
            .metadata()
            .get_str("user")
            .map(str::to_owned)
    }

    async fn numbers(&self, n: u32) -> rpc::Stream<u32> {
        self.ran.fetch_add(1, SeqCst);
        rpc::Stream::iter(0..n)
    }

    async fn boom(&self) {
        self.ran.fetch_add(1, SeqCst);
        panic!("boom");
    }
}

/// Lets through calls with `authorization: Bearer <token>`, and tells the
/// handler who called (`user` metadata).
struct Auth {
    token: &'static str,
}

impl Interceptor for Auth {
    async fn before(&self, call: &mut CallInfo) -> Result<(), Rejection> {
        let expected = format!("Bearer {}", self.token);
        match call.metadata().get_str("authorization") {
            None => Err(Rejection::unauthenticated("no token")),
            Some(t) if t != expected => Err(Rejection::permission_denied("wrong token")),
            Some(_) => {
                call.metadata_mut().insert("user", "alice");
                Ok(())
            }
        }
    }
}

/// Sets the token on every call a client makes.
struct SetToken(&'static str);

impl Interceptor for SetToken {
    async fn before(&self, call: &mut CallInfo) -> Result<(), Rejection> {
        call.metadata_mut()
            .insert("authorization", format!("Bearer {}", self.0));
        Ok(())
    }
}

/// Records `name:before`, `name:after:<outcome>` into a shared log.
struct Record {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl Interceptor for Record {
    async fn before(&self, call: &mut CallInfo) -> Result<(), Rejection> {
        // An await point, so the chain is really driven as futures.
        tokio::task::yield_now().await;
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:before:{}", self.name, call.method()));
        Ok(())
    }

    fn after(&self, _call: &CallInfo, outcome: Result<(), &rpc::Error>) {
        let outcome = match outcome {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("{e}"),
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("{}:after:{outcome}", self.name));
    }
}

async fn serve(builder: rpc::server::Builder) -> (rpc::ServerHandle, GuardedImpl) {
    let service = GuardedImpl::default();
    let server = builder
        .add_service(GuardedServer::new(service.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    (server, service)
}

async fn client(server: &rpc::ServerHandle, builder: rpc::client::Builder) -> GuardedClient {
    GuardedClient::new(builder.connect(server.local_addr()).await.unwrap())
}

#[tokio::test]
async fn an_auth_interceptor_refuses_calls_without_the_token_before_the_handler_runs() {
    let (server, service) =
        serve(rpc::Server::builder().interceptor(Auth { token: "s3cret" })).await;
    let anonymous = client(&server, rpc::Channel::builder()).await;
    let err = anonymous.whoami().await.unwrap_err();
    assert!(matches!(err, rpc::Error::Unauthenticated { .. }), "{err:?}");
    assert!(err.to_string().contains("no token"), "{err}");
    assert!(!err.may_have_run() && !err.is_retryable());
    let err = anonymous.numbers(3).await.unwrap_err();
    assert!(matches!(err, rpc::Error::Unauthenticated { .. }), "{err:?}");
    let wrong = anonymous.with_metadata("authorization", "Bearer guess");
    let err = wrong.whoami().await.unwrap_err();
    assert!(
        matches!(err, rpc::Error::PermissionDenied { .. }),
        "{err:?}"
    );
    let err = wrong.numbers(3).await.unwrap_err();
    assert!(
        matches!(err, rpc::Error::PermissionDenied { .. }),
        "{err:?}"
    );
    assert_eq!(service.ran.load(SeqCst), 0, "no handler ran");

    // The token set once, by a client interceptor: every call carries it,
    // and the handler sees what the server's interceptor added.
    let trusted = client(
        &server,
        rpc::Channel::builder().interceptor(SetToken("s3cret")),
    )
    .await;
    assert_eq!(trusted.whoami().await.unwrap().as_deref(), Some("alice"));
    let items: Vec<u32> = trusted
        .numbers(4)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, [0, 1, 2, 3]);
    assert_eq!(service.ran.load(SeqCst), 2);
    // The refused calls left the connection as it was.
    assert_eq!(
        anonymous.whoami().await.unwrap_err().to_string(),
        err_text(&server).await
    );
}

/// What a call without a token is told (from a new connection).
async fn err_text(server: &rpc::ServerHandle) -> String {
    let fresh = client(server, rpc::Channel::builder()).await;
    fresh.whoami().await.unwrap_err().to_string()
}

#[tokio::test]
async fn interceptors_run_in_order_and_hear_the_outcome_in_reverse() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let record = |name| Record {
        name,
        log: log.clone(),
    };
    let (server, _) = serve(
        rpc::Server::builder()
            .interceptor(record("s1"))
            .interceptor(record("s2")),
    )
    .await;
    let guarded = client(
        &server,
        rpc::Channel::builder()
            .interceptor(record("c1"))
            .interceptor(record("c2")),
    )
    .await;
    guarded.whoami().await.unwrap();
    let taken = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(
        taken,
        [
            "c1:before:Guarded.whoami",
            "c2:before:Guarded.whoami",
            "s1:before:Guarded.whoami",
            "s2:before:Guarded.whoami",
            "s2:after:ok",
            "s1:after:ok",
            "c2:after:ok",
            "c1:after:ok",
        ]
    );
    // A panic is an outcome each side hears.
    guarded.boom().await.unwrap_err();
    let taken = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(taken.len(), 8, "{taken:?}");
    assert!(
        taken[4].starts_with("s2:after:") && taken[4].contains("panicked"),
        "{taken:?}"
    );
    assert!(
        taken[7].starts_with("c1:after:") && taken[7].contains("boom"),
        "{taken:?}"
    );
}

#[tokio::test]
async fn a_refusal_stops_the_chain_and_later_interceptors_do_not_run() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (server, service) = serve(
        rpc::Server::builder()
            .interceptor(Auth { token: "t" })
            .interceptor(Record {
                name: "later",
                log: log.clone(),
            }),
    )
    .await;
    let guarded = client(&server, rpc::Channel::builder()).await;
    guarded.whoami().await.unwrap_err();
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    assert_eq!(service.ran.load(SeqCst), 0);
}

/// Records what the server's interceptor sees of the call.
struct Peek(Arc<Mutex<Option<Seen>>>);

/// Side, peer, call id, streaming.
type Seen = (Side, Option<rpc::transport::Peer>, Option<u64>, bool);

impl Interceptor for Peek {
    async fn before(&self, call: &mut CallInfo) -> Result<(), Rejection> {
        *self.0.lock().unwrap() = Some((
            call.side(),
            call.peer().cloned(),
            call.call_id(),
            call.streaming(),
        ));
        call.reply_metadata_mut().insert("intercepted", "yes");
        Ok(())
    }
}

#[tokio::test]
async fn a_server_interceptor_sees_the_peer_and_can_add_reply_metadata() {
    let seen = Arc::new(Mutex::new(None));
    let (server, _) = serve(rpc::Server::builder().interceptor(Peek(seen.clone()))).await;
    let guarded = client(&server, rpc::Channel::builder()).await;
    let (_, reply) = rpc::metadata::capture(guarded.whoami()).await;
    assert_eq!(reply.get_str("intercepted"), Some("yes"));
    let (side, peer, call_id, streaming) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(side, Side::Server);
    let peer = peer.unwrap();
    assert!(peer.addr().unwrap().ip().is_loopback(), "{peer}");
    assert!(call_id.is_some());
    assert!(!streaming);
    let _stream = guarded.numbers(1).await.unwrap();
    assert!(seen.lock().unwrap().as_ref().unwrap().3, "a streaming call");
}

#[tokio::test]
async fn interceptors_work_through_the_balanced_channel() {
    let mut servers = Vec::new();
    let mut services = Vec::new();
    for _ in 0..2 {
        let (server, service) =
            serve(rpc::Server::builder().interceptor(Auth { token: "k" })).await;
        servers.push(server);
        services.push(service);
    }
    let addrs: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
    let refused = GuardedClient::new(
        rpc::Channel::balanced(rpc::discover::Static::new(addrs.clone()))
            .connect()
            .await
            .unwrap(),
    );
    let err = refused.whoami().await.unwrap_err();
    assert!(matches!(err, rpc::Error::Unauthenticated { .. }), "{err:?}");
    let err = refused.numbers(2).await.unwrap_err();
    assert!(matches!(err, rpc::Error::Unauthenticated { .. }), "{err:?}");
    let trusted = GuardedClient::new(
        rpc::Channel::balanced(rpc::discover::Static::new(addrs))
            .settings(rpc::Channel::builder().interceptor(SetToken("k")))
            .connect()
            .await
            .unwrap(),
    );
    for _ in 0..6 {
        assert_eq!(trusted.whoami().await.unwrap().as_deref(), Some("alice"));
    }
    assert_eq!(trusted.numbers(2).await.unwrap().count().await, 2);
    let ran: usize = services.iter().map(|s| s.ran.load(SeqCst)).sum();
    assert_eq!(ran, 7, "only the trusted calls ran");
    assert!(
        services.iter().all(|s| s.ran.load(SeqCst) > 0),
        "both servers served"
    );
}
