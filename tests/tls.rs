//! TLS and mutual TLS over TCP (feature `tls`), against real servers on
//! loopback with certificates made at test time: calls and streams round
//! trip; a client that does not trust the server (unknown issuer, wrong
//! name, expired) is refused with the reason, and the server serves others
//! on; plaintext and TLS peers that meet are each told what is wrong; under
//! mTLS a handler sees the client's certificate and a client without one is
//! refused; a balanced channel and a reconnect work over TLS; a peer that
//! stalls its TLS handshake holds up no one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc::discover::Static;
use rpc::tls::rustls::{ClientConfig, ServerConfig};
use rpc::transport::Peer;
use rpc_suite::calculator::{Calc, CalculatorClient, CalculatorServer};
use rpc_suite::certs::{Ca, Identity, Validity};
use rpc_suite::feed::{FeedClient, FeedImpl, FeedServer, Item};
use serde::{Deserialize, Serialize};

/// A refusal must come well before any default timeout (5 s connect, 10 s
/// handshake): it is an answer, not a wait.
const PROMPTLY: Duration = Duration::from_secs(3);

/// What a handler's context says of its caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Caller {
    over_tls: bool,
    addr: Option<SocketAddr>,
    certificates: Vec<Vec<u8>>,
}

#[rpc::service]
trait Who {
    /// Which server answered.
    async fn server(&self) -> String;
    /// Who is calling, as `rpc::context::current()` says.
    async fn caller(&self) -> Caller;
}

