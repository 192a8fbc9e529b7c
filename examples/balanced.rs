//! One client over three servers: a balanced channel spreads calls by
//! latency and load, shows what it knows of each server, and carries on
//! when one goes away.
//!
//! ```text
//! cargo run --example balanced
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use rpc::discover::Static;
use rpc_suite::replica::{Named, ReplicaClient, ReplicaServer};

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    // Three servers; "c" takes 20 ms a call, ten times the others.
    let mut servers = Vec::new();
    for (name, ms) in [("a", 2), ("b", 2), ("c", 20)] {
        let replica = Named {
            name: name.into(),
            delay: Duration::from_millis(ms),
        };
        let server = rpc::Server::builder()
            .add_service(ReplicaServer::new(replica))
            .bind("127.0.0.1:0")
            .await?;
        println!("server {name}: {}, {ms} ms a call", server.local_addr());
        servers.push(server);
    }

    // A fixed list of servers; DNS, etcd or a list set at run time work the
    // same way (see `rpc::discover`).
    let addrs: Vec<_> = servers.iter().map(|s| s.local_addr()).collect();
    let channel = rpc::Channel::balanced(Static::new(addrs)).connect().await?;
    let client = ReplicaClient::new(channel.clone());

    // 300 calls, 10 at a time.
    let mut went = BTreeMap::<String, usize>::new();
    for _ in 0..30 {
        let batch = (0..10).map(|_| client.name());
        for name in futures::future::try_join_all(batch).await? {
            *went.entry(name).or_default() += 1;
        }
    }
    // The slow server gets far fewer: each call goes to the better of two
    // servers picked at random, by latency and calls in flight.
    println!("\n300 calls went to: {went:?}");
    print_endpoints(&channel);

    // One server leaves. `name` is `#[rpc(idempotent)]`, so a call that
    // fails on it may be retried on another server: none fails.
    let gone = servers.remove(0);
    println!("\nshutting down server a ({})", gone.local_addr());
    gone.shutdown().await;
    let mut went = BTreeMap::<String, usize>::new();
    for _ in 0..100 {
        *went.entry(client.name().await?).or_default() += 1;
    }
    println!("100 more calls, all answered, went to: {went:?}");
    // A static list keeps server a, disconnected: the channel connects
    // again if something listens there later. Discovery that follows the
    // servers (etcd, DNS) drops it from the set instead.
    print_endpoints(&channel);

    for server in servers {
        server.shutdown().await;
    }
    Ok(())
}

/// What the channel knows of each server.
fn print_endpoints(channel: &rpc::Channel) {
    println!("endpoints:");
    for e in channel.endpoints() {
        let latency = e.latency.map_or("-".into(), |l| format!("{l:.1?}"));
        println!(
            "  {:<16} {:?}, {} in flight, latency {latency}, ejected: {}",
            e.address.to_string(),
            e.state,
            e.in_flight,
            e.ejected
        );
    }
}
