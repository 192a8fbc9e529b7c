//! The built-in health service (`rpc::health`), over every transport: a
//! fresh server answers Serving for itself and each service it serves and
//! Unknown for others; what the application sets through
//! `ServerHandle::health()` is what a check sees; a graceful shutdown
//! reports NotServing (to checks during its `shutdown_delay`, while calls
//! are still served; once draining, checks fail with an error that did not
//! run); a server given its own health service answers from that one.

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::Duration;

use ServingStatus::{NotServing, Serving, Unknown};
use rpc::health::{Health, HealthClient, HealthServer, ServingStatus};
use support::hand::within;
use support::transport::{connect, over_all_transports};
use support::{CalculatorClient, Transport, start_over};
use tokio::sync::Notify;

/// The wire names of the services `support::with_services` adds.
const SERVED: [&str; 3] = ["Calculator", "Shapes", "Slow"];

/// A call that runs until the test lets it finish: keeps a drain open.
#[rpc::service]
pub trait Gate {
    /// Tells the test it has started, then waits to be released.
    async fn hold(&self) -> u32;
}

#[derive(Default)]
struct GateImpl {
    started: Notify,
    release: Notify,
}

impl Gate for GateImpl {
    async fn hold(&self) -> u32 {
        self.started.notify_one();
        self.release.notified().await;
        7
    }
}

async fn statuses(health: &HealthClient, names: &[&str]) -> Vec<ServingStatus> {
    let mut out = Vec::new();
    for name in names {
        out.push(health.check(name.to_string()).await.unwrap());
    }
    out
}

over_all_transports!(a_fresh_server_answers_serving_for_itself_and_each_service);
async fn a_fresh_server_answers_serving_for_itself_and_each_service(transport: Transport) {
    let (server, channel) = start_over(transport, rpc::Server::builder()).await;
    let health = HealthClient::new(channel);
    let names = [
        "",
        SERVED[0],
        SERVED[1],
        SERVED[2],
        rpc::health::SERVICE_NAME,
    ];
    assert_eq!(statuses(&health, &names).await, [Serving; 5]);
    assert_eq!(
        statuses(&health, &["Nope", "calculator"]).await,
        [Unknown; 2]
    );
    server.shutdown().await;
}

over_all_transports!(what_the_application_sets_is_what_a_check_sees);
async fn what_the_application_sets_is_what_a_check_sees(transport: Transport) {
    let (server, channel) = start_over(transport, rpc::Server::builder()).await;
    let health = HealthClient::new(channel);
    let reporter = server.health();

    reporter.set("Calculator", NotServing);
    assert_eq!(
        statuses(&health, &["", "Calculator", "Shapes"]).await,
        [Serving, NotServing, Serving]
    );
    reporter.set_all(NotServing);
    assert_eq!(statuses(&health, &["", "Shapes"]).await, [NotServing; 2]);
    reporter.set_all(Serving);
    // A name of the application's own, reported on like a service.
    reporter.set("db", NotServing);
    assert_eq!(
        statuses(&health, &["", "Calculator", "db"]).await,
        [Serving, Serving, NotServing]
    );
    assert_eq!(reporter.get("db"), NotServing);
    server.shutdown().await;
}

over_all_transports!(a_shutdown_reports_not_serving_and_then_refuses_checks);
async fn a_shutdown_reports_not_serving_and_then_refuses_checks(transport: Transport) {
    let gate = Arc::new(GateImpl::default());
    let builder = rpc::Server::builder().add_service(GateServer::from_arc(gate.clone()));
    let (server, channel) = start_over(transport, builder).await;
    let health = HealthClient::new(channel.clone()).with_timeout(Duration::from_secs(2));
    let reporter = server.health();
    assert_eq!(health.check(String::new()).await.unwrap(), Serving);

    // A call in flight keeps the drain open.
    let held = GateClient::new(channel);
    let held = tokio::spawn(async move { held.hold().await });
    within("the held call to start", gate.started.notified()).await;
    let shutdown = tokio::spawn(server.shutdown());
    within("NotServing", async {
        while reporter.get("") != NotServing {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    for name in ["", "Calculator", "Gate", "Nope"] {
        let expected = if name == "Nope" { Unknown } else { NotServing };
        assert_eq!(reporter.get(name), expected, "{name:?}");
    }
    reporter.set_all(Serving);
    assert_eq!(reporter.get(""), NotServing, "a shutdown is final");

    // Draining: a check on the open connection is refused, and a new
    // connection is not accepted. A prober sees an error that did not run
    // (or NotServing, had its check beaten the drain to the connection).
    match health.check(String::new()).await {
        Ok(status) => assert_eq!(status, NotServing),
        Err(e) => assert!(e.is_retryable() && !e.may_have_run(), "{e:?}"),
    }
    assert!(
        !shutdown.is_finished(),
        "the held call keeps the drain open"
    );

    gate.release.notify_one();
    assert_eq!(within("the held call", held).await.unwrap().unwrap(), 7);
    within("the shutdown", shutdown).await.unwrap();
}

over_all_transports!(a_shutdown_delay_answers_not_serving_while_calls_are_served);
async fn a_shutdown_delay_answers_not_serving_while_calls_are_served(transport: Transport) {
    // Long enough for the checks below on a loaded machine; the test
    // lasts this long.
    let delay = Duration::from_secs(2);
    let builder = rpc::Server::builder().shutdown_delay(delay);
    let (server, channel) = start_over(transport, builder).await;
    let health = HealthClient::new(channel.clone());
    let calc = CalculatorClient::new(channel);
    let reporter = server.health();
    let address = server.address().clone();

    let shutdown = tokio::spawn(server.shutdown());
    within("NotServing", async {
        while reporter.get("") != NotServing {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Still serving: checks on the open connection answer, calls run, and
    // a new connection is accepted and answered too.
    assert_eq!(
        statuses(&health, &["", "Calculator"]).await,
        [NotServing; 2]
    );
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    let prober = HealthClient::new(connect(&address).await);
    assert_eq!(prober.check(String::new()).await.unwrap(), NotServing);
    assert!(!shutdown.is_finished(), "drained before its delay was up");

    within("the shutdown", shutdown).await.unwrap();
}

/// Answers every check with NotServing.
struct Always;

impl Health for Always {
    async fn check(&self, _service: String) -> ServingStatus {
        NotServing
    }
}

#[tokio::test]
async fn a_server_given_a_health_service_of_its_own_answers_from_it() {
    let builder = rpc::Server::builder().add_service(HealthServer::new(Always));
    let (server, channel) = start_over(Transport::Memory, builder).await;
    let health = HealthClient::new(channel);
    assert_eq!(
        statuses(&health, &["", "Calculator"]).await,
        [NotServing; 2]
    );
    server.shutdown().await;
}
