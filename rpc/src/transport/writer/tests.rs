//! The writer keeps frames in order, batches what is queued together, counts
//! what the peer has not taken, and ends cleanly on close or on failure.

use super::*;
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn writes_frames_in_order_and_closes_when_senders_drop() {
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let (tx, task) = start_writer(a, true, false);
    assert!(tx.send(Bytes::from_static(b"one ")));
    assert!(tx.send(Bytes::from(vec![b'x'; DIRECT_WRITE])));
    assert!(tx.send(Bytes::from_static(b" two")));
    drop(tx);
    task.await.unwrap();
    let mut out = Vec::new();
    b.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len(), 8 + DIRECT_WRITE);
    assert!(out.starts_with(b"one x") && out.ends_with(b"x two"));
}

/// Records the size of every write it is given.
#[derive(Default)]
struct Recorder(Vec<usize>);

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.push(buf.len());
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Three small frames queued before the writer runs: one write when
/// batching, three without.
async fn writes_of_three_queued_frames(batching: bool) -> Vec<usize> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let io = Recorder::default();
    // A current-thread test runtime: the writer runs only once we yield.
    let queue = Arc::new(Queue::new(OwnLane::default(), batching));
    let outbox = Outbox {
        queue: queue.clone(),
    };
    let task = tokio::spawn(async move {
        let mut io = io;
        let _ = super::task::run(&mut io, queue).await;
        let _ = tx.send(io.0);
    });
    for frame in [&b"one"[..], b"two", b"three"] {
        assert!(outbox.send(Bytes::copy_from_slice(frame)));
    }
    drop(outbox);
    task.await.unwrap();
    rx.await.unwrap()
}

#[tokio::test]
async fn frames_queued_together_go_out_in_one_write_unless_batching_is_off() {
    assert_eq!(writes_of_three_queued_frames(true).await, vec![11]);
    assert_eq!(writes_of_three_queued_frames(false).await, vec![3, 3, 5]);
}

#[tokio::test]
async fn counts_queued_bytes_until_the_peer_reads_them() {
    // A pipe that holds 16 bytes: the rest stays queued until read.
    let (a, mut b) = tokio::io::duplex(16);
    let (tx, _task) = start_writer(a, true, false);
    for _ in 0..10 {
        assert!(tx.send(Bytes::from_static(&[7; 10])));
    }
    tokio::task::yield_now().await;
    assert!(tx.queued() > 16, "{} bytes queued", tx.queued());
    let room = tokio::spawn({
        let tx = tx.clone();
        async move { tx.wait_for_room(1).await }
    });
    let mut out = vec![0; 100];
    b.read_exact(&mut out).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), room)
        .await
        .expect("no room after the peer read everything")
        .unwrap();
    assert_eq!(tx.queued(), 0);
}

#[tokio::test]
async fn close_flushes_what_is_queued_even_with_clones_alive() {
    let (a, mut b) = tokio::io::duplex(1 << 10);
    let (tx, task) = start_writer(a, true, false);
    let clone = tx.clone();
    assert!(tx.send(Bytes::from_static(b"last words")));
    tx.close();
    task.await.unwrap();
    assert!(!clone.send(Bytes::from_static(b"too late")));
    assert!(clone.is_closed());
    let mut out = Vec::new();
    b.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"last words");
}

#[tokio::test]
async fn waiting_for_room_ends_when_the_writer_fails() {
    let (a, b) = tokio::io::duplex(4);
    let (tx, task) = start_writer(a, true, false);
    assert!(tx.send(Bytes::from_static(&[1; 64])));
    drop(b); // the peer is gone: the write fails
    assert!(task.await.is_err());
    tokio::time::timeout(Duration::from_secs(5), tx.wait_for_room(1))
        .await
        .expect("waited for room on a dead connection");
    assert!(tx.is_closed());
}
