//! The core contract over real TCP: shapes round-trip, calls multiplex,
//! services share a port, old servers answer new clients, limits fail one call.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::*;

#[tokio::test]
async fn every_supported_shape_round_trips() {
    let server = start_server().await;
    let c = ShapesClient::connect(server.local_addr()).await.unwrap();

    c.unit().await.unwrap();
    assert_eq!(c.string("héllo".into()).await.unwrap(), "olléh");
    let p = Point {
        x: 1,
        y: -2,
        label: Some("a".into()),
    };
    assert_eq!(
        c.structs(p).await.unwrap(),
        Point {
            x: -2,
            y: 1,
            label: Some("A".into())
        }
    );
    for s in [
        Shape::Circle {
            center: Point {
                x: 0,
                y: 0,
                label: None,
            },
            radius: 1.5,
        },
        Shape::Polygon(vec![
            Point {
                x: 1,
                y: 1,
                label: None
            };
            3
        ]),
        Shape::Empty,
    ] {
        assert_eq!(c.enums(s.clone()).await.unwrap(), s);
    }
    assert_eq!(
        c.tuple((7, i128::MIN, true)).await.unwrap(),
        (true, i128::MIN, 7)
    );
    assert_eq!(
        c.option(Some(vec!["a".into(), "b".into()])).await.unwrap(),
        Some(2)
    );
    assert_eq!(c.option(None).await.unwrap(), None);
    let m = HashMap::from([("x".to_string(), vec![1, 2]), ("y".to_string(), vec![])]);
    assert_eq!(
        c.map(m).await.unwrap(),
        vec![("x".into(), 3), ("y".into(), 0)]
    );
    assert_eq!(
        c.result(false).await.unwrap(),
        Ok(Point {
            x: 1,
            y: 2,
            label: None
        })
    );
    assert_eq!(
        c.result(true).await.unwrap(),
        Err(AppError {
            code: 404,
            message: "no such point".into()
        })
    );
    assert_eq!(
        c.many(1, 2, 3, u64::MAX, 0.5, 'λ', vec![-1, 0])
            .await
            .unwrap(),
        format!("1 2 3 {} 0.5 λ [-1, 0]", u64::MAX)
    );

    let calc = CalculatorClient::connect(server.local_addr())
        .await
        .unwrap();
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    assert_eq!(calc.div(6, 3).await.unwrap(), Ok(2));
    assert_eq!(calc.div(6, 0).await.unwrap(), Err(MathError::DivideByZero));
    calc.ping().await.unwrap();
}

// Multi-threaded: callers, the reader and the writer race across threads.
/// A call's future is what a caller keeps per call in flight (in its task,
/// or in a `Vec` of futures), and it is moved when it is awaited. It stays a
/// few words, whatever the method's shape: the uncommon paths (waiting for a
/// slot, reconnecting) are boxed when taken. As nested `async` blocks it was
/// 1.7 KB.
#[tokio::test]
async fn a_call_future_is_small() {
    let server = start_server().await;
    let c = ShapesClient::connect(server.local_addr()).await.unwrap();
    let sizes = [
        std::mem::size_of_val(&c.unit()),
        std::mem::size_of_val(&c.string(String::new())),
        std::mem::size_of_val(&c.result(false)),
        std::mem::size_of_val(&c.echo(Vec::new())),
    ];
    assert!(
        sizes.iter().all(|&n| n <= 256),
        "call futures of {sizes:?} bytes"
    );
    // And each still works (created, measured, dropped unpolled: nothing sent).
    assert_eq!(c.string("ab".into()).await.unwrap(), "ba");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_concurrent_calls_on_one_connection_pair_correctly() {
    let server = start_server().await;
    let calc = CalculatorClient::connect(server.local_addr())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..5_000i64)
        .map(|i| {
            let calc = calc.clone();
            tokio::spawn(async move { (i, calc.add(i, i * 1_000_000).await) })
        })
        .collect();
    for task in tasks {
        let (i, sum) = task.await.unwrap();
        assert_eq!(
            sum.unwrap(),
            i + i * 1_000_000,
            "call {i} got another call's answer"
        );
    }
    assert_eq!(server.connections(), 1, "clones share one connection");
}

