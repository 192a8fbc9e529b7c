//! The core contract, over each transport (TCP, Unix sockets, in-memory):
//! shapes round-trip, calls multiplex, services share a port, old servers
//! answer new clients, limits fail one call. What needs a hand-played TCP
//! peer runs over TCP only.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rpc::transport::Peer;
use support::transport::{connect, connect_with, over_all_transports, serve_at};
use support::*;

over_all_transports!(every_supported_shape_round_trips);
async fn every_supported_shape_round_trips(transport: Transport) {
    let (server, channel) = start_over(transport, rpc::Server::builder()).await;
    let c = ShapesClient::new(channel);

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

    let calc = CalculatorClient::new(connect(server.address()).await);
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    assert_eq!(calc.div(6, 3).await.unwrap(), Ok(2));
    assert_eq!(calc.div(6, 0).await.unwrap(), Err(MathError::DivideByZero));
    calc.ping().await.unwrap();
}

over_all_transports!(a_call_future_is_small);
/// A call's future is what a caller keeps per call in flight (in its task,
/// or in a `Vec` of futures), and it is moved when it is awaited. It stays a
/// few words, whatever the method's shape: the uncommon paths (waiting for a
/// slot, reconnecting, a span recorded) are boxed when taken. (272 bytes:
/// small arguments in place with the schema fingerprint, the client's
/// shape for a mismatch's error, and a pointer for the call's span.)
async fn a_call_future_is_small(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let c = ShapesClient::new(channel);
    let sizes = [
        std::mem::size_of_val(&c.unit()),
        std::mem::size_of_val(&c.string(String::new())),
        std::mem::size_of_val(&c.result(false)),
        std::mem::size_of_val(&c.echo(Vec::new())),
    ];
    assert!(
        sizes.iter().all(|&n| n <= 272),
        "call futures of {sizes:?} bytes"
    );
    // And each still works (created, measured, dropped unpolled: nothing sent).
    assert_eq!(c.string("ab".into()).await.unwrap(), "ba");
}

