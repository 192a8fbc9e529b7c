//! Spans exported through OpenTelemetry (feature `opentelemetry`), as an
//! application wires them with `tracing-opentelemetry`'s layer: the
//! server's span of a call is the child of the client's in the exported
//! trace (the W3C context crossed the wire in the call's metadata), with
//! the conventions' span kinds and names; a call made in a handler joins
//! the same trace.

use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

#[rpc::service]
trait Front {
    async fn hello(&self, back: String) -> String;
    /// The same, the call made from a task the handler spawned.
    async fn hello_in_task(&self, back: String) -> String;
}

#[rpc::service]
trait Back {
    async fn leaf(&self) -> u32;
}

struct F;

impl Front for F {
    async fn hello(&self, back: String) -> String {
        let back = BackClient::connect(back.as_str()).await.unwrap();
        back.leaf().await.unwrap().to_string()
    }

    async fn hello_in_task(&self, back: String) -> String {
        let task = rpc::context::spawn(async move { F.hello(back).await });
        task.await.unwrap()
    }
}

struct B;

impl Back for B {
    async fn leaf(&self) -> u32 {
        7
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_spans_join_across_the_wire() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let front = rpc::Server::builder()
        .add_service(FrontServer::new(F))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let back = rpc::Server::builder()
        .add_service(BackServer::new(B))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = FrontClient::connect(front.local_addr()).await.unwrap();
    let out = client.hello(back.local_addr().to_string()).await.unwrap();
    assert_eq!(out, "7");
    // The servers' spans close a moment after their replies.
    let mut spans = Vec::new();
    for _ in 0..100 {
        provider.force_flush().unwrap();
        spans = exporter.get_finished_spans().unwrap();
        if spans.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let clients: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    let servers: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    assert_eq!((clients.len(), servers.len()), (2, 2), "{spans:#?}");
    let trace = clients[0].span_context.trace_id();
    for span in &spans {
        assert_eq!(span.span_context.trace_id(), trace, "one trace: {span:#?}");
    }
    let front_server = servers.iter().find(|s| s.name == "Front/hello").unwrap();
    let front_client = clients.iter().find(|s| s.name == "Front/hello").unwrap();
    let back_client = clients.iter().find(|s| s.name == "Back/leaf").unwrap();
    let back_server = servers.iter().find(|s| s.name == "Back/leaf").unwrap();
    // Across the wire: each server span is its client span's child.
    assert_eq!(
        front_server.parent_span_id,
        front_client.span_context.span_id()
    );
    assert!(front_server.parent_span_is_remote);
    assert_eq!(
        back_server.parent_span_id,
        back_client.span_context.span_id()
    );
    // In-process: the handler's call is the front server span's child.
    assert_eq!(
        back_client.parent_span_id,
        front_server.span_context.span_id()
    );
    // The conventions' attributes reach the exporter.
    let attribute = |span: &SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(
        attribute(back_server, "rpc.system").as_deref(),
        Some("zrpc")
    );
    assert_eq!(attribute(back_server, "rpc.status").as_deref(), Some("Ok"));
    // A call made from a task the handler spawned (no current span there)
    // joins the same trace, as the handler's span's child.
    exporter.reset();
    let out = client
        .hello_in_task(back.local_addr().to_string())
        .await
        .unwrap();
    assert_eq!(out, "7");
    let mut spans = Vec::new();
    for _ in 0..100 {
        provider.force_flush().unwrap();
        spans = exporter.get_finished_spans().unwrap();
        if spans.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let trace = spans[0].span_context.trace_id();
    assert!(
        spans.iter().all(|s| s.span_context.trace_id() == trace),
        "{spans:#?}"
    );
    let outer = spans
        .iter()
        .find(|s| s.name == "Front/hello_in_task" && s.span_kind == SpanKind::Server)
        .unwrap();
    let inner = spans
        .iter()
        .find(|s| s.name == "Back/leaf" && s.span_kind == SpanKind::Client)
        .unwrap();
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
    front.shutdown().await;
    back.shutdown().await;
}
