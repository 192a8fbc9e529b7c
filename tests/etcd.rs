//! Discovery through a real etcd (feature `etcd`; needs Debian's
//! `etcd-server`): registrations appear in a client's set, a SIGKILLed
//! server's key goes when its lease expires, and a client keeps its set
//! while etcd restarts and follows changes again afterwards.
#![cfg(feature = "etcd")]

use etcd_server::EtcdServer;
use futures::StreamExt;
use rpc::discover::Target;
use rpc::discover::etcd::{Etcd, Registration};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

// Not in `support`: that is shared with packages that have no `etcd`
// feature (tests/fuzz), and this needs the `etcd-register` binary.
#[path = "support/etcd.rs"]
mod etcd_server;

fn tcp(port: u16) -> Target {
    Target::from(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Reads the source until its set satisfies `wanted`, skipping errors;
/// fails after `within`.
async fn wait_for(
    source: &mut Etcd,
    within: Duration,
    what: &str,
    wanted: impl Fn(&[Target]) -> bool,
) -> Vec<Target> {
    let work = async {
        loop {
            match source.next().await.expect("the etcd source ended") {
                Ok(set) if wanted(&set) => return set,
                Ok(_) | Err(_) => {}
            }
        }
    };
    tokio::time::timeout(within, work)
        .await
        .unwrap_or_else(|_| panic!("no set with {what} within {within:?}"))
}

/// `key` = `value` registered by a process of its own, killed on drop.
async fn register_in_child(
    etcd: &EtcdServer,
    key: &str,
    value: &str,
    ttl_secs: u64,
) -> tokio::process::Child {
    let ttl = ttl_secs.to_string();
    etcd_server::register_in_child(&[&etcd.endpoint(), key, value, &ttl]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_appear_and_a_killed_server_goes_when_its_lease_expires() {
    let etcd = EtcdServer::start();
    let ttl = Duration::from_secs(2);
    let mut source = Etcd::new(etcd.endpoints(), "/services/calc/");
    let first = wait_for(&mut source, Duration::from_secs(10), "nothing yet", |s| {
        s.is_empty()
    })
    .await;
    assert!(first.is_empty());

    let a = Registration::register(etcd.endpoints(), "/services/calc/a", "127.0.0.1:7001", ttl)
        .await
        .unwrap();
    let _b = Registration::register(
        etcd.endpoints(),
        "/services/calc/b",
        rpc::discover::etcd::value("127.0.0.1:7002", 3),
        ttl,
    )
    .await
    .unwrap();
    let mut child = register_in_child(&etcd, "/services/calc/c", "127.0.0.1:7003", 2).await;
    // A key outside the prefix is no server of this service.
    let _other =
        Registration::register(etcd.endpoints(), "/services/other/x", "127.0.0.1:7009", ttl)
            .await
            .unwrap();

    let all = vec![tcp(7001), tcp(7002).with_weight(3), tcp(7003)];
    wait_for(&mut source, Duration::from_secs(10), "all three", |s| {
        s == all
    })
    .await;

    // Kept alive past several TTLs: nothing leaves on its own.
    let more = tokio::time::timeout(Duration::from_secs(5), source.next()).await;
    assert!(
        more.is_err(),
        "the set changed while every server lived: {more:?}"
    );

    // A graceful exit: gone at once.
    let started = Instant::now();
    a.deregister().await.unwrap();
    let two = vec![tcp(7002).with_weight(3), tcp(7003)];
    wait_for(&mut source, Duration::from_secs(2), "a deregistered", |s| {
        s == two
    })
    .await;
    eprintln!("deregistered server gone after {:?}", started.elapsed());

    // A crash: gone once its lease expires, within one TTL of its last
    // keep-alive (etcd checks expiry every 500 ms, hence the slack).
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let killed = Instant::now();
    wait_for(
        &mut source,
        ttl + Duration::from_secs(3),
        "c expired",
        |s| s == [tcp(7002).with_weight(3)],
    )
    .await;
    let gone = killed.elapsed();
    eprintln!("SIGKILLed server gone after {gone:?} (lease TTL {ttl:?})");
    assert!(
        gone >= ttl / 3,
        "gone before its lease could expire: {gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_keeps_its_set_while_etcd_restarts_and_follows_it_after() {
    let mut etcd = EtcdServer::start();
    // Longer than the outage: etcd also extends every lease when it starts.
    let ttl = Duration::from_secs(10);
    let _a = Registration::register(etcd.endpoints(), "/svc/a", "127.0.0.1:7001", ttl)
        .await
        .unwrap();
    let _b = Registration::register(etcd.endpoints(), "/svc/b", "127.0.0.1:7002", ttl)
        .await
        .unwrap();
    let mut source = Etcd::new(etcd.endpoints(), "/svc/");
    let two = vec![tcp(7001), tcp(7002)];
    wait_for(&mut source, Duration::from_secs(10), "both", |s| s == two).await;

    etcd.stop();
    // While etcd is down the source reports errors, never another set (an
    // empty one least of all).
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut errors = 0;
    while let Ok(item) = tokio::time::timeout_at(until, source.next()).await {
        match item.expect("the etcd source ended") {
            Err(_) => errors += 1,
            Ok(set) => panic!("etcd is down, yet the source yielded {set:?}"),
        }
    }
    assert!(errors > 0, "the broken watch was not reported");

    let restarted = Instant::now();
    etcd.run();
    let back = wait_for(&mut source, Duration::from_secs(10), "both again", |s| {
        !s.is_empty()
    })
    .await;
    assert_eq!(back, two, "after the restart the source read another set");
    eprintln!(
        "set read again {:?} after etcd restarted",
        restarted.elapsed()
    );

    // And it watches again: a new registration shows.
    let _c = Registration::register(etcd.endpoints(), "/svc/c", "127.0.0.1:7003", ttl)
        .await
        .unwrap();
    let three = vec![tcp(7001), tcp(7002), tcp(7003)];
    wait_for(&mut source, Duration::from_secs(5), "the new one", |s| {
        s == three
    })
    .await;
}