// Multi-threaded: callers, the reader and the writer race across threads.
over_all_transports!(
    five_thousand_concurrent_calls_on_one_connection_pair_correctly,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn five_thousand_concurrent_calls_on_one_connection_pair_correctly(transport: Transport) {
    let (server, channel) = start_over(transport, rpc::Server::builder()).await;
    let calc = CalculatorClient::new(channel);
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

over_all_transports!(a_slow_call_does_not_delay_fast_calls);
async fn a_slow_call_does_not_delay_fast_calls(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let slow = SlowClient::new(channel);
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

over_all_transports!(responses_arrive_in_completion_order_not_request_order);
async fn responses_arrive_in_completion_order_not_request_order(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let slow = SlowClient::new(channel);
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

over_all_transports!(two_services_share_one_server_and_port);
async fn two_services_share_one_server_and_port(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let calc = CalculatorClient::new(channel);
    let shapes = ShapesClient::new(calc.channel().clone());
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    assert_eq!(shapes.string("ab".into()).await.unwrap(), "ba");
}

over_all_transports!(adding_the_same_service_twice_is_refused);
async fn adding_the_same_service_twice_is_refused(transport: Transport) {
    let builder = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .add_service(CalculatorServer::new(Calc));
    let err = serve_at(builder, &transport.fresh_address())
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

over_all_transports!(a_newer_client_gets_unknown_method_from_an_older_server_and_keeps_working);
async fn a_newer_client_gets_unknown_method_from_an_older_server_and_keeps_working(
    transport: Transport,
) {
    let server = transport
        .serve(rpc::Server::builder().add_service(old::InventoryV1Server::new(OldInventory)))
        .await;
    let client = new::InventoryV2Client::new(connect(server.address()).await);
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

over_all_transports!(a_two_mib_payload_round_trips);
async fn a_two_mib_payload_round_trips(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let c = ShapesClient::new(channel);
    let data: Vec<u8> = (0..2 << 20).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.echo(data.clone()).await.unwrap(), data);
}

over_all_transports!(a_request_over_the_frame_limit_fails_that_call_only);
async fn a_request_over_the_frame_limit_fails_that_call_only(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let c = ShapesClient::new(channel);
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

over_all_transports!(a_response_over_the_frame_limit_fails_that_call_only);
async fn a_response_over_the_frame_limit_fails_that_call_only(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let c = ShapesClient::new(channel);
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

over_all_transports!(with_timeout_fails_with_deadline_exceeded_and_the_budget_travels);
async fn with_timeout_fails_with_deadline_exceeded_and_the_budget_travels(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let slow = SlowClient::new(channel);
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

over_all_transports!(call_options_give_the_calls_through_a_handle_their_timeout);
/// `Channel::with_options` makes a handle whose calls have the options'
/// timeout: a slow call through it fails with DeadlineExceeded naming that
/// budget. The handle and its clones report the options; the channel it
/// came from keeps its own.
async fn call_options_give_the_calls_through_a_handle_their_timeout(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let budget = Duration::from_millis(200);
    let quick = channel.with_options(rpc::client::CallOptions::default().with_timeout(budget));
    assert_eq!(quick.options().timeout(), budget);
    assert_eq!(quick.clone().options().timeout(), budget);
    assert_eq!(quick.timeout(), budget);
    assert_eq!(channel.options().timeout(), Duration::from_secs(30));
    let started = Instant::now();
    let slow = SlowClient::new(quick).sleep(5_000, 1);
    hand::fails_at_its_deadline("the slow call", slow, budget, started).await;
}

over_all_transports!(a_channel_names_the_server_it_is_connected_to);
/// `Channel::peer()` names the server as its transport does, and
/// `peer_addr()` gives its socket address where it has one (TCP).
async fn a_channel_names_the_server_it_is_connected_to(transport: Transport) {
    let (server, channel) = start_over(transport, rpc::Server::builder()).await;
    let (peer, addr) = (channel.peer(), channel.peer_addr());
    match transport {
        Transport::Tcp => {
            assert_eq!(peer, Peer::Tcp(server.local_addr()));
            assert_eq!(addr, Some(server.local_addr()));
        }
        Transport::Unix => {
            assert!(matches!(peer, Peer::Unix(Some(_))), "{peer:?}");
            assert_eq!(addr, None);
        }
        Transport::Memory => {
            assert_eq!(peer, Peer::Memory);
            assert_eq!(addr, None);
        }
    }
}

over_all_transports!(killing_the_server_fails_a_pending_call_with_disconnected_promptly);
async fn killing_the_server_fails_a_pending_call_with_disconnected_promptly(transport: Transport) {
    let (server, channel) = start_over(transport, rpc::Server::builder()).await;
    let slow = SlowClient::new(channel);
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

over_all_transports!(a_panicking_handler_fails_only_its_caller);
async fn a_panicking_handler_fails_only_its_caller(transport: Transport) {
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let slow = SlowClient::new(channel);
    let err = slow.panic("boom".into()).await.unwrap_err();
    assert!(
        matches!(&err, rpc::Error::Panicked { message, .. } if message == "boom"),
        "{err}"
    );
    assert_eq!(slow.sleep(1, 9).await.unwrap(), 9, "the connection goes on");
}

over_all_transports!(client_futures_are_send_and_static_and_clients_are_clone_send_sync);
async fn client_futures_are_send_and_static_and_clients_are_clone_send_sync(transport: Transport) {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    fn assert_clone_send_sync<T: Clone + Send + Sync>() {}
    assert_clone_send_sync::<CalculatorClient>();
    let (_server, channel) = start_over(transport, rpc::Server::builder()).await;
    let calc = CalculatorClient::new(channel);
    let call = calc.add(1, 2);
    drop(calc); // the future borrows nothing from the client
    assert_send_static(&call);
    assert_eq!(tokio::spawn(call).await.unwrap().unwrap(), 3);
}

over_all_transports!(connecting_where_no_server_listens_is_an_io_error);
/// A closed port, a socket path with no file, a name nobody serves.
async fn connecting_where_no_server_listens_is_an_io_error(transport: Transport) {
    let address = transport.unserved_address();
    let err = connect_with(rpc::Channel::builder(), &address)
        .await
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Io { .. }), "{err}");
}

#[tokio::test]
async fn a_server_speaking_another_version_is_named_in_the_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 32];
        s.read_exact(&mut hello).await.unwrap();
        hello[19] = 2; // the version's low byte: v2
        s.write_all(&hello).await.unwrap();
        let _ = s.read(&mut [0u8; 1]).await;
    });
    let err = CalculatorClient::connect(addr).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, rpc::Error::Protocol { .. }), "{text}");
    assert!(text.contains("v1") && text.contains("v2"), "{text}");
}

over_all_transports!(mismatched_frame_limits_fail_one_call_not_the_connection);
async fn mismatched_frame_limits_fail_one_call_not_the_connection(transport: Transport) {
    // The server accepts 1 MiB; the client would accept and send 64 MiB.
    let strict = transport
        .serve(with_services(rpc::Server::builder().max_frame(1 << 20)))
        .await;
    let channel = connect_with(
        rpc::Channel::builder().max_frame(64 << 20),
        strict.address(),
    )
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
    let generous = transport
        .serve(with_services(rpc::Server::builder().max_frame(64 << 20)))
        .await;
    let channel = connect_with(
        rpc::Channel::builder().max_frame(1 << 20),
        generous.address(),
    )
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
