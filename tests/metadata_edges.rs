//! The edges of metadata and interceptors (found in review): a client that
//! sends metadata on every call is not idle; `capture` gives the last
//! reply's metadata, none included; reply metadata over the client's limit
//! is dropped, not the reply; every interceptor whose `before` ran hears
//! one outcome, also of a call dropped before it ended; blocking handlers;
//! nested captures; the metadata flag only on requests and responses.

#[allow(unused_imports)]
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc::intercept::{CallInfo, Interceptor, Rejection};

#[rpc::service]
trait Probe {
    /// The caller's TCP port, as the handler sees it.
    async fn port(&self) -> u16;
    /// Sets reply metadata `k: v` if `set`.
    async fn tag(&self, set: bool) -> u32;
    /// Sets `bytes` bytes of reply metadata.
    async fn big_reply_metadata(&self, bytes: usize) -> u32;
    /// Sleeps for `ms`.
    async fn slow(&self, ms: u64);
    /// A blocking handler: the metadata value of `key`, and sets reply
    /// metadata `from: blocking`.
    #[rpc(blocking)]
    fn blocking_seen(&self, key: String) -> Option<String>;
}

#[derive(Clone, Default)]
struct ProbeImpl {
    ran: Arc<AtomicUsize>,
}

impl Probe for ProbeImpl {
    async fn port(&self) -> u16 {
        rpc::context::current().peer_addr().unwrap().port()
    }

    async fn tag(&self, set: bool) -> u32 {
        if set {
            rpc::context::set_reply_metadata("k", "v");
        }
        7
    }

    async fn big_reply_metadata(&self, bytes: usize) -> u32 {
        self.ran.fetch_add(1, SeqCst);
        rpc::context::set_reply_metadata("big", vec![b'x'; bytes]);
        7
    }

