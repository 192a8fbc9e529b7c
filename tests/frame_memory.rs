//! What frames still arriving cost a server, across all its connections: at
//! most its frame memory budget plus 64 KiB per connection, however many
//! peers start a large frame and stall. This file is a test binary of its
//! own with one test, so the process's resident memory is the server's
//! (and the attackers', which share one buffer).

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::Duration;

use support::probe::*;
use support::raw::{self, RawConn};
use support::resident;
use tokio::io::AsyncWriteExt;

const MIB: usize = 1 << 20;
const MAX_FRAME: usize = 4 * MIB;
const BUDGET: usize = 32 * MIB;
const ATTACKERS: usize = 64;
/// What one connection may buffer without the budget (documented on
/// `Builder::frame_memory_budget`).
const PER_CONNECTION: usize = 64 * 1024;
/// The runtime, the test's own buffers and the allocator's slack.
const SLACK: usize = 32 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stalled_near_limit_frames_stay_within_the_budget_and_others_are_served() {
    let (server, probe) = start_probe(
        rpc::Server::builder()
            .max_frame(MAX_FRAME)
            .frame_memory_budget(BUDGET),
    )
    .await;
    let addr = server.local_addr();
    let good = probe_client(addr).await;
    assert_eq!(good.text("warm up".into()).await.unwrap(), 7);
    let before = resident();

    // Each attacker claims a frame just under the limit, sends all of it but
    // the last byte, and stalls. Without a budget the server would buffer
    // ATTACKERS x 4 MiB = 256 MiB.
    let claimed = raw::frame(raw::kind::REQUEST, 0, 1, &vec![0u8; MAX_FRAME - 10]);
    let almost: Arc<[u8]> = claimed[..claimed.len() - 1].into();
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let mut conn = RawConn::handshake(addr).await;
        let bytes = almost.clone();
        attackers.push(tokio::spawn(async move {
            // Blocks once the server stops reading; the task keeps the
            // connection open until it is aborted.
            let _ = conn.stream.write_all(&bytes).await;
            std::future::pending::<()>().await;
            drop(conn);
        }));
    }

    // While the attack holds, small calls on another connection are served,
    // and the server's memory stays within its bound.
    let mut peak = 0;
    for i in 0..30 {
        let text = "x".repeat(i);
        let served = tokio::time::timeout(Duration::from_secs(5), good.text(text)).await;
        assert_eq!(
            served.expect("a small call was not served").unwrap(),
            i as u64
        );
        peak = peak.max(resident());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown = peak.saturating_sub(before);
    let bound = BUDGET + ATTACKERS * PER_CONNECTION + SLACK;
    eprintln!(
        "resident memory grew by {} KiB under the attack (bound {} KiB)",
        grown / 1024,
        bound / 1024
    );
    assert!(
        grown <= bound,
        "resident memory grew by {} MiB under the attack; the bound is {} MiB",
        grown / MIB,
        bound / MIB
    );

    // Once the attackers leave, their budget is free again: a large call
    // arrives whole.
    for attacker in &attackers {
        attacker.abort();
    }
    let large = "y".repeat(3 * MIB);
    let served = tokio::time::timeout(Duration::from_secs(10), good.text(large)).await;
    assert_eq!(
        served.expect("a large call was not served").unwrap(),
        3 * MIB as u64
    );
    drop(probe);
    server.shutdown().await;
}