struct WhoImpl(&'static str);

impl Who for WhoImpl {
    async fn server(&self) -> String {
        self.0.to_string()
    }

    async fn caller(&self) -> Caller {
        let ctx = rpc::context::current();
        let peer = ctx.peer();
        assert_eq!(peer.certificates(), ctx.peer_certificates());
        Caller {
            over_tls: matches!(peer, Peer::Tls { .. }),
            addr: peer.addr(),
            certificates: ctx.peer_certificates().to_vec(),
        }
    }
}

/// A CA, and a current server certificate it signed for `localhost` and
/// 127.0.0.1.
fn pki() -> (Ca, Identity) {
    let ca = Ca::new("rpc test CA");
    let server = ca.server(&["localhost", "127.0.0.1"], Validity::Current);
    (ca, server)
}

fn server_config(identity: &Identity) -> ServerConfig {
    rpc::tls::server_config(identity.chain.clone(), identity.key()).unwrap()
}

fn trusting(ca: &Ca) -> ClientConfig {
    rpc::tls::client_config(vec![ca.certificate()]).unwrap()
}

fn services(name: &'static str) -> rpc::server::Builder {
    rpc::Server::builder()
        .add_service(WhoServer::new(WhoImpl(name)))
        .add_service(CalculatorServer::new(Calc))
        .add_service(FeedServer::new(FeedImpl::default()))
}

/// A TLS server of the test services on 127.0.0.1:0.
async fn serve_tls(name: &'static str, config: ServerConfig) -> rpc::ServerHandle {
    services(name)
        .tls(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

/// A directory of its own for this test's files.
fn scratch_dir() -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("rpc-tls-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Connecting with `config` and `name` to `addr` fails at once with an I/O
/// error; its message.
async fn refused(addr: SocketAddr, config: ClientConfig, name: &str) -> String {
    let started = Instant::now();
    let err = rpc::Channel::connect_tls(addr, config, name)
        .await
        .expect_err("the connection was not refused");
    assert!(
        started.elapsed() < PROMPTLY,
        "refused after {:?}",
        started.elapsed()
    );
    assert!(matches!(err, rpc::Error::Io { .. }), "{err:?}");
    assert!(!err.may_have_run(), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains("frame"), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_streams_round_trip_over_tls_with_a_server_config_from_pem_files() {
    let (ca, identity) = pki();
    let dir = scratch_dir();
    std::fs::write(dir.join("server.crt"), &identity.chain_pem).unwrap();
    std::fs::write(dir.join("server.key"), &identity.key_pem).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.certificate_pem()).unwrap();
    let config =
        rpc::tls::server_config_from_pem(dir.join("server.crt"), dir.join("server.key")).unwrap();
    let server = serve_tls("pem", config).await;
    let roots = rpc::tls::certificates_from_pem(dir.join("ca.crt")).unwrap();
    let channel = rpc::Channel::connect_tls(
        server.local_addr(),
        rpc::tls::client_config(roots).unwrap(),
        "localhost",
    )
    .await
    .unwrap();

    // The client sees the server's chain.
    let peer = channel.peer();
    assert!(matches!(peer, Peer::Tls { .. }), "{peer:?}");
    assert_eq!(peer.addr(), Some(server.local_addr()));
    assert_eq!(
        peer.certificates(),
        &identity.chain[..]
            .iter()
            .map(|c| c.to_vec())
            .collect::<Vec<_>>()[..]
    );
    // The handler sees a TLS peer that sent no certificate.
    let caller = WhoClient::new(channel.clone()).caller().await.unwrap();
    assert!(caller.over_tls, "{caller:?}");
    assert!(
        caller.addr.is_some_and(|a| a.ip().is_loopback()),
        "{caller:?}"
    );
    assert!(caller.certificates.is_empty(), "{caller:?}");

    let calc = CalculatorClient::new(channel.clone());
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    let feed = FeedClient::new(channel);
    // Server streaming, more than one window's worth (the client's 2 MiB).
    let items: Vec<Item> = feed
        .watch(3_000, 1_000)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items.len(), 3_000);
    assert!(items.iter().enumerate().all(|(i, it)| it.seq == i as u64));
    // Client streaming, and both ways.
    let chunks = rpc::Stream::iter((0..40).map(|i| vec![i as u8; 50_000]));
    assert_eq!(feed.upload(chunks).await.unwrap(), 2_000_000);
    let (tx, inbox) = rpc::stream::channel();
    let mut replies = feed.chat(inbox).await.unwrap();
    tx.send("tls".to_string()).await.unwrap();
    assert_eq!(replies.next().await.unwrap().unwrap(), "echo: tls");
    drop(tx);
    assert_eq!(replies.next().await.unwrap().unwrap(), "done: 1");

    server.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_server_is_refused_naming_the_reason_and_others_are_served()
 {
    let (ca, identity) = pki();
    let server = serve_tls("one", server_config(&identity)).await;
    let stranger = Ca::new("some other CA");
    let text = refused(server.local_addr(), trusting(&stranger), "localhost").await;
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains(&server.local_addr().to_string()), "{text}");

    // The server serves a client that trusts it, on.
    let channel = rpc::Channel::connect_tls(server.local_addr(), trusting(&ca), "localhost")
        .await
        .unwrap();
    assert_eq!(WhoClient::new(channel).server().await.unwrap(), "one");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_naming_the_mismatch() {
    let (ca, identity) = pki();
    let server = serve_tls("one", server_config(&identity)).await;
    let text = refused(server.local_addr(), trusting(&ca), "db.example.com").await;
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(
        text.contains(r#"certificate not valid for name "db.example.com""#),
        "{text}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused_naming_its_expiry() {
    let ca = Ca::new("rpc test CA");
    let expired = ca.server(&["localhost"], Validity::Expired);
    let server = serve_tls("old", server_config(&expired)).await;
    let text = refused(server.local_addr(), trusting(&ca), "localhost").await;
    assert!(text.contains("TLS handshake"), "{text}");
    assert!(text.contains("certificate expired"), "{text}");
}

#[tokio::test]
async fn a_plaintext_client_of_a_tls_server_is_told_to_connect_with_tls() {
    let (_ca, identity) = pki();
    let server = serve_tls("one", server_config(&identity)).await;
    let started = Instant::now();
    let err = rpc::Channel::connect(server.local_addr())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < PROMPTLY,
        "after {:?}",
        started.elapsed()
    );
    assert!(matches!(err, rpc::Error::Protocol { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("the server answered with TLS; connect with TLS"),
        "{text}"
    );
    assert!(!text.contains("frame"), "{text}");
}

#[tokio::test]
async fn a_tls_client_of_a_plaintext_server_is_told_the_server_may_not_serve_tls() {
    let (ca, _identity) = pki();
    let server = services("plain").bind("127.0.0.1:0").await.unwrap();
    let text = refused(server.local_addr(), trusting(&ca), "localhost").await;
    assert!(
        text.contains("the server did not answer the TLS handshake; does it serve TLS?"),
        "{text}"
    );
    // The plaintext server still serves plaintext clients.
    let channel = rpc::Channel::connect(server.local_addr()).await.unwrap();
    assert_eq!(WhoClient::new(channel).server().await.unwrap(), "plain");
}

#[tokio::test]
async fn under_mutual_tls_the_handler_sees_the_clients_certificate() {
    let (ca, identity) = pki();
    let config = rpc::tls::mtls_server_config(
        identity.chain.clone(),
        identity.key(),
        vec![ca.certificate()],
    )
    .unwrap();
    let server = serve_tls("mtls", config).await;
    let alice = ca.client("alice");
    let config =
        rpc::tls::mtls_client_config(vec![ca.certificate()], alice.chain.clone(), alice.key())
            .unwrap();
    let channel = rpc::Channel::connect_tls(server.local_addr(), config, "localhost")
        .await
        .unwrap();
    let caller = WhoClient::new(channel).caller().await.unwrap();
    assert!(caller.over_tls, "{caller:?}");
    assert_eq!(caller.certificates.len(), alice.chain.len(), "{caller:?}");
    assert_eq!(
        caller.certificates[0],
        alice.leaf(),
        "not alice's certificate"
    );
}

/// Lets through only callers whose certificate is alice's (a server
/// interceptor sees the peer's certificates as the handler does).
struct OnlyAlice(Vec<u8>);

impl rpc::intercept::Interceptor for OnlyAlice {
    async fn before(
        &self,
        call: &mut rpc::intercept::CallInfo,
    ) -> Result<(), rpc::intercept::Rejection> {
        let leaf = call.peer().and_then(|p| p.certificates().first());
        if leaf == Some(&self.0) {
            Ok(())
        } else {
            Err(rpc::intercept::Rejection::permission_denied("not alice"))
        }
    }
}

#[tokio::test]
async fn under_mutual_tls_a_balanced_channel_presents_its_certificate_to_every_server() {
    let (ca, identity) = pki();
    let alice = ca.client("alice");
    let mtls = || {
        rpc::tls::mtls_server_config(
            identity.chain.clone(),
            identity.key(),
            vec![ca.certificate()],
        )
        .unwrap()
    };
    let mut servers = Vec::new();
    for name in ["one", "two"] {
        let server = rpc::Server::builder()
            .interceptor(OnlyAlice(alice.leaf().to_vec()))
            .add_service(WhoServer::new(WhoImpl(name)))
            .tls(mtls())
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        servers.push(server);
    }
    let addrs: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
    let client_config = |who: &rpc_suite::certs::Identity| {
        rpc::tls::mtls_client_config(vec![ca.certificate()], who.chain.clone(), who.key()).unwrap()
    };
    let channel = rpc::Channel::balanced(Static::new(addrs.clone()))
        .policy(rpc::client::Policy::RoundRobin)
        .tls(client_config(&alice), "localhost")
        .connect()
        .await
        .unwrap();
    // `connect` returns once one server is connected; the other follows.
    all_connected(&channel).await;
    let who = WhoClient::new(channel);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        seen.insert(who.server().await.unwrap());
    }
    assert_eq!(seen.len(), 2, "both servers let alice in: {seen:?}");
    for _ in 0..4 {
        let caller = who.caller().await.unwrap();
        assert_eq!(caller.certificates[0], alice.leaf());
    }
    // Bob has a certificate from the same CA: the handshake lets him in,
    // the interceptor does not.
    let bob = ca.client("bob");
    let channel = rpc::Channel::balanced(Static::new(addrs))
        .tls(client_config(&bob), "localhost")
        .connect()
        .await
        .unwrap();
    let err = WhoClient::new(channel).server().await.unwrap_err();
    assert!(
        matches!(err, rpc::Error::PermissionDenied { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn under_mutual_tls_a_client_without_a_certificate_is_refused_at_the_handshake() {
    let (ca, identity) = pki();
    let config = rpc::tls::mtls_server_config(
        identity.chain.clone(),
        identity.key(),
        vec![ca.certificate()],
    )
    .unwrap();
    let server = serve_tls("mtls", config).await;
    let started = Instant::now();
    let err = rpc::Channel::connect_tls(server.local_addr(), trusting(&ca), "localhost")
        .await
        .expect_err("a client without a certificate was let in");
    assert!(
        started.elapsed() < PROMPTLY,
        "after {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("CertificateRequired"), "{err:?}");

    // A certificate another CA signed is refused too.
    let stranger = Ca::new("some other CA").client("mallory");
    let config = rpc::tls::mtls_client_config(
        vec![ca.certificate()],
        stranger.chain.clone(),
        stranger.key(),
    )
    .unwrap();
    let err = rpc::Channel::connect_tls(server.local_addr(), config, "localhost")
        .await
        .expect_err("a client with an untrusted certificate was let in");
    assert!(err.to_string().contains("UnknownCA"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balanced_channel_spreads_calls_over_two_tls_servers() {
    let (ca, identity) = pki();
    let one = serve_tls("one", server_config(&identity)).await;
    let two = serve_tls("two", server_config(&identity)).await;
    let channel = rpc::Channel::balanced(Static::new([one.local_addr(), two.local_addr()]))
        .policy(rpc::client::Policy::RoundRobin)
        .tls(trusting(&ca), "localhost")
        .connect()
        .await
        .unwrap();
    // `connect` returns once one server is connected; the other follows.
    all_connected(&channel).await;
    let who = WhoClient::new(channel);
    let mut seen = std::collections::HashMap::new();
    for _ in 0..20 {
        *seen.entry(who.server().await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|&n| n >= 5), "{seen:?}");
    for _ in 0..4 {
        assert!(who.caller().await.unwrap().over_tls);
    }

    // A balanced channel that does not trust them connects to neither.
    let err = rpc::Channel::balanced(Static::new([one.local_addr(), two.local_addr()]))
        .tls(trusting(&Ca::new("some other CA")), "localhost")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Disconnected { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_reconnects_after_the_server_restarts_at_the_same_address() {
    let (ca, identity) = pki();
    let first = serve_tls("first", server_config(&identity)).await;
    let addr = first.local_addr();
    let channel = rpc::Channel::builder()
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect_tls(addr, trusting(&ca), "localhost")
        .await
        .unwrap();
    let who = WhoClient::new(channel);
    assert_eq!(who.server().await.unwrap(), "first");
    first.shutdown().await;
    assert!(who.server().await.is_err(), "a stopped server answered");

    let second = services("second")
        .tls(server_config(&identity))
        .bind(addr)
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match who.server().await {
                Ok(name) => return name,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("no call reached the restarted server");
    assert_eq!(answer, "second");
    assert!(who.caller().await.unwrap().over_tls);
    second.shutdown().await;
}

/// A peer that opens a TCP connection and never starts its TLS handshake
/// holds up neither the accept loop nor other clients, and is dropped at
/// the server's handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stalls_its_tls_handshake_holds_up_no_one_and_is_dropped() {
    use tokio::io::AsyncReadExt;
    let (ca, identity) = pki();
    let server = services("one")
        .tls(server_config(&identity))
        .handshake_timeout(Duration::from_millis(300))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut stalled = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let started = Instant::now();
    let channel = rpc::Channel::connect_tls(server.local_addr(), trusting(&ca), "localhost")
        .await
        .unwrap();
    assert_eq!(WhoClient::new(channel).server().await.unwrap(), "one");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let closed = tokio::time::timeout(PROMPTLY, stalled.read(&mut [0; 16])).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the stalled peer was not dropped: {closed:?}"
    );
}

#[tokio::test]
async fn tls_settings_that_cannot_work_are_configuration_errors() {
    let (ca, identity) = pki();
    let err = services("unix")
        .tls(server_config(&identity))
        .bind_unix(scratch_dir().join("tls.sock"))
        .await
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Config(_)), "{err:?}");
    let err = rpc::Channel::connect_tls("127.0.0.1:1", trusting(&ca), "not a name!")
        .await
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Config(_)), "{err:?}");
    let err = rpc::tls::server_config_from_pem("/nonexistent/server.crt", "/nonexistent/key")
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/server.crt"), "{err}");
}

/// Waits until every server of a balanced `channel` is connected.
async fn all_connected(channel: &rpc::Channel) {
    let started = Instant::now();
    while !channel
        .endpoints()
        .iter()
        .all(|e| e.state == rpc::client::EndpointState::Connected)
    {
        assert!(started.elapsed() < PROMPTLY, "{:?}", channel.endpoints());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
