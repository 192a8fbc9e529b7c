//! The discovery sources as a user's code takes them (`rpc::discover`):
//! every one is a `Discover` a balanced channel accepts; a static list from
//! strings or `SocketAddr`s; a manual set changed from another task; a DNS
//! name followed on its interval. (Each source's finer behaviour is tested
//! in its own module; etcd in `tests/etcd.rs`.)

use futures::StreamExt;
use rpc::discover::{Discover, Dns, Manual, Static, Target};
use std::net::SocketAddr;
use std::time::Duration;

/// What a balanced channel takes: boxed like this it can hold any source.
fn boxed(source: impl Discover) -> Box<dyn Discover> {
    Box::new(source)
}

async fn next_set(source: &mut Box<dyn Discover>) -> Vec<Target> {
    tokio::time::timeout(Duration::from_secs(10), source.next())
        .await
        .expect("the source yielded nothing within 10 s")
        .expect("the source ended")
        .expect("the source failed")
}

#[tokio::test]
async fn a_static_list_of_strings_or_socket_addrs_is_one_set() {
    let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:7002".parse().unwrap();
    let from_strs = next_set(&mut boxed(Static::new([
        "127.0.0.1:7001",
        "127.0.0.1:7002",
    ])))
    .await;
    let from_addrs = next_set(&mut boxed(Static::new(vec![a, b]))).await;
    let from_strings = next_set(&mut boxed(Static::new(vec![a.to_string(), b.to_string()]))).await;
    assert_eq!(from_strs, vec![Target::from(a), Target::from(b)]);
    assert_eq!(from_addrs, from_strs);
    assert_eq!(from_strings, from_strs);
}

#[tokio::test]
async fn a_manual_set_follows_its_handle_from_any_task() {
    let a: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let (source, handle) = Manual::new([Target::from(a)]);
    let mut source = boxed(source);
    assert_eq!(next_set(&mut source).await, vec![Target::from(a)]);
    let setters: Vec<_> = (2..=4u16)
        .map(|port| {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle.set([Target::from(SocketAddr::from(([127, 0, 0, 1], port)))])
            })
        })
        .collect();
    for setter in setters {
        setter.await.unwrap();
    }
    // Whichever set came last is the one the source yields; the ones before
    // it are not queued up.
    assert_eq!(next_set(&mut source).await, handle.get());
    let more = tokio::time::timeout(Duration::from_millis(100), source.next()).await;
    assert!(more.is_err(), "an older set was queued: {more:?}");
}

#[tokio::test]
async fn a_dns_name_gives_its_loopback_addresses() {
    let mut source = boxed(Dns::new("localhost:7001").interval(Duration::from_millis(50)));
    let set = next_set(&mut source).await;
    assert!(
        set.contains(&Target::from(
            "127.0.0.1:7001".parse::<SocketAddr>().unwrap()
        )),
        "{set:?}"
    );
    let again = tokio::time::timeout(Duration::from_millis(300), source.next()).await;
    assert!(
        again.is_err(),
        "an unchanged answer was yielded again: {again:?}"
    );
}

#[tokio::test]
async fn a_dns_name_that_does_not_resolve_is_an_error_not_an_empty_set() {
    let mut source = boxed(Dns::new("nonexistent.invalid:1").interval(Duration::from_millis(50)));
    let item = tokio::time::timeout(Duration::from_secs(10), source.next())
        .await
        .unwrap();
    let err = item.unwrap().unwrap_err();
    assert!(err.to_string().contains("nonexistent.invalid:1"), "{err}");
}
