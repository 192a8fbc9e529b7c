//! The fault-injection transport (`rpc::fault`): calls work through it; its
//! latency adds to every round trip without breaking framing; a stall holds
//! a call past its deadline and resume lets the next one through; refusing
//! fails connects with ConnectionRefused until lifted, when the channel
//! reconnects; a disconnect fails calls in flight with Disconnected and the
//! next call reconnects; names are freed when the server stops.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc::fault::Network;
use rpc::transport::Address;
use support::hand::within;
use support::{Calc, CalculatorClient, CalculatorServer};
use tokio::sync::Notify;

/// A call that runs until the test cuts it off.
#[rpc::service]
pub trait Hold {
    /// Tells the test it has started, then waits an hour.
    async fn hold(&self) -> u32;
}

struct HoldImpl {
    started: Arc<Notify>,
}

impl Hold for HoldImpl {
    async fn hold(&self) -> u32 {
        self.started.notify_one();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        0
    }
}

/// A server on `net`'s endpoint "a", serving the calculator and `Hold`,
/// and a channel to it; `started` is told when a `hold` call starts.
async fn serve(net: &Network) -> (rpc::ServerHandle, rpc::Channel, Arc<Notify>) {
    let started = Arc::new(Notify::new());
    let server = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .add_service(HoldServer::new(HoldImpl {
            started: started.clone(),
        }))
        .serve(net.listen("a").unwrap())
        .unwrap();
    let channel = rpc::Channel::builder()
        .connect_with(net.connector("a"))
        .await
        .unwrap();
    (server, channel, started)
}

fn assert_refused(err: &rpc::Error) {
    let rpc::Error::Io { source, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

#[tokio::test]
async fn calls_work_through_it() {
    let net = Network::new();
    let (server, channel, _) = serve(&net).await;
    let a = net.endpoint("a");
    assert_eq!(server.address(), &Address::Other("fault:a".into()));
    assert_eq!(a.address(), Address::Other("fault:a".into()));
    assert_eq!(channel.address(), a.address());
    let calc = CalculatorClient::new(channel);
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    assert_eq!(a.connections(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn latency_adds_to_a_round_trip_and_keeps_every_frame_whole() {
    let net = Network::new();
    let (server, channel, _) = serve(&net).await;
    let calc = CalculatorClient::new(channel);
    let latency = Duration::from_millis(40);
    net.endpoint("a").set_latency(latency);

    let start = Instant::now();
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    assert!(start.elapsed() >= 2 * latency, "{:?}", start.elapsed());

    // Many calls crossing at once, their frames split into chunks that each
    // wait out the latency: every reply still arrives whole, to its caller.
    let calls = (0..200).map(|i| {
        let calc = calc.clone();
        async move { (i, calc.add(i, 1).await.unwrap()) }
    });
    for (i, sum) in futures::future::join_all(calls).await {
        assert_eq!(sum, i + 1);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_stall_holds_a_call_past_its_deadline_and_resume_lets_the_next_through() {
    let net = Network::new();
    let (server, channel, _) = serve(&net).await;
    let calc = CalculatorClient::new(channel);
    let a = net.endpoint("a");

    a.stall();
    assert!(a.is_stalled());
    let err = calc
        .with_timeout(Duration::from_millis(100))
        .add(1, 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, rpc::Error::DeadlineExceeded { .. }),
        "{err:?}"
    );
    assert_eq!(a.connections(), 1, "a stall closes nothing");

    a.resume();
    assert_eq!(
        within("a call after resume", calc.add(1, 2)).await.unwrap(),
        3
    );
    server.shutdown().await;
}

#[tokio::test]
async fn refusing_fails_connects_until_lifted_and_the_channel_then_reconnects() {
    let net = Network::new();
    let (server, channel, started) = serve(&net).await;
    let hold = HoldClient::new(channel.clone());
    let calc = CalculatorClient::new(channel);
    let a = net.endpoint("a");

    a.refuse(true);
    let err = rpc::Channel::builder()
        .connect_with(net.connector("a"))
        .await
        .unwrap_err();
    assert_refused(&err);
    // The open connection is untouched.
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);

    // Cut it (the held call failing shows the channel has seen the cut):
    // the channel's attempt to reconnect is refused.
    let in_flight = tokio::spawn(async move { hold.hold().await });
    within("the held call to start", started.notified()).await;
    a.disconnect();
    let err = within("the cut call to fail", in_flight)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Disconnected { .. }), "{err:?}");
    let err = calc.add(1, 1).await.unwrap_err();
    assert_refused(&err);
    assert!(err.is_retryable() && !err.may_have_run(), "{err:?}");
    assert_eq!(a.connections(), 0);

    a.refuse(false);
    assert_eq!(
        within("a call after refusing stops", calc.add(2, 2))
            .await
            .unwrap(),
        4
    );
    assert_eq!(a.connections(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_disconnect_fails_calls_in_flight_and_the_next_call_reconnects() {
    let net = Network::new();
    let (server, channel, started) = serve(&net).await;
    let hold = HoldClient::new(channel.clone());
    let calc = CalculatorClient::new(channel);
    let a = net.endpoint("a");

    let in_flight = tokio::spawn(async move { hold.hold().await });
    within("the held call to start", started.notified()).await;
    a.disconnect();
    assert_eq!(a.connections(), 0, "counted as closed at once");
    let err = within("the cut call to fail", in_flight)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, rpc::Error::Disconnected { .. }), "{err:?}");

    assert_eq!(
        within("the call after the cut", calc.add(3, 4))
            .await
            .unwrap(),
        7
    );
    assert_eq!(a.connections(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_name_is_held_while_served_and_freed_when_the_server_stops() {
    let net = Network::new();
    let (server, channel, _) = serve(&net).await;
    let err = net.listen("a").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    // Other networks have names of their own.
    let _elsewhere = Network::new().listen("a").unwrap();

    server.shutdown().await;
    let err = rpc::Channel::builder()
        .connect_with(net.connector("a"))
        .await
        .unwrap_err();
    assert_refused(&err);

    // A new server on the name: the old channel reconnects to it.
    let (server, _, _) = serve(&net).await;
    let calc = CalculatorClient::new(channel);
    assert_eq!(
        within("a call after a restart", calc.add(5, 5))
            .await
            .unwrap(),
        10
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_address_maps_back_to_its_connector() {
    let net = Network::new();
    let (server, _, _) = serve(&net).await;
    let address = net.endpoint("a").address();
    let connector = net.connector_for(&address).expect("a fault address");
    let calc = CalculatorClient::new(
        rpc::Channel::builder()
            .connect_with(connector)
            .await
            .unwrap(),
    );
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);
    assert!(net.connector_for(&Address::Memory("a".into())).is_none());
    assert!(
        net.connector_for(&Address::Other("pipe:a".into()))
            .is_none()
    );
    server.shutdown().await;
}
