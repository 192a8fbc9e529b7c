//! One connection of the fault network: two in-memory pipes (client to
//! middle, middle to server) and a task in the middle that carries bytes
//! across, each direction on its own, as the endpoint's controls say.
//!
//! A direction is a reader and a deliverer joined by a bounded queue. The
//! reader stamps each chunk with the time it may arrive (when it was sent
//! plus the latency then); the deliverer hands chunks on in the order they
//! were sent, each no earlier than its stamp and never while the endpoint
//! is stalled. So latency delays bytes without reordering them, a chunk
//! sent while another is in flight is not held up by that one's delay, and
//! a stall holds everything not yet delivered. The queue bounds what is in
//! flight (as a socket's buffers would): past it the reader waits, and so,
//! once its pipe is full, does the writer at the end.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes each end's pipe buffers before its writer waits.
pub(super) const PIPE_BUFFER: usize = 64 * 1024;
/// The largest chunk the middle reads at once.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction: with [`CHUNK`], at most 1 MiB.
const IN_FLIGHT: usize = 64;

/// What a test has set on an endpoint, as the middle of each of its
/// connections reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Faults {
    pub(super) latency: Duration,
    pub(super) stalled: bool,
    pub(super) refused: bool,
}

/// Carries bytes between `client` and `server` (the middle's ends of the two
/// pipes) until both directions have ended, either side fails, or `cut` is
/// cancelled. Ending drops both ends, so each side reads EOF.
pub(super) async fn carry(
    client: DuplexStream,
    server: DuplexStream,
    faults: watch::Receiver<Faults>,
    cut: CancellationToken,
) {
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let both = futures::future::try_join(
        direction(client_read, server_write, faults.clone()),
        direction(server_read, client_write, faults),
    );
    // An error in one direction (its far end gone) ends the other too: the
    // connection is broken either way.
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = both => {}
    }
}

/// One direction: reads from `from` and delivers to `to` until `from` ends,
/// then passes the end on (the peer reads EOF).
async fn direction<R, W>(from: R, mut to: W, faults: watch::Receiver<Faults>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, mut arrivals) = mpsc::channel::<(Instant, Bytes)>(IN_FLIGHT);
    let read = send(from, queue, faults.clone());
    let deliver = async move {
        let mut faults = faults;
        while let Some((at, chunk)) = arrivals.recv().await {
            tokio::time::sleep_until(at).await;
            // A stall set while this chunk was in flight holds it too. The
            // sender lives as long as the endpoint this connection holds.
            let _ = faults.wait_for(|f| !f.stalled).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    futures::future::try_join(read, deliver).await.map(|_| ())
}

/// Reads chunks from `from`, each stamped with its arrival time, into `queue`.
async fn send<R>(
    mut from: R,
    queue: mpsc::Sender<(Instant, Bytes)>,
    faults: watch::Receiver<Faults>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
{
    loop {
        let mut chunk = BytesMut::with_capacity(CHUNK);
        if from.read_buf(&mut chunk).await? == 0 {
            // Dropping the queue lets the deliverer finish and pass the end on.
            return Ok(());
        }
        let at = Instant::now() + faults.borrow().latency;
        if queue.send((at, chunk.freeze())).await.is_err() {
            // The deliverer failed: its error is the one to report.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(faults: Faults) -> (DuplexStream, DuplexStream, watch::Sender<Faults>) {
        let (client, client_middle) = tokio::io::duplex(PIPE_BUFFER);
        let (server_middle, server) = tokio::io::duplex(PIPE_BUFFER);
        let (control, faults) = watch::channel(faults);
        let cut = CancellationToken::new();
        tokio::spawn(carry(client_middle, server_middle, faults, cut));
        (client, server, control)
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_each_chunk_and_keeps_the_order() {
        let latency = Duration::from_millis(100);
        let (mut client, mut server, control) = connection(Faults {
            latency,
            ..Faults::default()
        });
        let start = Instant::now();
        client.write_all(b"one ").await.unwrap();
        // Let the middle read it (and stamp it), then lower the latency for
        // the second chunk: due first, it must still come second.
        tokio::time::sleep(Duration::from_millis(10)).await;
        control.send_modify(|f| f.latency = Duration::ZERO);
        client.write_all(b"two").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"one two");
        assert!(start.elapsed() >= latency);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_holds_bytes_until_resumed() {
        let (mut client, mut server, control) = connection(Faults::default());
        control.send_modify(|f| f.stalled = true);
        client.write_all(b"held").await.unwrap();
        let mut buf = [0; 4];
        let early = tokio::time::timeout(Duration::from_secs(60), server.read(&mut buf)).await;
        assert!(early.is_err(), "bytes crossed a stalled connection");
        control.send_modify(|f| f.stalled = false);
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"held");
    }
}
