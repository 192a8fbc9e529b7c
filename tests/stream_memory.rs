//! What a stream's unread items cost a server: about what the window
//! counts, however the client lays them out on the wire. This file is a
//! test binary of its own with one test, so that the process's resident
//! memory is the server's (and the attacker's).

// Each test file uses a different part of `support`.
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use support::raw::{self, RawConn};
use support::resident;

const MIB: usize = 1 << 20;
/// Rounds of the attack: each leaves one small item unread behind a large
/// frame the server drops.
const ROUNDS: usize = 128;
/// The runtime, the test's own buffers and the allocator's slack.
const SLACK: usize = 32 * MIB;

/// Keeps what it is sent.
#[rpc::service]
pub trait Hoard {
    /// Holds `items` unread until the call is dropped.
    async fn hoard(&self, items: rpc::Stream<Vec<u8>>) -> u32;
    /// Items, some day.
    async fn spout(&self) -> rpc::Stream<Vec<u8>>;
}

struct HoardImpl;

impl Hoard for HoardImpl {
    async fn hoard(&self, items: rpc::Stream<Vec<u8>>) -> u32 {
        let _unread = items;
        std::future::pending().await
    }

    async fn spout(&self) -> rpc::Stream<Vec<u8>> {
        rpc::Stream::new(futures::stream::pending())
    }
}

/// Sends a Ping and reads until its Pong: the peer has handled every
/// frame sent before it.
async fn synced(peer: &mut RawConn, nonce: u64) {
    peer.send(&raw::ping(nonce)).await;
    loop {
        let f = peer.next_frame(Duration::from_secs(10)).await.unwrap();
        if f.kind == raw::kind::PONG && f.call_id == nonce {
            return;
        }
    }
}

/// `ROUNDS` times: a 1 MiB item for call `other` (not open), then a small
/// item for call `id`, in one write; then a sync. Returns how much the
/// process grew meanwhile, and the bytes of the small items.
async fn hoard_behind_large_frames(peer: &mut RawConn, id: u64, other: u64) -> (usize, usize) {
    let before = resident();
    // 39 bytes of payload: one more than is copied in place.
    let small = raw::stream_item(id, &raw::args(&vec![7u8; 38]));
    assert_eq!(small.len(), raw::HEADER + 39);
    let mut round = raw::stream_item(other, &vec![0u8; MIB]);
    round.extend_from_slice(&small);
    for _ in 0..ROUNDS {
        peer.send(&round).await;
    }
    drop(round);
    synced(peer, 9).await;
    (resident().saturating_sub(before), ROUNDS * small.len())
}

/// A peer leaves 128 items of 39 bytes unread on a stream, 6.6 KiB of
/// the window; each follows a 1 MiB item for a call that is not open (which
/// is dropped) in the same write. The receiver holds about that 6.6 KiB,
/// not the 128 MiB of read buffers the small items were read into: a
/// server receiving a client's stream, then a client receiving a server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_unread_items_do_not_pin_the_read_buffers_they_came_in() {
    let server = rpc::Server::builder()
        .add_service(HoardServer::new(HoardImpl))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let mut peer = RawConn::handshake(server.local_addr()).await;
    peer.send(&raw::request(
        1,
        "Hoard.hoard",
        Duration::from_secs(60),
        &[],
    ))
    .await;
    let (grown, unread) = hoard_behind_large_frames(&mut peer, 1, 2).await;
    eprintln!(
        "the server grew by {} MiB for {unread} bytes of unread items",
        grown / MIB
    );
    assert!(
        grown < SLACK,
        "the server holds {} MiB for {unread} bytes of unread items",
        grown / MIB
    );
    drop((peer, server));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = async {
        let (stream, _) = listener.accept().await.unwrap();
        RawConn::accept_handshake(stream).await
    };
    let (channel, mut peer) = tokio::join!(rpc::Channel::connect(addr), accept);
    let hoard = HoardClient::new(channel.unwrap());
    let spout = tokio::spawn(async move { hoard.spout().await });
    let request = peer.next_frame(Duration::from_secs(10)).await.unwrap();
    assert_eq!(request.kind, raw::kind::REQUEST);
    let id = request.call_id;
    peer.send(&raw::frame(raw::kind::RESPONSE, 0, id, &[0]))
        .await;
    let unread_stream = spout.await.unwrap().unwrap();
    let (grown, unread) = hoard_behind_large_frames(&mut peer, id, id + 1).await;
    eprintln!(
        "the client grew by {} MiB for {unread} bytes of unread items",
        grown / MIB
    );
    assert!(
        grown < SLACK,
        "the client holds {} MiB for {unread} bytes of unread items",
        grown / MIB
    );
    drop(unread_stream);
}