    async fn slow(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn blocking_seen(&self, key: String) -> Option<String> {
        rpc::context::set_reply_metadata("from", "blocking");
        rpc::context::current()
            .metadata()
            .get_str(&key)
            .map(str::to_owned)
    }
}

async fn serve(builder: rpc::server::Builder) -> (rpc::ServerHandle, ProbeImpl) {
    let service = ProbeImpl::default();
    let server = builder
        .add_service(ProbeServer::new(service.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    (server, service)
}

async fn client(server: &rpc::ServerHandle, builder: rpc::client::Builder) -> ProbeClient {
    ProbeClient::new(builder.connect(server.local_addr()).await.unwrap())
}

/// Ports the server saw over ~1.6 s of a call every 50 ms, with an idle
/// timeout of 400 ms: a client that is never idle for 400 ms.
async fn ports_seen(probe: &ProbeClient) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for _ in 0..32 {
        ports.insert(probe.port().await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ports
}

/// Control: without metadata, a busy client keeps its one connection.
#[tokio::test]
async fn control_a_busy_client_without_metadata_is_not_idle() {
    let (server, _) = serve(rpc::Server::builder().idle_timeout(Duration::from_millis(400))).await;
    let probe = client(&server, rpc::Channel::builder()).await;
    assert_eq!(ports_seen(&probe).await.len(), 1);
}

/// A request flagged with metadata takes the reader's slow path: it still
/// counts as activity, so a client that sends metadata on every call (an
/// auth token) is not drained as idle.
#[tokio::test]
async fn a_busy_client_that_sends_metadata_is_not_idle() {
    let (server, _) = serve(rpc::Server::builder().idle_timeout(Duration::from_millis(400))).await;
    let probe = client(&server, rpc::Channel::builder()).await;
    let probe = probe.with_metadata("authorization", "Bearer t");
    let ports = ports_seen(&probe).await;
    assert_eq!(ports.len(), 1, "reconnected as idle: ports {ports:?}");
}

/// `capture` gives the metadata of the last reply, also when it has none.
#[tokio::test]
async fn capture_gives_the_last_replys_metadata_even_when_it_has_none() {
    let (server, _) = serve(rpc::Server::builder()).await;
    let probe = client(&server, rpc::Channel::builder()).await;
    let (_, reply) = rpc::metadata::capture(async {
        probe.tag(true).await.unwrap();
        probe.tag(false).await.unwrap()
    })
    .await;
    assert!(
        reply.is_empty(),
        "the last reply carried no metadata, yet capture gives {reply:?}"
    );
}

/// Reply metadata over the client's `max_metadata` is dropped, not the
/// reply: the handler ran, and its value is the caller's.
#[tokio::test]
async fn reply_metadata_over_the_clients_limit_is_dropped_and_the_value_delivered() {
    let (server, service) = serve(rpc::Server::builder()).await;
    let probe = client(&server, rpc::Channel::builder().max_metadata(1024)).await;
    let (value, reply) = rpc::metadata::capture(probe.big_reply_metadata(2048)).await;
    assert_eq!(value.unwrap(), 7);
    assert!(reply.is_empty(), "{reply:?}");
    assert_eq!(service.ran.load(SeqCst), 1, "the handler ran");
    let (value, reply) = rpc::metadata::capture(probe.big_reply_metadata(100)).await;
    assert_eq!(value.unwrap(), 7);
    assert_eq!(reply.get("big").map(<[u8]>::len), Some(100));
}

#[derive(Clone, Default)]
struct Counting {
    before: Arc<AtomicUsize>,
    after: Arc<AtomicUsize>,
    outcomes: Arc<Mutex<Vec<String>>>,
}

impl Interceptor for Counting {
    async fn before(&self, _call: &mut CallInfo) -> Result<(), Rejection> {
        self.before.fetch_add(1, SeqCst);
        Ok(())
    }

    fn after(&self, _call: &CallInfo, outcome: Result<(), &rpc::Error>) {
        self.after.fetch_add(1, SeqCst);
        self.outcomes.lock().unwrap().push(format!("{outcome:?}"));
    }
}

/// On the client, a call whose future is dropped (a `timeout`, a
/// `select!`) after its `before` ran still gets its `after`, as Aborted:
/// an in-flight gauge kept by an interceptor does not leak.
#[tokio::test]
async fn a_client_interceptor_hears_a_call_its_caller_dropped() {
    let (server, _) = serve(rpc::Server::builder()).await;
    let counting = Counting::default();
    let probe = client(
        &server,
        rpc::Channel::builder().interceptor(counting.clone()),
    )
    .await;
    let dropped = tokio::time::timeout(Duration::from_millis(100), probe.slow(2_000)).await;
    assert!(dropped.is_err(), "timed out");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counting.before.load(SeqCst), 1);
    assert_eq!(
        counting.after.load(SeqCst),
        1,
        "before ran, after never did"
    );
    let outcomes = counting.outcomes.lock().unwrap();
    assert!(outcomes[0].contains("Aborted"), "{outcomes:?}");
}

/// Never lets a call through in time.
struct Stall;

impl Interceptor for Stall {
    async fn before(&self, _call: &mut CallInfo) -> Result<(), Rejection> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    }
}

/// On the server, a call dropped at its deadline while a later
/// interceptor's `before` is pending still tells the earlier ones, whose
/// `before` ran, how it ended; the one still running hears it too.
#[tokio::test]
async fn server_interceptors_whose_before_ran_hear_a_call_dropped_in_a_later_before() {
    let counting = Counting::default();
    let (server, _) = serve(
        rpc::Server::builder()
            .interceptor(counting.clone())
            .interceptor(Stall),
    )
    .await;
    let probe = client(&server, rpc::Channel::builder()).await;
    let probe = probe.with_timeout(Duration::from_millis(200));
    let err = probe.slow(0).await.unwrap_err();
    assert!(
        matches!(err, rpc::Error::DeadlineExceeded { .. }),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counting.before.load(SeqCst), 1);
    assert_eq!(
        counting.after.load(SeqCst),
        1,
        "the first interceptor's before ran; its after never did"
    );
}

/// A `#[rpc(blocking)]` handler sees the call's metadata and its reply
/// metadata goes back.
#[tokio::test]
async fn a_blocking_handler_sees_metadata_and_sends_reply_metadata() {
    let (server, _) = serve(rpc::Server::builder().interceptor(Counting::default())).await;
    let probe = client(&server, rpc::Channel::builder()).await;
    let probe = probe.with_metadata("x-id", "42");
    let (seen, reply) = rpc::metadata::capture(probe.blocking_seen("x-id".into())).await;
    assert_eq!(seen.unwrap().as_deref(), Some("42"));
    assert_eq!(reply.get_str("from"), Some("blocking"));
}

/// Nested captures: the innermost one around a call gets its reply's
/// metadata; the outer one does not see it (documented in `capture`).
#[tokio::test]
async fn an_outer_capture_sees_nothing_of_an_inner_one() {
    let (server, _) = serve(rpc::Server::builder()).await;
    let probe = client(&server, rpc::Channel::builder()).await;
    let (inner, outer) = rpc::metadata::capture(async {
        let (_, inner) = rpc::metadata::capture(probe.tag(true)).await;
        inner
    })
    .await;
    assert_eq!(inner.get_str("k"), Some("v"));
    assert!(outer.is_empty(), "{outer:?}");
}

#[rpc::service]
trait Collect {
    async fn collect(&self, items: rpc::Stream<u32>) -> Vec<String>;
}

struct CollectImpl;

impl Collect for CollectImpl {
    async fn collect(&self, mut items: rpc::Stream<u32>) -> Vec<String> {
        use futures::StreamExt;
        let mut seen = Vec::new();
        while let Some(item) = items.next().await {
            seen.push(match item {
                Ok(n) => format!("item {n}"),
                Err(e) => format!("error: {e}"),
            });
        }
        seen
    }
}

/// A hostile peer: the metadata flag means something only on a Request or
/// Response; on a StreamItem it is a protocol error, as any flag not
/// accepted, never an item taken with its flag ignored.
#[tokio::test]
async fn a_stream_item_flagged_as_carrying_metadata_is_not_taken_as_a_plain_item() {
    use support::raw::{self, RawConn};
    let server = rpc::Server::builder()
        .add_service(CollectServer::new(CollectImpl))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut peer = RawConn::handshake(server.local_addr()).await;
    let budget = Duration::from_secs(5);
    peer.send(&raw::request(1, "Collect.collect", budget, &[]))
        .await;
    peer.send(&raw::frame(
        raw::kind::STREAM_ITEM,
        0x02,
        1,
        &raw::args(&7u32),
    ))
    .await;
    peer.send(&raw::clean_end(1)).await;
    // A GoAway for the protocol error, then the close; never a Response.
    loop {
        match peer.next_reply(Duration::from_secs(3)).await {
            Err(_closed) => break,
            Ok(f) if f.kind == raw::kind::GOAWAY => {
                assert_eq!(f.goaway_reason(), raw::goaway::PROTOCOL, "{}", f.message());
                assert!(f.message().contains("flags"), "{}", f.message());
            }
            Ok(f) => assert_ne!(
                f.kind,
                raw::kind::RESPONSE,
                "the flagged item was taken: {f:?}"
            ),
        }
    }
}
