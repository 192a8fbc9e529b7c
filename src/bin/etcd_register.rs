//! A server's registration in etcd as a process of its own, for the etcd
//! tests, which SIGKILL it to see its key go when its lease expires.
//!
//! `etcd-register ENDPOINT KEY VALUE TTL_SECS`: registers, prints
//! `registered`, and keeps the lease alive until killed.

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, key, value, ttl] = args.as_slice() else {
        return Err("usage: etcd-register ENDPOINT KEY VALUE TTL_SECS".into());
    };
    let ttl = Duration::from_secs(ttl.parse()?);
    let _registration =
        rpc::discover::etcd::Registration::register(vec![endpoint.clone()], key, value, ttl)
            .await?;
    println!("registered");
    std::future::pending::<()>().await;
    Ok(())
}
