//! One client over many servers, against real servers on loopback: the
//! default policy avoids a slow server, a killed server costs idempotent
//! calls nothing and never runs a call twice, a restarted one gets traffic
//! again, one deadline covers every attempt, discovery changes are followed,
//! a server that reports NotServing is left alone, and affinity keys stay
//! put. Retries and hedges are in `balanced_retries.rs`.

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use rpc::client::{Ejection, Policy};
use rpc::discover::{Manual, Static, Target};
use support::fleet::{Fleet, WorkClient, reads, share};

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_policy_sends_a_ten_times_slower_server_under_a_tenth_of_calls() {
    let fleet = Fleet::start(&[2, 20, 2]).await;
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let results = reads(&client, 8, 600).await;
    assert!(results.iter().all(Result::is_ok));
    let slow = share(&results, 1);
    eprintln!(
        "power of two choices: the slow server took {:.1}%",
        slow * 100.0
    );
    assert!(
        slow < 0.10,
        "the slow server took {:.1}% of calls",
        slow * 100.0
    );

    // Round robin, the control, gives it about a third.
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .policy(Policy::RoundRobin)
        .connect()
        .await
        .unwrap();
    let results = reads(&WorkClient::new(channel), 8, 300).await;
    let slow = share(&results, 1);
    eprintln!("round robin: the slow server took {:.1}%", slow * 100.0);
    assert!(
        (0.25..0.42).contains(&slow),
        "round robin gave it {:.1}%",
        slow * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_servers_fails_no_idempotent_call_and_runs_no_call_twice() {
    let mut fleet = Fleet::start(&[5, 5, 5]).await;
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let load = {
        let client = client.clone();
        tokio::spawn(async move { reads(&client, 32, 3_000).await })
    };
    let writes = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            for op in 0..400u64 {
                out.push(client.write(op).await);
            }
            out
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    fleet.kill(1).await;
    let reads = load.await.unwrap();
    let failed: Vec<_> = reads.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "idempotent calls failed: {failed:?}");

    let writes = writes.await.unwrap();
    for e in writes.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            e.may_have_run(),
            "a failure that did not run was not retried: {e}"
        );
    }
    // One caller of writes: at most its one call in flight at the kill.
    assert!(writes.iter().filter(|r| r.is_err()).count() <= 1);
    let failed_writes = writes.iter().filter(|r| r.is_err()).count();
    eprintln!(
        "killed 1 of 3: {} reads, {} failed; {} writes, {failed_writes} failed",
        reads.len(),
        failed.len(),
        writes.len(),
    );
    let ran = fleet.ledger.ran.lock().unwrap();
    assert!(ran.values().all(|&n| n == 1), "a write ran twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_gets_traffic_again_within_twice_its_ejection_backoff() {
    let mut fleet = Fleet::start(&[1, 1, 1]).await;
    let ejection = Ejection {
        consecutive_failures: 1,
        base: Duration::from_millis(500),
        ..Ejection::default()
    };
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .ejection(ejection)
        .settings(
            rpc::Channel::builder()
                .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
        )
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    fleet.kill(2).await;
    let results = reads(&client, 4, 200).await;
    assert!(results.iter().all(Result::is_ok));
    let before = fleet.started(2);
    let restarted = fleet.serve(2, fleet.addrs[2]).await;
    let since = tokio::time::Instant::now();
    loop {
        let _ = reads(&client, 4, 40).await;
        if fleet.started(2) > before {
            eprintln!("the restarted server got calls after {:?}", since.elapsed());
            break;
        }
        assert!(
            since.elapsed() < 2 * ejection.base + ejection.base / 2,
            "no traffic to the restarted server after {:?}",
            since.elapsed()
        );
    }
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_server_silent_one_deadline_covers_every_attempt() {
    let fleet = Fleet::start(&[60_000, 60_000, 60_000]).await;
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let started = tokio::time::Instant::now();
    let e = client.read().await.unwrap_err();
    let took = started.elapsed();
    eprintln!("every server silent: failed after {took:?} with a 100 ms deadline");
    assert!(matches!(e, rpc::Error::DeadlineExceeded { .. }), "{e}");
    assert!(took < Duration::from_millis(190), "took {took:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let attempts: usize = (0..3).map(|i| fleet.started(i)).sum();
    assert_eq!(attempts, 1, "an attempt started after the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_changes_are_followed() {
    let fleet = Fleet::start(&[1, 1, 1]).await;
    let (source, handle) = Manual::new([Target::from(fleet.addrs[0])]);
    let channel = rpc::Channel::balanced(source).connect().await.unwrap();
    let client = WorkClient::new(channel.clone());
    assert!(
        reads(&client, 2, 50)
            .await
            .iter()
            .all(|r| *r.as_ref().unwrap() == 0)
    );

    handle.set(fleet.addrs.iter().map(|&a| Target::from(a)));
    let since = tokio::time::Instant::now();
    loop {
        let results = reads(&client, 4, 300).await;
        let shares: Vec<f64> = (0..3).map(|i| share(&results, i)).collect();
        if shares.iter().all(|&s| s > 0.2) {
            eprintln!(
                "added servers' shares after {:?}: {shares:?}",
                since.elapsed()
            );
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "shares {shares:?}"
        );
    }
    assert_eq!(channel.endpoints().len(), 3);

    // Calls in flight on server 0 when it leaves the set complete.
    fleet.delays[0].store(300, SeqCst);
    let in_flight: Vec<_> = (0..12)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.read().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let on_zero = fleet.started(0);
    handle.set([Target::from(fleet.addrs[1]), Target::from(fleet.addrs[2])]);
    let mut on_removed = 0;
    for call in in_flight {
        let served_by = call.await.unwrap().expect("a call in flight failed");
        on_removed += usize::from(served_by == 0);
    }
    assert!(on_removed > 0, "no call was in flight on server 0");
    assert_eq!(
        fleet.started(0) - on_zero,
        0,
        "server 0 took a call after removal"
    );
    let before = fleet.started(0);
    let results = reads(&client, 4, 200).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fleet.started(0), before, "a removed server got calls");
    assert_eq!(channel.endpoints().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_reports_not_serving_gets_no_calls_until_it_serves_again() {
    let fleet = Fleet::start(&[1, 1, 1]).await;
    let channel = rpc::Channel::balanced(Static::new(fleet.addrs.clone()))
        .health_checks(Some(Duration::from_millis(50)))
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let reporter = fleet.servers[1].as_ref().unwrap().health();
    reporter.set_all(rpc::health::ServingStatus::NotServing);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = fleet.started(1);
    let results = reads(&client, 4, 200).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fleet.started(1), before, "a server not serving got calls");

    reporter.set_all(rpc::health::ServingStatus::Serving);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let results = reads(&client, 4, 300).await;
    assert!(share(&results, 1) > 0.1, "it got no calls back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_sends_a_key_to_one_server_and_moves_only_a_removed_server_s_keys() {
    let fleet = Fleet::start(&[0, 0, 0]).await;
    let (source, handle) = Manual::new(fleet.addrs.iter().map(|&a| Target::from(a)));
    let channel = rpc::Channel::balanced(source)
        .policy(Policy::Affinity)
        .connect()
        .await
        .unwrap();
    let client = WorkClient::new(channel);
    let keys: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let mut home = HashMap::new();
    for key in &keys {
        let first = client.get(key.clone()).await.unwrap();
        for _ in 0..3 {
            assert_eq!(client.get(key.clone()).await.unwrap(), first, "{key} moved");
        }
        home.insert(key.clone(), first);
    }
    let used: std::collections::HashSet<_> = home.values().collect();
    assert_eq!(used.len(), 3, "keys all went to {used:?}");

    handle.set([Target::from(fleet.addrs[0]), Target::from(fleet.addrs[2])]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for key in &keys {
        let now = client.get(key.clone()).await.unwrap();
        if home[key] != 1 {
            assert_eq!(now, home[key], "{key} moved though its server stayed");
        } else {
            assert_ne!(now, 1, "{key} still went to the removed server");
        }
    }
}