#[tokio::test]
async fn a_slow_call_does_not_delay_fast_calls() {
    let server = start_server().await;
    let slow = SlowClient::connect(server.local_addr()).await.unwrap();
    let calc = CalculatorClient::new(slow.channel().clone());
    let long = tokio::spawn(slow.sleep(1_500, 1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    for i in 0..20 {
        assert_eq!(calc.add(i, 1).await.unwrap(), i + 1);
    }
    let fast = started.elapsed();
    assert!(!long.is_finished(), "the slow call should still be running");
    assert!(
        fast < Duration::from_millis(1_000),
        "20 fast calls took {fast:?} behind a slow one"
    );
    assert_eq!(long.await.unwrap().unwrap(), 1);
}

#[tokio::test]
async fn responses_arrive_in_completion_order_not_request_order() {
    let server = start_server().await;
    let slow = SlowClient::connect(server.local_addr()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (ms, id) in [(600, 1), (300, 2), (10, 3)] {
        let call = slow.sleep(ms, id);
        let tx = tx.clone();
        tokio::spawn(async move { tx.send(call.await.unwrap()).unwrap() });
    }
    drop(tx);
    let mut order = Vec::new();
    while let Some(id) = rx.recv().await {
        order.push(id);
    }
    assert_eq!(order, vec![3, 2, 1]);
}

#[tokio::test]
async fn two_services_share_one_server_and_port() {
    let server = start_server().await;
    let calc = CalculatorClient::connect(server.local_addr())
        .await
        .unwrap();
    let shapes = ShapesClient::new(calc.channel().clone());
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    assert_eq!(shapes.string("ab".into()).await.unwrap(), "ba");
}

#[tokio::test]
async fn adding_the_same_service_twice_is_refused() {
    let err = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .add_service(CalculatorServer::new(Calc))
        .bind("127.0.0.1:0")
        .await
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Config(_)), "{err}");
    assert!(err.to_string().contains("Calculator.add"), "{err}");
}

mod old {
    /// Version 1 of a service, as an old server runs it.
    #[rpc::service(name = "Inventory")]
    pub(crate) trait InventoryV1 {
        async fn count(&self) -> u32;
    }
}

mod new {
    /// Version 2: one more method, and the old one moved.
    #[rpc::service(name = "Inventory")]
    pub(crate) trait InventoryV2 {
        async fn restock(&self, n: u32) -> u32;
        async fn count(&self) -> u32;
    }
}

struct OldInventory;
impl old::InventoryV1 for OldInventory {
    async fn count(&self) -> u32 {
        41
    }
}

#[tokio::test]
async fn a_newer_client_gets_unknown_method_from_an_older_server_and_keeps_working() {
    let server = rpc::Server::builder()
        .add_service(old::InventoryV1Server::new(OldInventory))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let client = new::InventoryV2Client::connect(server.local_addr())
        .await
        .unwrap();
    assert_eq!(
        client.count().await.unwrap(),
        41,
        "reordering methods keeps ids"
    );
    let err = client.restock(5).await.unwrap_err();
    assert!(
        matches!(
            err,
            rpc::Error::UnknownMethod {
                method: "Inventory.restock"
            }
        ),
        "{err}"
    );
    assert_eq!(client.count().await.unwrap(), 41, "the connection stays up");
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_two_mib_payload_round_trips() {
    let server = start_server().await;
    let c = ShapesClient::connect(server.local_addr()).await.unwrap();
    let data: Vec<u8> = (0..2 << 20).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.echo(data.clone()).await.unwrap(), data);
}

#[tokio::test]
async fn a_request_over_the_frame_limit_fails_that_call_only() {
    let server = start_server().await;
    let c = ShapesClient::connect(server.local_addr()).await.unwrap();
    let in_flight = tokio::spawn(c.echo(vec![1; 1000]));
    let err = c.echo(vec![0; 256 << 20]).await.unwrap_err();
    assert!(
        matches!(err, rpc::Error::FrameTooLarge { method: "Shapes.echo", what: "request", limit, .. } if limit == 16 << 20),
        "{err}"
    );
    assert_eq!(in_flight.await.unwrap().unwrap(), vec![1; 1000]);
    assert_eq!(
        c.echo(vec![2; 10]).await.unwrap(),
        vec![2; 10],
        "the connection stays up"
    );
}

#[tokio::test]
async fn a_response_over_the_frame_limit_fails_that_call_only() {
    let server = start_server().await;
    let c = ShapesClient::connect(server.local_addr()).await.unwrap();
    let err = c.make(17 << 20).await.unwrap_err();
    assert!(
        matches!(
            err,
            rpc::Error::FrameTooLarge {
                what: "response",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(c.make(3).await.unwrap(), vec![7; 3]);
}

#[tokio::test]
async fn with_timeout_fails_with_deadline_exceeded_and_the_budget_travels() {
    let server = start_server().await;
    let slow = SlowClient::connect(server.local_addr()).await.unwrap();
    let quick = slow.with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = quick.sleep(5_000, 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            rpc::Error::DeadlineExceeded {
                method: "Slow.sleep",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    let seen = quick.budget_ms().await.unwrap();
    assert!(
        seen > 0 && seen <= 200,
        "the handler saw a budget of {seen} ms"
    );
    let default = slow.budget_ms().await.unwrap();
    assert!(
        default > 29_000 && default <= 30_000,
        "default budget {default} ms"
    );
}

#[tokio::test]
async fn killing_the_server_fails_a_pending_call_with_disconnected_promptly() {
    let server = start_server().await;
    let slow = SlowClient::connect(server.local_addr()).await.unwrap();
    let pending = tokio::spawn(slow.sleep(10_000, 1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Instant::now();
    server.abort().await;
    let err = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("the pending call hung after the server died")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            rpc::Error::Disconnected {
                method: "Slow.sleep",
                ..
            }
        ),
        "{err}"
    );
    assert!(killed.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_panicking_handler_fails_only_its_caller() {
    let server = start_server().await;
    let slow = SlowClient::connect(server.local_addr()).await.unwrap();
    let err = slow.panic("boom".into()).await.unwrap_err();
    assert!(
        matches!(&err, rpc::Error::Panicked { message, .. } if message == "boom"),
        "{err}"
    );
    assert_eq!(slow.sleep(1, 9).await.unwrap(), 9, "the connection goes on");
}

#[tokio::test]
async fn client_futures_are_send_and_static_and_clients_are_clone_send_sync() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    fn assert_clone_send_sync<T: Clone + Send + Sync>() {}
    assert_clone_send_sync::<CalculatorClient>();
    let server = start_server().await;
    let calc = CalculatorClient::connect(server.local_addr())
        .await
        .unwrap();
    let call = calc.add(1, 2);
    drop(calc); // the future borrows nothing from the client
    assert_send_static(&call);
    assert_eq!(tokio::spawn(call).await.unwrap().unwrap(), 3);
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_an_io_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = CalculatorClient::connect(addr).await.unwrap_err();
    assert!(matches!(err, rpc::Error::Io { .. }), "{err}");
}

#[tokio::test]
async fn a_server_speaking_another_version_is_named_in_the_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 28];
        s.read_exact(&mut hello).await.unwrap();
        hello[19] = 2; // the version's low byte: v2
        s.write_all(&hello).await.unwrap();
        let _ = s.read(&mut [0u8; 1]).await;
    });
    let err = CalculatorClient::connect(addr).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, rpc::Error::Protocol(_)), "{text}");
    assert!(text.contains("v1") && text.contains("v2"), "{text}");
}

#[tokio::test]
async fn mismatched_frame_limits_fail_one_call_not_the_connection() {
    // The server accepts 1 MiB; the client would accept and send 64 MiB.
    let strict = start_with(rpc::Server::builder().max_frame(1 << 20)).await;
    let channel = rpc::Channel::builder()
        .max_frame(64 << 20)
        .connect(strict.local_addr())
        .await
        .unwrap();
    let c = ShapesClient::new(channel);
    let err = c.echo(vec![0; 2 << 20]).await.unwrap_err();
    assert!(
        matches!(err, rpc::Error::FrameTooLarge { what: "request", limit, .. } if limit == 1 << 20),
        "{err}"
    );
    assert_eq!(
        c.echo(vec![1; 10]).await.unwrap(),
        vec![1; 10],
        "the connection stays up"
    );

    // The client accepts 1 MiB; the server would send 64 MiB.
    let generous = start_with(rpc::Server::builder().max_frame(64 << 20)).await;
    let channel = rpc::Channel::builder()
        .max_frame(1 << 20)
        .connect(generous.local_addr())
        .await
        .unwrap();
    let c = ShapesClient::new(channel);
    let err = c.make(2 << 20).await.unwrap_err();
    assert!(
        matches!(err, rpc::Error::FrameTooLarge { what: "response", limit, .. } if limit == 1 << 20),
        "{err}"
    );
    assert_eq!(
        c.make(3).await.unwrap(),
        vec![7; 3],
        "the connection stays up"
    );
    assert_eq!(generous.connections(), 1);
}
