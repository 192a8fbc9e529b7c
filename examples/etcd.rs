//! Servers that register themselves in etcd, and a client that finds them
//! there: each server puts its address under a key prefix, under a lease it
//! keeps alive; the client's balanced channel reads the prefix and watches
//! it.
//!
//! Needs an etcd. To start one for this example (Debian's `etcd-server`):
//!
//! ```text
//! etcd --data-dir /tmp/etcd-example \
//!      --listen-client-urls http://127.0.0.1:2379 \
//!      --advertise-client-urls http://127.0.0.1:2379
//! cargo run --example etcd --features etcd
//! ```
//!
//! Another etcd: `ETCD_ENDPOINTS=http://10.0.0.5:2379,http://10.0.0.6:2379`.

use std::time::Duration;

use rpc::discover::etcd::{Etcd, Registration};
use rpc_suite::replica::{Named, ReplicaClient, ReplicaServer};

/// Where this service's servers register: one key each under it.
const PREFIX: &str = "/services/replica/";

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let etcd: Vec<String> = std::env::var("ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".into())
        .split(',')
        .map(String::from)
        .collect();

    // Each server binds first, then registers the address it got. If this
    // process dies, its keys go when their leases expire (within 5 s).
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        let server = rpc::Server::builder()
            .add_service(ReplicaServer::new(Named::new(name)))
            .bind("127.0.0.1:0")
            .await?;
        let key = format!("{PREFIX}{name}");
        let addr = server.local_addr().to_string();
        let registration =
            Registration::register(etcd.clone(), &key, addr, Duration::from_secs(5)).await?;
        println!("server {name}: {} registered as {key}", server.local_addr());
        servers.push((server, registration));
    }

    let channel = rpc::Channel::balanced(Etcd::new(etcd, PREFIX))
        .connect()
        .await?;
    let client = ReplicaClient::new(channel.clone());
    // `connect` returns once a server is found and connected; the rest of
    // the set follows as etcd's answer is read.
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(client.name().await?);
    }
    println!("10 calls answered by: {answers:?}");

    // Taking a server away: deregister first, so clients stop sending it
    // calls, then shut it down, which finishes the calls it already has.
    // The other way round, clients would keep picking a server that has
    // stopped until its key went.
    let (server, registration) = servers.remove(0);
    registration.deregister().await?;
    server.shutdown().await;
    println!("server a: deregistered, then shut down");

    // The watch removes it from the set within moments.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left: Vec<String> = channel
        .endpoints()
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    println!("the client's set now: {left:?}");
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(client.name().await?);
    }
    println!("10 calls answered by: {answers:?}");

    for (server, registration) in servers {
        registration.deregister().await?;
        server.shutdown().await;
    }
    Ok(())
}
