//! Per-call metadata both ways: what the client attaches reaches the
//! handler's context over every transport and through the balanced channel;
//! what the handler sets comes back; metadata that breaks the rules fails
//! that call only.

#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use futures::StreamExt;
use support::Transport;
use support::transport::over_all_transports;

#[rpc::service]
trait Tagged {
    /// The value of metadata key `key` the handler saw, if any; it sends
    /// back `served-by: tagged` and `echo: <key's value>`.
    async fn seen(&self, key: String) -> Option<String>;
    /// The same, as a stream of one item.
    async fn seen_stream(&self, key: String) -> rpc::Stream<Option<String>>;
}

#[derive(Clone, Default)]
struct TaggedImpl {
    ran: Arc<AtomicUsize>,
}

impl Tagged for TaggedImpl {
    async fn seen(&self, key: String) -> Option<String> {
        self.ran.fetch_add(1, SeqCst);
        let ctx = rpc::context::current();
        let value = ctx.metadata().get_str(&key).map(str::to_owned);
        rpc::context::set_reply_metadata("served-by", "tagged");
        if let Some(v) = &value {
            rpc::context::set_reply_metadata("echo", v.as_str());
        }
        value
    }

    async fn seen_stream(&self, key: String) -> rpc::Stream<Option<String>> {
        self.ran.fetch_add(1, SeqCst);
        let value = rpc::context::current()
            .metadata()
            .get_str(&key)
            .map(str::to_owned);
        rpc::Stream::iter([value])
    }
}

async fn start(
    transport: Transport,
    builder: rpc::server::Builder,
) -> (rpc::ServerHandle, TaggedClient, TaggedImpl) {
    let service = TaggedImpl::default();
    let (server, channel) = transport
        .start(builder.add_service(TaggedServer::new(service.clone())))
        .await;
    (server, TaggedClient::new(channel), service)
}

over_all_transports!(metadata_goes_with_the_call_and_comes_back_with_the_reply);
async fn metadata_goes_with_the_call_and_comes_back_with_the_reply(transport: Transport) {
    let (_server, client, _) = start(transport, rpc::Server::builder()).await;
    let tagged = client.with_metadata("x-request-id", "42");
    let (seen, reply) = rpc::metadata::capture(tagged.seen("x-request-id".into())).await;
    assert_eq!(seen.unwrap().as_deref(), Some("42"));
    assert_eq!(reply.get_str("served-by"), Some("tagged"));
    assert_eq!(reply.get_str("echo"), Some("42"));
    // The handle without it sends none; and a value may be any bytes.
    assert_eq!(client.seen("x-request-id".into()).await.unwrap(), None);
    let binary = client.with_metadata("blob", vec![0u8, 255, 7]);
    assert_eq!(binary.seen("blob".into()).await.unwrap(), None, "not UTF-8");
    // A streaming method's handler sees it too.
    let mut items = tagged.seen_stream("x-request-id".into()).await.unwrap();
    assert_eq!(items.next().await.unwrap().unwrap().as_deref(), Some("42"));
}

#[tokio::test]
async fn a_key_may_repeat_and_a_capture_sees_the_last_reply_only() {
    let (_server, client, _) = start(Transport::Tcp, rpc::Server::builder()).await;
    let opts = rpc::client::CallOptions::default()
        .with_metadata("k", "1")
        .with_metadata("k", "2");
    assert_eq!(
        opts.metadata().get_all("k").collect::<Vec<_>>(),
        [b"1", b"2"]
    );
    let tagged = TaggedClient::new(client.channel().with_options(opts));
    let (_, reply) = rpc::metadata::capture(async {
        tagged.seen("none".into()).await.unwrap();
        tagged.seen("k".into()).await.unwrap()
    })
    .await;
    assert_eq!(
        reply.get_str("echo"),
        Some("1"),
        "the last reply's metadata"
    );
    // A call outside a capture just drops its reply's metadata.
    assert_eq!(tagged.seen("k".into()).await.unwrap().as_deref(), Some("1"));
}

