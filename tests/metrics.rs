//! Metrics (feature `metrics`), as a recorder installed by the application
//! sees them: one count and one duration sample per call on each side, by
//! method and outcome; calls in flight; connections; bytes each way; stream
//! items; a balanced channel's hedges and its servers by state.
//!
//! metrics-util's debugging recorder is process-wide, and each snapshot
//! takes what was recorded since the last one (counters and gauges alike),
//! so the whole story is one test, in steps, each checking its deltas.

use std::time::Duration;

use futures::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

#[rpc::service]
trait Metered {
    async fn add(&self, a: u32, b: u32) -> u32;
    async fn boom(&self);
    async fn slow(&self, ms: u64);
    #[rpc(idempotent)]
    async fn lag(&self, ms: u64);
    async fn count(&self, n: u32) -> rpc::Stream<u32>;
    async fn sum(&self, items: rpc::Stream<u32>) -> u64;
}

/// Served by no server here.
#[rpc::service]
trait Absent {
    async fn nothing(&self);
}

struct M;

impl Metered for M {
    async fn add(&self, a: u32, b: u32) -> u32 {
        a + b
    }
    async fn boom(&self) {
        panic!("boom")
    }
    async fn slow(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    async fn lag(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    async fn count(&self, n: u32) -> rpc::Stream<u32> {
        rpc::Stream::iter(0..n)
    }
    async fn sum(&self, mut items: rpc::Stream<u32>) -> u64 {
        let mut sum = 0;
        while let Some(Ok(n)) = items.next().await {
            sum += u64::from(n);
        }
        sum
    }
}

/// What a snapshot says, by metric name and labels (`k=v` pairs, sorted).
struct Seen(Vec<(String, Vec<String>, DebugValue)>);

impl Seen {
    fn take(snapshotter: &Snapshotter) -> Seen {
        let all = snapshotter.snapshot().into_vec();
        Seen(
            all.into_iter()
                .map(|(key, _, _, value)| {
                    let (_, key) = key.into_parts();
                    let mut labels: Vec<String> = key
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect();
                    labels.sort();
                    (key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }

    fn find(&self, name: &str, labels: &[&str]) -> Option<&DebugValue> {
        let mut want: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        want.sort();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| v)
    }

    fn counter(&self, name: &str, labels: &[&str]) -> u64 {
        match self.find(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[&str]) -> f64 {
        match self.find(name, labels) {
            Some(DebugValue::Gauge(g)) => g.into_inner(),
            None => 0.0,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn samples(&self, name: &str, labels: &[&str]) -> Vec<f64> {
        match self.find(name, labels) {
            Some(DebugValue::Histogram(h)) => h.iter().map(|v| v.into_inner()).collect(),
            None => Vec::new(),
            other => panic!("{name}: {other:?}"),
        }
    }
}

async fn serve() -> rpc::ServerHandle {
    rpc::Server::builder()
        .add_service(MeteredServer::new(M))
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_connections_bytes_streams_and_balancing_are_measured() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder");

    // Unary calls: one count and one duration sample each, per side, by
    // method and outcome.
    let server = serve().await;
    let client = MeteredClient::connect(server.local_addr()).await.unwrap();
    for i in 0..3 {
        assert_eq!(client.add(i, 1).await.unwrap(), i + 1);
    }
    assert!(matches!(
        client.boom().await,
        Err(rpc::Error::Panicked { .. })
    ));
    // Refused before any handler: counted on both sides all the same.
    let absent = AbsentClient::new(client.channel().clone());
    assert!(matches!(
        absent.nothing().await,
        Err(rpc::Error::UnknownMethod { .. })
    ));
    // The server records a moment after it replied.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = Seen::take(&snapshotter);
    let add_ok = ["service=Metered", "method=add", "status=Ok"];
    let boom = ["service=Metered", "method=boom", "status=Panicked"];
    for side in ["client", "server"] {
        let calls = format!("rpc_{side}_calls_total");
        let duration = format!("rpc_{side}_call_duration_seconds");
        assert_eq!(seen.counter(&calls, &add_ok), 3, "{side}");
        assert_eq!(seen.counter(&calls, &boom), 1, "{side}");
        let samples = seen.samples(&duration, &add_ok);
        assert_eq!(samples.len(), 3, "{side}: {samples:?}");
        assert!(samples.iter().all(|&s| s > 0.0 && s < 5.0), "{samples:?}");
        assert_eq!(seen.samples(&duration, &boom).len(), 1, "{side}");
        // Every call that started ended.
        let in_flight = format!("rpc_{side}_calls_in_flight");
        let add = ["service=Metered", "method=add"];
        assert_eq!(seen.gauge(&in_flight, &add), 0.0, "{side}");
        assert_eq!(seen.gauge(&format!("rpc_{side}_connections"), &[]), 1.0);
    }
    let unknown = ["service=Absent", "method=nothing", "status=UnknownMethod"];
    assert_eq!(seen.counter("rpc_client_calls_total", &unknown), 1);
    let unknown = ["service=unknown", "method=unknown", "status=UnknownMethod"];
    assert_eq!(seen.counter("rpc_server_calls_total", &unknown), 1);
    // Every byte one side sent, the other received.
    let sent = seen.counter("rpc_client_bytes_sent_total", &[]);
    assert!(sent > 0);
    assert_eq!(seen.counter("rpc_server_bytes_received_total", &[]), sent);
    let back = seen.counter("rpc_server_bytes_sent_total", &[]);
    assert!(back > 0);
    assert_eq!(seen.counter("rpc_client_bytes_received_total", &[]), back);

    // A call in flight counts as one, on each side, until it ends.
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.slow(300).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = Seen::take(&snapshotter);
    let slow_labels = ["service=Metered", "method=slow"];
    assert_eq!(seen.gauge("rpc_client_calls_in_flight", &slow_labels), 1.0);
    assert_eq!(seen.gauge("rpc_server_calls_in_flight", &slow_labels), 1.0);
    slow.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = Seen::take(&snapshotter);
    assert_eq!(seen.gauge("rpc_client_calls_in_flight", &slow_labels), -1.0);
    assert_eq!(seen.gauge("rpc_server_calls_in_flight", &slow_labels), -1.0);

    // Stream items, both ways, counted by the side that sent or took them.
    let mut items = client.count(250).await.unwrap();
    let mut n = 0;
    while let Some(item) = items.next().await {
        item.unwrap();
        n += 1;
    }
    drop(items);
    assert_eq!(n, 250);
    let up = rpc::Stream::iter(1..=40u32);
    assert_eq!(client.sum(up).await.unwrap(), 820);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = Seen::take(&snapshotter);
    let count = ["service=Metered", "method=count"];
    let sum = ["service=Metered", "method=sum"];
    let with = |side: &str, labels: &[&str]| -> Vec<String> {
        let mut all = vec![format!("side={side}")];
        all.extend(labels.iter().map(|l| l.to_string()));
        all
    };
    let counted = |name: &str, side: &str, labels: &[&str]| {
        let labels = with(side, labels);
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        seen.counter(name, &labels)
    };
    assert_eq!(
        counted("rpc_stream_items_sent_total", "server", &count),
        250
    );
    assert_eq!(
        counted("rpc_stream_items_received_total", "client", &count),
        250
    );
    assert_eq!(counted("rpc_stream_items_sent_total", "client", &sum), 40);
    assert_eq!(
        counted("rpc_stream_items_received_total", "server", &sum),
        40
    );
    let count_ok = ["service=Metered", "method=count", "status=Ok"];
    assert_eq!(seen.counter("rpc_server_calls_total", &count_ok), 1);

    // A stream cut short still counts what it moved: the items taken, and
    // at least as many sent (the rest of a window may be in flight).
    let mut items = client.count(1_000_000).await.unwrap();
    for _ in 0..10 {
        items.next().await.unwrap().unwrap();
    }
    drop(items);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = Seen::take(&snapshotter);
    let taken = {
        let labels = with("client", &count);
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        seen.counter("rpc_stream_items_received_total", &labels)
    };
    let sent = {
        let labels = with("server", &count);
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        seen.counter("rpc_stream_items_sent_total", &labels)
    };
    assert_eq!(taken, 10);
    assert!((10..1_000_000).contains(&sent), "{sent} sent");
    let cancelled = ["service=Metered", "method=count", "status=Cancelled"];
    assert_eq!(seen.counter("rpc_server_calls_total", &cancelled), 1);
    assert_eq!(seen.counter("rpc_client_calls_total", &cancelled), 1);

    // Closing the connection takes it off the gauge on both sides.
    drop((client, absent));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = Seen::take(&snapshotter);
    assert_eq!(seen.gauge("rpc_client_connections", &[]), -1.0);
    assert_eq!(seen.gauge("rpc_server_connections", &[]), -1.0);

    // A balanced channel: its hedges, and its servers by state.
    let other = serve().await;
    let channel = rpc::Channel::balanced(rpc::discover::Static::new([
        server.local_addr(),
        other.local_addr(),
    ]))
    .hedge(rpc::client::Hedge::Fixed(Duration::from_millis(20)))
    .connect()
    .await
    .unwrap();
    let balanced = MeteredClient::new(channel);
    balanced.lag(100).await.unwrap();
    // The servers' states are reported every second.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let seen = Seen::take(&snapshotter);
    let lag = ["service=Metered", "method=lag"];
    assert_eq!(seen.counter("rpc_client_hedges_total", &lag), 1);
    assert_eq!(seen.counter("rpc_client_retries_total", &lag), 0);
    assert_eq!(
        seen.gauge("rpc_client_endpoints", &["state=connected"]),
        2.0
    );
    // One call, two attempts: the client counts the call once; the
    // servers count each attempt, the slower one cancelled once the other
    // answered.
    let lag_ok = ["service=Metered", "method=lag", "status=Ok"];
    let lag_cancelled = ["service=Metered", "method=lag", "status=Cancelled"];
    assert_eq!(seen.counter("rpc_client_calls_total", &lag_ok), 1);
    assert_eq!(seen.counter("rpc_server_calls_total", &lag_ok), 1);
    assert_eq!(seen.counter("rpc_server_calls_total", &lag_cancelled), 1);
    drop(balanced);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = Seen::take(&snapshotter);
    assert_eq!(
        seen.gauge("rpc_client_endpoints", &["state=connected"]),
        -2.0,
        "a dropped channel takes its servers off"
    );
    server.shutdown().await;
    other.shutdown().await;
}
