//! Spans, as a `tracing` subscriber sees them: exactly one client span and
//! one server span per call, with the OpenTelemetry RPC fields and the
//! outcome, closed once; the server's span a child of the client's across
//! the wire (W3C trace context in the call's metadata), through a chain of
//! services; a streaming call's spans open until its stream ends.
//!
//! One subscriber serves the whole process (spans are made on the server's
//! tasks, which no per-test default reaches), so each test calls methods of
//! its own and picks its spans out by method.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::{LookupSpan, Registry};

/// A span as the test saw it.
#[derive(Debug, Clone, Default)]
struct Seen {
    name: &'static str,
    fields: HashMap<String, String>,
    /// The `tracing` parent's span id (`span_id` field), if it had one.
    parent: Option<String>,
    closed: u32,
}

impl Seen {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Spans(Mutex<Vec<Seen>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

/// Where a span's record is, in the span's extensions.
struct Index(usize);

struct Keep(Arc<Spans>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Keep {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attrs.metadata().name(),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        let span = ctx.span(id).expect("a new span is registered");
        if let Some(parent) = span.parent() {
            let index = parent.extensions().get::<Index>().map(|i| i.0);
            let spans = self.0.0.lock().unwrap();
            seen.parent = index.map(|i| spans[i].field("span_id").to_owned());
        }
        let mut spans = self.0.0.lock().unwrap();
        spans.push(seen);
        span.extensions_mut().insert(Index(spans.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a recorded span is registered");
        let Some(&Index(i)) = span.extensions().get::<Index>() else {
            return;
        };
        values.record(&mut Fields(&mut self.0.0.lock().unwrap()[i].fields));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).expect("a closing span is registered");
        if let Some(&Index(i)) = span.extensions().get::<Index>() {
            self.0.0.lock().unwrap()[i].closed += 1;
        }
    }
}

fn spans() -> &'static Arc<Spans> {
    static SPANS: OnceLock<Arc<Spans>> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Arc::new(Spans::default());
        let subscriber = Registry::default().with(Keep(spans.clone()));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        spans
    })
}

/// The spans of `method` ("Service.method") so far, once each has closed
/// (spans close a moment after the reply, on the server's task).
async fn spans_of(method: &str, count: usize) -> Vec<Seen> {
    let (service, name) = method.split_once('.').unwrap();
    for _ in 0..200 {
        let of: Vec<Seen> = spans()
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.field("rpc.service") == service && s.field("rpc.method") == name)
            .cloned()
            .collect();
        if of.len() >= count && of.iter().all(|s| s.closed > 0) {
            return of;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{count} closed spans of {method} never came");
}

fn one<'a>(spans: &'a [Seen], name: &str) -> &'a Seen {
    let of: Vec<&Seen> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(of.len(), 1, "{name}: {spans:#?}");
    of[0]
}

#[rpc::service]
trait Traced {
    async fn hello(&self, n: u32) -> u32;
    async fn fails(&self) -> Result<(), String>;
    async fn panics(&self);
    async fn forward(&self, to: String) -> String;
    async fn count(&self, n: u32) -> rpc::Stream<u32>;
    async fn trace(&self) -> String;
    async fn maybe(&self, ok: bool) -> Result<rpc::Stream<u32>, String>;
    async fn forward_in_task(&self, to: String) -> String;
    async fn balanced(&self) -> u32;
    /// The first call of the process answers after 150 ms, the others
    /// after 1 s.
    #[rpc(idempotent)]
    async fn first_waits(&self) -> u32;
    async fn panics_too(&self);
    async fn hangs(&self);
}

#[rpc::service]
trait Downstream {
    async fn leaf(&self) -> String;
    /// The same; a test of its own calls it (tests run at once, and pick
    /// their spans out by method).
    async fn leaf_from_task(&self) -> String;
}

struct T;

