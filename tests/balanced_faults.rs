//! The balanced channel over the fault-injection transport (`rpc::fault`),
//! reached through `.connector(..)` from `fault:` addresses: with one server
//! stalled, a hedged idempotent call completes through the other; with one
//! server's connections cut again and again, idempotent calls still succeed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use rpc::client::{Hedge, Policy};
use rpc::discover::Static;
use rpc::fault::Network;
use rpc::transport::{Address, Connector};

/// The test servers' service.
#[rpc::service]
pub trait Whoami {
    /// The server's id.
    #[rpc(idempotent)]
    async fn id(&self) -> u32;
}

struct Server(u32);

impl Whoami for Server {
    async fn id(&self) -> u32 {
        self.0
    }
}

/// Servers 0 and 1 on `net`'s endpoints "a" and "b", and a balanced
/// channel over them, configured by `configure`.
async fn two_servers(
    net: &Network,
    configure: impl FnOnce(rpc::client::Balanced) -> rpc::client::Balanced,
) -> (Vec<rpc::ServerHandle>, WhoamiClient) {
    let servers = ["a", "b"]
        .iter()
        .zip(0..)
        .map(|(name, id)| {
            rpc::Server::builder()
                .add_service(WhoamiServer::new(Server(id)))
                .serve(net.listen(name).unwrap())
                .unwrap()
        })
        .collect();
    let addrs: Vec<Address> = ["a", "b"]
        .iter()
        .map(|n| net.endpoint(n).address())
        .collect();
    let via = net.clone();
    let balanced = rpc::Channel::balanced(Static::new(addrs))
        // Each reconnect asks again: the connector is called per connection.
        .connector(move |addr| {
            via.connector_for(addr)
                .map(|c| Box::new(c) as Box<dyn Connector>)
        })
        .timeout(Duration::from_secs(5));
    let channel = configure(balanced).connect().await.unwrap();
    (servers, WhoamiClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_server_stalled_a_hedged_call_completes_through_the_other() {
    let net = Network::new();
    // Round robin sends every other call to the stalled server first, so
    // these calls need the hedge: without it they wait out the deadline.
    let (servers, client) = two_servers(&net, |b| {
        b.policy(Policy::RoundRobin)
            .hedge(Hedge::Fixed(Duration::from_millis(20)))
    })
    .await;
    // Both connected and answering before the stall.
    for _ in 0..20 {
        client.id().await.unwrap();
    }
    assert_eq!(client.channel().endpoints().len(), 2);

    net.endpoint("a").stall();
    for _ in 0..20 {
        let started = tokio::time::Instant::now();
        let id = client.id().await.unwrap();
        let took = started.elapsed();
        assert_eq!(id, 1, "an answer from the stalled server");
        // The hedge goes after 20 ms; far under the 5 s deadline the call
        // would wait for without it.
        assert!(took < Duration::from_millis(1_000), "took {took:?}");
    }
    net.endpoint("a").resume();
    for s in servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_server_cut_off_again_and_again_calls_still_succeed() {
    let net = Network::new();
    let (servers, client) = two_servers(&net, |b| b).await;
    let a = net.endpoint("a");
    let stop = Arc::new(AtomicBool::new(false));
    let cutter = {
        let (a, stop) = (a.clone(), stop.clone());
        tokio::spawn(async move {
            let mut cuts = 0u32;
            while !stop.load(SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                cuts += u32::from(a.connections() > 0);
                a.disconnect();
            }
            cuts
        })
    };
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..100 {
                    out.push(client.id().await);
                }
                out
            })
        })
        .collect();
    let mut results = Vec::new();
    for c in callers {
        results.extend(c.await.unwrap());
    }
    stop.store(true, SeqCst);
    let cuts = cutter.await.unwrap();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "calls failed: {failed:?}");
    assert!(cuts > 0, "the cutter never found a connection to cut");
    eprintln!("{} calls, {cuts} cuts of server a", results.len());
    for s in servers {
        s.shutdown().await;
    }
}