#[tokio::test]
async fn metadata_over_the_clients_limit_fails_the_call_before_it_is_sent() {
    let (server, client, service) = start(Transport::Tcp, rpc::Server::builder()).await;
    let big = client.with_metadata("big", vec![b'x'; 9 * 1024]);
    let err = big.seen("big".into()).await.unwrap_err();
    assert!(matches!(err, rpc::Error::InvalidMetadata { .. }), "{err:?}");
    assert!(err.to_string().contains("over the limit of 8192"), "{err}");
    assert!(!err.may_have_run() && !err.is_retryable());
    assert_eq!(service.ran.load(SeqCst), 0);
    let bad_key = client.with_metadata("Not-Lowercase", "v");
    let err = bad_key.seen("x".into()).await.unwrap_err();
    assert!(matches!(err, rpc::Error::InvalidMetadata { .. }), "{err:?}");
    assert!(err.to_string().contains("Not-Lowercase"), "{err}");
    // The connection is fine.
    assert_eq!(client.seen("x".into()).await.unwrap(), None);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn metadata_over_the_servers_limit_is_refused_and_the_connection_stays() {
    let service = TaggedImpl::default();
    let server = rpc::Server::builder()
        .max_metadata(1024)
        .add_service(TaggedServer::new(service.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let channel = rpc::Channel::builder()
        .max_metadata(64 * 1024)
        .connect(server.local_addr())
        .await
        .unwrap();
    let client = TaggedClient::new(channel);
    let err = client
        .with_metadata("big", vec![b'x'; 4096])
        .seen("big".into())
        .await
        .unwrap_err();
    assert!(matches!(err, rpc::Error::InvalidMetadata { .. }), "{err:?}");
    assert!(err.to_string().contains("over the limit of 1024"), "{err}");
    assert_eq!(service.ran.load(SeqCst), 0, "the handler did not run");
    let small = client.with_metadata("small", "ok");
    assert_eq!(
        small.seen("small".into()).await.unwrap().as_deref(),
        Some("ok")
    );
    assert_eq!(server.connections(), 1, "the same connection");
    assert_eq!(service.ran.load(SeqCst), 1);
}

#[tokio::test]
async fn metadata_goes_through_the_balanced_channel() {
    let mut servers = Vec::new();
    for _ in 0..2 {
        let server = rpc::Server::builder()
            .add_service(TaggedServer::new(TaggedImpl::default()))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        servers.push(server);
    }
    let addrs: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
    let channel = rpc::Channel::balanced(rpc::discover::Static::new(addrs))
        .connect()
        .await
        .unwrap();
    let client = TaggedClient::new(channel).with_metadata("tenant", "acme");
    for _ in 0..6 {
        let (seen, reply) = rpc::metadata::capture(client.seen("tenant".into())).await;
        assert_eq!(seen.unwrap().as_deref(), Some("acme"));
        assert_eq!(reply.get_str("echo"), Some("acme"));
    }
    let mut items = client.seen_stream("tenant".into()).await.unwrap();
    assert_eq!(
        items.next().await.unwrap().unwrap().as_deref(),
        Some("acme")
    );
}

/// A Request of `Tagged.seen(key)` carrying `block` as its metadata block.
fn request_with_block(call_id: u64, block: &[u8], key: &str) -> Vec<u8> {
    use support::raw;
    let mut p = rpc::protocol::method_id("Tagged.seen")
        .to_be_bytes()
        .to_vec();
    p.extend_from_slice(&5_000_000u64.to_be_bytes());
    p.extend_from_slice(block);
    p.extend_from_slice(&raw::args(&(key,)));
    raw::frame(raw::kind::REQUEST, 0x02, call_id, &p)
}

#[tokio::test]
async fn hostile_metadata_fails_its_call_and_the_connection_stays() {
    use support::raw::RawConn;
    let service = TaggedImpl::default();
    let server = rpc::Server::builder()
        .add_service(TaggedServer::new(service.clone()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut conn = RawConn::handshake(server.local_addr()).await;
    let before = support::resident();
    let cases: &[(&str, &[u8])] = &[
        ("cut short", &[0, 0]),
        ("claims 4 GiB", &[0xff, 0xff, 0xff, 0xff, 1, b'k']),
        ("past the frame", &[0, 0, 0, 200, 1, b'k', 0, 0, 0, 1, b'v']),
        ("uppercase key", &[0, 0, 0, 6, 1, b'K', 0, 0, 0, 0]),
        ("value past the block", &[0, 0, 0, 6, 1, b'k', 0, 0, 0, 9]),
        ("key past the block", &[0, 0, 0, 2, 9, b'k']),
    ];
    for (id, (name, block)) in cases.iter().enumerate() {
        conn.send(&request_with_block(id as u64, block, "k")).await;
        let reply = conn.next_frame(Duration::from_secs(3)).await.unwrap();
        assert_eq!(reply.call_id, id as u64, "{name}");
        assert_eq!(
            reply.status(),
            9,
            "{name}: InvalidMetadata, got {}",
            reply.message()
        );
    }
    let good = [0, 0, 0, 8, 1, b'k', 0, 0, 0, 2, b'o', b'k'];
    conn.send(&request_with_block(99, &good, "k")).await;
    let reply = conn.next_frame(Duration::from_secs(3)).await.unwrap();
    assert_eq!(reply.call_id, 99);
    assert_eq!(reply.value::<Option<String>>().as_deref(), Some("ok"));
    // This client's Hello did not say it accepts metadata: the handler's
    // goes unsent rather than break it.
    assert_eq!(reply.flags, 0);
    assert_eq!(service.ran.load(SeqCst), 1, "only the good request ran");
    assert!(
        support::resident() < before + (16 << 20),
        "nothing large was allocated"
    );
}

#[tokio::test]
async fn a_reply_with_bad_metadata_delivers_its_value_without_it() {
    use support::hand::{self, PROMPTLY};
    use support::raw;
    let (client, mut peer, _listener) = hand::client_and_peer(16).await;
    let first = tokio::spawn({
        let client = client.clone();
        async move { rpc::metadata::capture(client.hold(0, 1)).await }
    });
    let req = hand::next_request(&mut peer).await;
    // Status Ok, then a block whose key is not lowercase: the handler ran,
    // so its value is delivered, and the bad metadata dropped.
    let mut payload = vec![raw::status::OK, 0, 0, 0, 6, 1, b'K', 0, 0, 0, 0];
    payload.extend_from_slice(&raw::args(&1u32));
    peer.send(&raw::frame(raw::kind::RESPONSE, 0x02, req.id, &payload))
        .await;
    let (value, metadata) = tokio::time::timeout(PROMPTLY, first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.unwrap(), 1);
    assert!(metadata.is_empty(), "{metadata:?}");
    // A block whose length runs past the frame: where the value starts is
    // unknown, so the reply cannot be read; the handler may have run.
    let cut = tokio::spawn({
        let client = client.clone();
        async move { client.hold(0, 3).await }
    });
    let req = hand::next_request(&mut peer).await;
    let payload = vec![raw::status::OK, 0, 0, 1, 0, 1, b'k'];
    peer.send(&raw::frame(raw::kind::RESPONSE, 0x02, req.id, &payload))
        .await;
    let err = tokio::time::timeout(PROMPTLY, cut)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            rpc::Error::Decode {
                side: "response",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.may_have_run());
    // The next call on the same connection is answered, and its good
    // metadata is delivered.
    let second = tokio::spawn({
        let client = client.clone();
        async move { rpc::metadata::capture(client.hold(0, 2)).await }
    });
    let req = hand::next_request(&mut peer).await;
    let mut payload = vec![raw::status::OK, 0, 0, 0, 7, 1, b'k', 0, 0, 0, 1, b'v'];
    payload.extend_from_slice(&raw::args(&2u32));
    peer.send(&raw::frame(raw::kind::RESPONSE, 0x02, req.id, &payload))
        .await;
    let (value, metadata) = tokio::time::timeout(PROMPTLY, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.unwrap(), 2);
    assert_eq!(metadata.get_str("k"), Some("v"));
}

#[tokio::test]
async fn metadata_for_a_server_that_does_not_accept_it_fails_the_call_unsent() {
    use support::hand;
    // The hand-played server's Hello does not say it accepts metadata (as
    // a server of an older version): the flag would break its connection.
    let (client, mut peer, _listener) = hand::client_and_peer(16).await;
    let err = client.with_metadata("k", "v").hold(0, 1).await.unwrap_err();
    assert!(matches!(err, rpc::Error::InvalidMetadata { .. }), "{err:?}");
    assert!(
        err.to_string().contains("does not accept metadata"),
        "{err}"
    );
    assert!(
        hand::sync(&mut peer, 7).await.is_empty(),
        "nothing was sent"
    );
}
