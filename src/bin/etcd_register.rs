//! A server's registration in etcd as a process of its own, for the etcd
//! tests, which SIGKILL it to see its key go when its lease expires.
//!
//! - `etcd-register ENDPOINT KEY VALUE TTL_SECS`: registers `VALUE`.
//! - `etcd-register --serve NAME ENDPOINT KEY TTL_SECS`: serves a
//!   [`Replica`](rpc_suite::replica::Replica) answering `NAME` on
//!   127.0.0.1:0 and registers its address, so a killed registration is a
//!   killed server too, as in a real crash.
//!
//! Either way it prints `registered` and keeps the lease alive until
//! killed.

use rpc_suite::replica::{Named, ReplicaServer};
use std::time::Duration;

const USAGE: &str = "usage: etcd-register ENDPOINT KEY VALUE TTL_SECS\n       \
                     etcd-register --serve NAME ENDPOINT KEY TTL_SECS";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The server, if any, lives as long as the process: only SIGKILL ends
    // it, so it never drains and never deregisters.
    let (_server, endpoint, key, value, ttl) = match args.as_slice() {
        [flag, name, endpoint, key, ttl] if flag == "--serve" => {
            let server = rpc::Server::builder()
                .add_service(ReplicaServer::new(Named::new(name.as_str())))
                .bind("127.0.0.1:0")
                .await?;
            let value = server.local_addr().to_string();
            (Some(server), endpoint, key, value, ttl)
        }
        [endpoint, key, value, ttl] => (None, endpoint, key, value.clone(), ttl),
        _ => return Err(USAGE.into()),
    };
    let ttl = Duration::from_secs(ttl.parse()?);
    let _registration =
        rpc::discover::etcd::Registration::register(vec![endpoint.clone()], key, value, ttl)
            .await?;
    println!("registered");
    std::future::pending::<()>().await;
    Ok(())
}
