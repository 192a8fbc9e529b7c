//! What a failed call says: a peer that does not speak this protocol is
//! named as such, with the bytes it sent first; a call that finds no server
//! after a shutdown says why (over every transport), not that a server
//! refused it; and an error says whether the call may have run and whether
//! a retry can help, as the facts were (refused by a draining server, cut
//! off while its handler ran, no connection to be had).

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::hand::{PROMPTLY, client_and_peer, next_request, watchdog, within};
use support::probe::*;
use support::raw;
use support::transport::over_all_transports;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What an HTTP server answers bytes it cannot parse as a request.
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
    Content-Length: 11\r\nConnection: close\r\n\r\nBad Request";

/// Serves `listener` as an HTTP server does a client it cannot parse: reads
/// what the client sent, answers 400, and keeps the connection until the
/// client closes it (so the answer is not lost to a reset).
fn serve_http(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = s.read(&mut [0u8; 1024]).await;
                let _ = s.write_all(BAD_REQUEST).await;
                let _ = s.read_to_end(&mut Vec::new()).await;
            });
        }
    })
}

/// `err` says the peer does not speak the protocol and shows its answer.
fn assert_names_a_foreign_peer(err: &rpc::Error, addr: SocketAddr) {
    let text = err.to_string();
    assert!(text.contains("does not speak"), "{text}");
    assert!(
        text.contains(r#""HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"#),
        "{text}"
    );
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.len() < 400, "the bytes shown are bounded: {text}");
    assert!(!err.may_have_run() && !err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn connecting_to_an_http_server_says_it_does_not_speak_the_protocol() {
    let _watchdog = watchdog();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = serve_http(listener);
    let err = within("connecting", rpc::Channel::connect(addr))
        .await
        .unwrap_err();
    assert!(
        matches!(err, rpc::Error::Protocol { method: None, .. }),
        "{err:?}"
    );
    assert_names_a_foreign_peer(&err, addr);
    http.abort();
}

/// A client whose server was replaced by an HTTP server: the call that
/// reconnects hears what the new peer is, under its own method's name.
#[tokio::test]
async fn a_call_that_reconnects_to_an_http_server_names_its_method_and_the_peer() {
    let _watchdog = watchdog();
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let client = CalculatorClient::connect(addr).await.unwrap();
    // Graceful, so the client has seen the GoAway when it returns: the next
    // call reconnects rather than going out on the old connection.
    server.shutdown().await;
    let http = serve_http(TcpListener::bind(addr).await.unwrap());
    let err = within("the call", client.add(1, 2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            rpc::Error::Protocol {
                method: Some("Calculator.add"),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("Calculator.add: protocol error: "),
        "{err}"
    );
    assert_names_a_foreign_peer(&err, addr);
    http.abort();
}

/// A server shutting down refuses a call: it did not run, and another
/// server may take it.
#[tokio::test]
async fn a_call_refused_by_a_draining_server_did_not_run() {
    let _watchdog = watchdog();
    let (client, mut peer, listener) = client_and_peer(4).await;
    let call = tokio::spawn(client.hold(0, 1));
    let req = next_request(&mut peer).await;
    drop(listener);
    peer.send(&raw::goaway(raw::goaway::SHUTDOWN, "shutting down"))
        .await;
    peer.send(&raw::refusal(
        req.id,
        raw::status::SHUTTING_DOWN,
        "the connection is draining",
    ))
    .await;
    let err = within("the refused call", call).await.unwrap().unwrap_err();
    assert!(matches!(err, rpc::Error::ShuttingDown { .. }), "{err}");
    assert!(!err.may_have_run() && err.is_retryable(), "{err:?}");
}

/// The server goes away while the handler runs: the call may have run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_while_its_handler_runs_may_have_run() {
    let _watchdog = watchdog();
    let (server, probe) = start_probe(rpc::Server::builder()).await;
    let client = probe_client(server.local_addr()).await;
    let call = tokio::spawn(client.hold(60_000, 1));
    probe
        .wait_for("the handler to start", PROMPTLY, |p| p.started() == 1)
        .await;
    server.abort().await;
    let err = within("the cut-off call", call).await.unwrap().unwrap_err();
    assert!(
        matches!(err, rpc::Error::Disconnected { sent: true, .. }),
        "{err:?}"
    );
    assert!(err.may_have_run() && err.is_retryable(), "{err:?}");
}

/// The server shut down and nothing listens there now: the call could not
/// connect, did not run, and reports the refused connection as such.
#[tokio::test]
async fn a_call_that_could_not_connect_did_not_run() {
    let _watchdog = watchdog();
    let (server, _) = start_probe(rpc::Server::builder()).await;
    let addr = server.local_addr();
    let client = CalculatorClient::connect(addr).await.unwrap();
    server.shutdown().await;
    let err = within("the call", client.add(1, 2)).await.unwrap_err();
    let rpc::Error::Io {
        method: Some("Calculator.add"),
        source,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(!err.may_have_run() && err.is_retryable(), "{err:?}");
}

over_all_transports!(
    calls_after_the_server_shut_down_and_left_report_the_refused_connection,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn calls_after_the_server_shut_down_and_left_report_the_refused_connection(
    transport: Transport,
) {
    // The server drains, closes the connection and is gone. Calls made in
    // the next two seconds find the connection closed and try to reconnect;
    // no server refused them, so they report why they found none (a refused
    // connection, or no socket file), not that a server is shutting down.
    // Either way they did not run, and another server could take them.
    let (server, probe) = start_probe_over(transport, rpc::Server::builder()).await;
    let address = server.address().clone();
    let client = probe_client_at(&address).await;
    assert_eq!(client.hold(0, 1).await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown did not finish");
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let err = client.hold(1, 2).await.unwrap_err();
        let rpc::Error::Io {
            method: Some("Probe.hold"),
            source,
            ..
        } = &err
        else {
            panic!("after {calls} calls: {err:?}")
        };
        let expected = match transport {
            Transport::Unix => std::io::ErrorKind::NotFound,
            Transport::Tcp | Transport::Memory => std::io::ErrorKind::ConnectionRefused,
        };
        assert_eq!(source.kind(), expected, "{err}");
        assert!(err.to_string().contains(&address.to_string()), "{err}");
        assert!(!err.may_have_run() && err.is_retryable(), "{err:?}");
        calls += 1;
    }
    assert!(calls >= 2, "{calls} calls in 2 s");
    assert_eq!(probe.started(), 1);
}