/// A call of `hangs` has reached its handler.
static HANGING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Traced for T {
    async fn hello(&self, n: u32) -> u32 {
        n + 1
    }
    async fn fails(&self) -> Result<(), String> {
        Err("no".into())
    }
    async fn panics(&self) {
        panic!("on purpose")
    }
    async fn forward(&self, to: String) -> String {
        let down = DownstreamClient::connect(to.as_str()).await.unwrap();
        down.leaf().await.unwrap()
    }
    async fn count(&self, n: u32) -> rpc::Stream<u32> {
        rpc::Stream::iter(0..n)
    }
    async fn trace(&self) -> String {
        let trace = rpc::context::current().trace().cloned().unwrap();
        trace.trace_id_hex()
    }
    async fn maybe(&self, ok: bool) -> Result<rpc::Stream<u32>, String> {
        if ok {
            Ok(rpc::Stream::iter(0..3))
        } else {
            Err("no".into())
        }
    }
    async fn balanced(&self) -> u32 {
        7
    }
    async fn first_waits(&self) -> u32 {
        static CALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let first = !CALLED.swap(true, std::sync::atomic::Ordering::SeqCst);
        let ms = if first { 150 } else { 1000 };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        8
    }
    async fn panics_too(&self) {
        panic!("on purpose")
    }
    async fn hangs(&self) {
        HANGING.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    async fn forward_in_task(&self, to: String) -> String {
        let task = rpc::context::spawn(async move {
            let down = DownstreamClient::connect(to.as_str()).await.unwrap();
            down.leaf_from_task().await.unwrap()
        });
        task.await.unwrap()
    }
}

struct D;

impl Downstream for D {
    async fn leaf(&self) -> String {
        rpc::context::current()
            .trace()
            .map(|t| t.trace_id_hex())
            .unwrap_or_default()
    }
    async fn leaf_from_task(&self) -> String {
        self.leaf().await
    }
}

async fn serve() -> (rpc::ServerHandle, TracedClient) {
    spans();
    let server = rpc::Server::builder()
        .add_service(TracedServer::new(T))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = TracedClient::connect(server.local_addr()).await.unwrap();
    (server, client)
}

#[tokio::test]
async fn a_call_has_one_client_span_and_one_server_span_parented_across_the_wire() {
    let (server, client) = serve().await;
    assert_eq!(client.hello(1).await.unwrap(), 2);
    let spans = spans_of("Traced.hello", 2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let c = one(&spans, "rpc.client");
    let s = one(&spans, "rpc.server");
    for (span, kind) in [(c, "client"), (s, "server")] {
        assert_eq!(span.closed, 1, "{span:?}");
        assert_eq!(span.field("otel.kind"), kind);
        assert_eq!(span.field("otel.name"), "Traced/hello");
        assert_eq!(span.field("rpc.system"), "zrpc");
        assert_eq!(span.field("rpc.status"), "Ok");
        assert_eq!(span.field("trace_id").len(), 32, "{span:?}");
        assert_eq!(span.field("span_id").len(), 16, "{span:?}");
    }
    // The server's span is the client's child, in the same trace.
    assert_eq!(s.field("trace_id"), c.field("trace_id"));
    assert_eq!(s.field("parent_span_id"), c.field("span_id"));
    assert_ne!(s.field("span_id"), c.field("span_id"));
    assert_eq!(c.field("parent_span_id"), "", "a root: no caller");
    // Who called, and whom.
    assert_eq!(s.field("network.peer.address"), "127.0.0.1");
    assert!(!s.field("network.peer.port").is_empty());
    assert!(!s.field("rpc.call_id").is_empty());
    // The same call, as its client and its server name it.
    assert_eq!(c.field("rpc.call_id"), s.field("rpc.call_id"));
    assert_eq!(c.field("server.address"), "127.0.0.1");
    assert_eq!(
        c.field("server.port"),
        server.local_addr().port().to_string()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn failures_are_recorded_with_their_status_and_app_errors_are_not_failures() {
    let (server, client) = serve().await;
    let err = client.panics().await.unwrap_err();
    assert!(matches!(err, rpc::Error::Panicked { .. }), "{err:?}");
    let spans = spans_of("Traced.panics", 2).await;
    for span in &spans {
        assert_eq!(span.field("rpc.status"), "Panicked", "{span:?}");
        assert_eq!(span.field("otel.status_code"), "ERROR", "{span:?}");
        assert!(
            span.field("error.message").contains("on purpose"),
            "{span:?}"
        );
    }
    // An application's `Err` is a value the call delivered.
    assert_eq!(client.fails().await.unwrap(), Err("no".to_string()));
    for span in spans_of("Traced.fails", 2).await {
        assert_eq!(span.field("rpc.status"), "Ok", "{span:?}");
        assert_eq!(span.field("otel.status_code"), "", "{span:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_call_made_in_a_handler_continues_the_trace() {
    let (server, client) = serve().await;
    let down = rpc::Server::builder()
        .add_service(DownstreamServer::new(D))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let seen_downstream = client.forward(down.local_addr().to_string()).await.unwrap();
    let outer = spans_of("Traced.forward", 2).await;
    let inner = spans_of("Downstream.leaf", 2).await;
    let (outer_client, outer_server) = (one(&outer, "rpc.client"), one(&outer, "rpc.server"));
    let (inner_client, inner_server) = (one(&inner, "rpc.client"), one(&inner, "rpc.server"));
    let trace = outer_client.field("trace_id");
    for span in [outer_server, inner_client, inner_server] {
        assert_eq!(span.field("trace_id"), trace, "{span:?}");
    }
    // The handler's call is a child of the handler's span, in-process
    // (tracing) and on the wire (trace context) alike.
    assert_eq!(
        inner_client.parent.as_deref(),
        Some(outer_server.field("span_id"))
    );
    assert_eq!(
        inner_client.field("parent_span_id"),
        outer_server.field("span_id")
    );
    assert_eq!(
        inner_server.field("parent_span_id"),
        inner_client.field("span_id")
    );
    // And the downstream handler sees the same trace in its context.
    assert_eq!(seen_downstream, trace);
    down.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_streaming_call_s_spans_last_until_the_stream_ends() {
    let (server, client) = serve().await;
    let mut items = client.count(1000).await.unwrap();
    let mut n = 0;
    while let Some(item) = items.next().await {
        item.unwrap();
        n += 1;
    }
    assert_eq!(n, 1000);
    let spans = spans_of("Traced.count", 2).await;
    let s = one(&spans, "rpc.server");
    assert_eq!(s.field("rpc.status"), "Ok", "{s:?}");
    assert_eq!(s.closed, 1);
    // A stream dropped early: the server's span says so.
    let mut items = client.count(u32::MAX).await.unwrap();
    items.next().await.unwrap().unwrap();
    drop(items);
    let spans = spans_of("Traced.count", 4).await;
    let statuses: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "rpc.server")
        .map(|s| s.field("rpc.status"))
        .collect();
    assert_eq!(statuses, ["Ok", "Cancelled"], "{spans:#?}");
    // The client's span, too, lasts until the stream it returned ends.
    let statuses: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "rpc.client")
        .map(|s| s.field("rpc.status"))
        .collect();
    assert_eq!(statuses, ["Ok", "Cancelled"], "{spans:#?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_caller_s_own_traceparent_is_the_parent_of_the_call() {
    let (server, client) = serve().await;
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let client = client.with_metadata("traceparent", parent);
    let seen = client.trace().await.unwrap();
    assert_eq!(seen, "0af7651916cd43dd8448eb211c80319c");
    let spans = spans_of("Traced.trace", 2).await;
    let (c, s) = (one(&spans, "rpc.client"), one(&spans, "rpc.server"));
    // The client's span continues the caller's trace, and the wire says so:
    // the server's parent is the client's span, not the caller's.
    assert_eq!(c.field("trace_id"), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(c.field("parent_span_id"), "b7ad6b7169203331");
    assert_eq!(s.field("trace_id"), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(s.field("parent_span_id"), c.field("span_id"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_streaming_call_answered_with_an_application_error_is_ok_on_both_sides() {
    let (server, client) = serve().await;
    assert_eq!(client.maybe(false).await.unwrap().err(), Some("no".into()));
    let spans = spans_of("Traced.maybe", 2).await;
    for span in &spans {
        assert_eq!(span.field("rpc.status"), "Ok", "{span:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_call_made_in_a_task_the_handler_spawned_continues_the_trace() {
    let (server, client) = serve().await;
    let down = rpc::Server::builder()
        .add_service(DownstreamServer::new(D))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let seen = client
        .forward_in_task(down.local_addr().to_string())
        .await
        .unwrap();
    let outer = spans_of("Traced.forward_in_task", 2).await;
    let outer_server = one(&outer, "rpc.server");
    assert_eq!(seen, outer_server.field("trace_id"));
    let inner = spans_of("Downstream.leaf_from_task", 2).await;
    assert!(
        inner.iter().any(|s| s.name == "rpc.client"
            && s.field("parent_span_id") == outer_server.field("span_id")),
        "{inner:#?}"
    );
    down.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_balanced_call_s_span_names_the_server_its_attempt_went_to() {
    let (server, _) = serve().await;
    let channel = rpc::Channel::balanced(rpc::discover::Static::new([server.local_addr()]))
        .connect()
        .await
        .unwrap();
    assert_eq!(TracedClient::new(channel).balanced().await.unwrap(), 7);
    let spans = spans_of("Traced.balanced", 2).await;
    let (c, s) = (one(&spans, "rpc.client"), one(&spans, "rpc.server"));
    assert_eq!(c.field("server.address"), "127.0.0.1");
    assert_eq!(
        c.field("server.port"),
        server.local_addr().port().to_string()
    );
    assert_eq!(c.field("rpc.call_id"), s.field("rpc.call_id"));
    server.shutdown().await;
}

/// A hedged call on a balanced channel of two servers: a span per attempt
/// under the call's span, numbered, the hedge marked, each with its call id
/// and server; the attempt that answered first is `Ok`, the other
/// `Cancelled`, and the call's span names the server and call id of the
/// one that answered (the first attempt, as a rule: the first call to
/// reach a server answers first, and the hedge goes out 50 ms after it).
#[tokio::test]
async fn a_hedged_call_has_a_span_per_attempt_under_the_call_s() {
    let hedge = rpc::client::Hedge::Fixed(Duration::from_millis(50));
    let (first, second, client) = two_servers(hedge).await;
    assert_eq!(client.first_waits().await.unwrap(), 8);
    // The call's span, two attempts' and two servers'.
    let spans = spans_of("Traced.first_waits", 5).await;
    let c = one(&spans, "rpc.client");
    let mut attempts: Vec<&Seen> = spans.iter().filter(|s| s.name == "rpc.attempt").collect();
    attempts.sort_by_key(|a| a.field("rpc.attempt").to_owned());
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    let ports = [first.local_addr().port(), second.local_addr().port()].map(|p| p.to_string());
    for (n, a) in attempts.iter().enumerate() {
        assert_eq!(a.field("rpc.attempt"), (n + 1).to_string());
        assert_eq!(a.field("rpc.hedge"), (n == 1).to_string());
        assert_eq!(a.parent.as_deref(), Some(c.field("span_id")), "{a:#?}");
        assert_eq!(a.field("server.address"), "127.0.0.1");
        assert!(ports.contains(&a.field("server.port").to_owned()), "{a:#?}");
        assert_eq!(a.closed, 1);
    }
    assert_ne!(
        attempts[0].field("server.port"),
        attempts[1].field("server.port")
    );
    // Either may answer first (the first call to reach a server waits).
    let mut statuses: Vec<&str> = attempts.iter().map(|a| a.field("rpc.status")).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["Cancelled", "Ok"]);
    let won = attempts
        .iter()
        .find(|a| a.field("rpc.status") == "Ok")
        .unwrap();
    assert_eq!(c.field("rpc.status"), "Ok");
    assert_eq!(c.field("server.port"), won.field("server.port"));
    assert_eq!(c.field("rpc.call_id"), won.field("rpc.call_id"));
    // Each attempt reached a server, under the call's trace.
    let mut sent: Vec<&str> = attempts.iter().map(|a| a.field("rpc.call_id")).collect();
    let mut served: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "rpc.server")
        .map(|s| s.field("rpc.call_id"))
        .collect();
    sent.sort_unstable();
    served.sort_unstable();
    assert_eq!(sent, served);
    for s in spans.iter().filter(|s| s.name == "rpc.server") {
        assert_eq!(s.field("trace_id"), c.field("trace_id"));
    }
    first.shutdown().await;
    second.shutdown().await;
}

/// Two servers, and a client of both through a balanced channel.
async fn two_servers(
    hedge: rpc::client::Hedge,
) -> (rpc::ServerHandle, rpc::ServerHandle, TracedClient) {
    let (first, _) = serve().await;
    let (second, _) = serve().await;
    let channel = rpc::Channel::balanced(rpc::discover::Static::new([
        first.local_addr(),
        second.local_addr(),
    ]))
    .hedge(hedge)
    .connect()
    .await
    .unwrap();
    (first, second, TracedClient::new(channel))
}

/// An attempt answered with a failure status records that status, as its
/// call does; a call dropped while out leaves its attempt `Cancelled`, and
/// the call's span still names the server and call id it went out as.
#[tokio::test]
async fn a_balanced_call_s_attempt_records_a_failed_reply_and_a_dropped_call() {
    let (first, second, client) = two_servers(rpc::client::Hedge::Off).await;
    let panicked = client.panics_too().await;
    assert!(
        matches!(panicked, Err(rpc::Error::Panicked { .. })),
        "{panicked:?}"
    );
    let spans = spans_of("Traced.panics_too", 3).await;
    let (c, a) = (one(&spans, "rpc.client"), one(&spans, "rpc.attempt"));
    assert_eq!(c.field("rpc.status"), "Panicked");
    assert_eq!(a.field("rpc.status"), "Panicked");
    assert_eq!(a.field("otel.status_code"), "ERROR");
    assert_eq!(c.field("server.port"), a.field("server.port"));

    // Dropped once its handler runs.
    let call = client.hangs();
    tokio::select! {
        done = call => panic!("the call returned: {done:?}"),
        () = async {
            while !HANGING.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } => {}
    }
    let spans = spans_of("Traced.hangs", 3).await;
    let (c, a, s) = (
        one(&spans, "rpc.client"),
        one(&spans, "rpc.attempt"),
        one(&spans, "rpc.server"),
    );
    assert_eq!(c.field("rpc.status"), "Cancelled");
    assert_eq!(a.field("rpc.status"), "Cancelled");
    assert!(!a.field("server.port").is_empty(), "{a:#?}");
    assert_eq!(c.field("server.port"), a.field("server.port"));
    assert_eq!(c.field("rpc.call_id"), a.field("rpc.call_id"));
    assert_eq!(a.field("rpc.call_id"), s.field("rpc.call_id"));
    first.shutdown().await;
    second.shutdown().await;
}
