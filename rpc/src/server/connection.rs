//! The per-connection driver: reads frames, spawns one task per request,
//! cancels handlers on Cancel, deadline or disconnect, and enforces the
//! connection's limits (handlers, queued replies, frame time, idleness,
//! keepalive, abuse).
//!
//! While every handler slot is taken the driver keeps reading, acting on
//! Cancels, Pings and GoAways at once and holding requests back for a slot
//! (`held.rs`), within a bound; past it, or while too many replies wait to be
//! written, it stops reading the connection (backpressure): the peer's own
//! socket buffers then fill up and its writes wait. Nothing is queued without
//! bound.
//!
//! This file reads frames and routes each request; `handler.rs` starts a
//! request's handler, `held.rs` keeps the requests waiting for a slot, and
//! `timers.rs` holds the timers checked between frames and the drain.

use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Shared;
use super::calls::{Abuse, Calls};
use super::dispatch::Handler;
use super::streams::Streams;
use crate::observe::metrics;
use crate::protocol::{
    DRAIN_PING, FLAG_METADATA, FLAG_SCHEMA, FrameBuf, FrameCodec, FrameError, GoAwayReason, Hello,
    Kind, features,
};
use crate::{Compression, Format, Metadata};
use end::End;
use held::HeldBack;
use request::Arrived;
use timers::{Clock, Drain};

use crate::transport::budget::{FREE_BYTES, Grant, ReadBudget};
use crate::transport::{
    self, BACKLOG_LIMIT, FrameReader, Incoming, Link, Outbox, Peer, Turns, Writer,
};

/// Bytes a paused driver reads ahead, to notice the peer leaving: what a
/// reader may buffer without the server's budget. A peer that has more than
/// this queued behind a full hold and leaves is noticed only when a write to
/// it fails (the Ping sent while paused).
const READ_AHEAD_WHILE_PAUSED: usize = FREE_BYTES;

/// Serves one connection until the peer leaves, a limit closes it, or the
/// server shuts down.
pub(super) async fn serve(link: Link, shared: Arc<Shared>) {
    let _counted = metrics::Connection::open(metrics::Side::Server);
    let link = metrics::count_bytes(link, metrics::Side::Server);
    let Link {
        read,
        write: mut w,
        peer,
    } = link;
    let config = &shared.config;
    let mut reader = FrameReader::new(read, FrameCodec::new(config.max_frame))
        .with_budget(ReadBudget::new(shared.frame_budget.clone()));
    let handshake = tokio::select! {
        result = transport::handshake(
            &mut reader, &mut w, true, config.handshake_timeout,
            Hello::ours(config.max_frame, config.stream_window)
                .with_features(config.accepted_compression() | features::SCHEMA),
            config.accept_formats,
        ) => result,
        _ = shared.drain.cancelled() => return,
    };
    let theirs = match handshake {
        Ok(theirs) => theirs,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "handshake failed");
            return;
        }
    };
    // On a current-thread runtime a spawned handler or writer would run on
    // this same thread anyway, so doing their work in the driver costs no
    // parallelism and saves tasks (and orders the work better).
    let current_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let (outbox, mut writer) = transport::start_writer(w, config.write_batching, current_thread);
    let mut driver = Driver {
        permits: Arc::new(Semaphore::new(config.max_handlers_per_connection)),
        calls: Arc::new(Calls::default()),
        next_seq: 0,
        cancel_credits: 0,
        reply_limit: config.max_frame.min(theirs.accepts()),
        abuse: Abuse::new(config.abuse_limit, config.abuse_window),
        held: HeldBack::new(shared.frame_budget.clone()),
        streams: Arc::default(),
        send_window: theirs.stream_window(),
        peer_features: theirs.features,
        // The client's: the handshake has refused any other.
        format: Format::of_features(theirs.features).unwrap_or_default(),
        drain: None,
        outbox,
        peer,
        shared: shared.clone(),
        inline_first_poll: current_thread,
        writer_inline: writer.is_inline(),
        turns: Turns::new(if writer.is_inline() {
            transport::SERVER_ALONE_WRITING
        } else {
            transport::SERVER_ALONE
        }),
    };
    let end = driver.run(&mut reader, &mut writer).await;
    tracing::debug!(peer = %driver.peer, ?end, "connection closing");
    if let Some((reason, message)) = end.goaway() {
        let _ = driver.outbox.send(reason.encode(&message));
    }
    // The grace period is over: streams still open end with a reason,
    // which the writer is given a moment to send.
    let streams_ended = matches!(end, End::Killed) && driver.streams.shut_down() > 0;
    driver.calls.abort_all();
    // Aborted handlers may hold clones of the outbox a little longer.
    driver.outbox.close();
    drop(driver);
    // Let queued replies and the GoAway reach the peer, but not forever: a peer
    // that stopped reading must not pin this task.
    let flush = if streams_ended {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    tokio::select! {
        _ = &mut writer => {}
        _ = tokio::time::sleep(flush) => writer.abort(),
        _ = shared.kill.cancelled(), if !streams_ended => writer.abort(),
    }
}

/// A request ready to start: at once, or once a handler slot frees up.
struct Parked {
    id: u64,
    method: &'static str,
    handler: Handler,
    deadline: Instant,
    budget: Duration,
    /// Its bytes' share of the server's frame budget, while it waits.
    grant: Option<Grant>,
    /// It opens a stream: never run in the driver, however quick.
    streaming: bool,
    /// What the caller sent with it.
    metadata: Option<Arc<Metadata>>,
}

struct Driver {
    permits: Arc<Semaphore>,
    calls: Arc<Calls>,
    next_seq: u64,
    /// Requests not yet matched by a Cancel. A client sends at most one
    /// Cancel per request, so a Cancel of an unknown id covered by a credit
    /// is one that crossed its call's reply on the wire (a normal race);
    /// one beyond the credits is abuse.
    cancel_credits: u64,
    /// The largest frame the client accepts (and we would send).
    reply_limit: usize,
    abuse: Abuse,
    held: HeldBack,
    /// The streaming calls open on this connection.
    streams: Arc<Streams>,
    /// The stream window the client grants each stream we send it.
    send_window: usize,
    /// What the client's Hello said it accepts (see `protocol::features`).
    peer_features: u32,
    /// The format of the connection's values, as the client chose.
    format: Format,
    drain: Option<Drain>,
    outbox: Outbox,
    peer: Peer,
    shared: Arc<Shared>,
    /// Run each handler's first poll in the driver. Only on a current-thread
    /// runtime: there a spawned handler would run on this same thread anyway,
    /// so polling it here first costs no parallelism and saves a task for
    /// every handler that is done in one poll. On a multi-thread runtime each
    /// handler gets its own task, so handlers on one connection run in
    /// parallel and a slow one never holds up the others or the reading.
    inline_first_poll: bool,
    /// The writer is polled by [`Driver::run`], not a task of its own.
    writer_inline: bool,
    /// Frames handled per turn of the loop before it checks shutdown, timers
    /// and backpressure again, and lets the writer send the replies made so
    /// far: see [`Turns`].
    turns: Turns,
}

impl Drop for Driver {
    /// However the driver ends (even by a panic), its handlers do not outlive
    /// the connection.
    fn drop(&mut self) {
        self.calls.abort_all();
    }
}

impl Driver {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        writer: &mut Writer,
    ) -> End {
        let shared = self.shared.clone();
        let config = &shared.config;
        let period = [
            config.frame_timeout,
            config.idle_timeout,
            config.keepalive_interval,
            config.keepalive_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or_default()
            / 4;
        let mut tick = tokio::time::interval(period.max(Duration::from_millis(5)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let now = Instant::now();
        let mut clock = Clock {
            partial_since: None,
            active_at: now,
            heard_at: now,
            ping_sent: None,
            written: 0,
            stalled_since: now,
            paused_ping_at: now,
        };
        // Made once: building these per turn registers and unregisters a
        // waiter on a list that every connection of the server shares.
        let killed = shared.kill.cancelled();
        let draining = shared.drain.cancelled();
        tokio::pin!(killed, draining);
        loop {
            let holding = !self.held.is_empty();
            let backed_up = self.outbox.queued() >= BACKLOG_LIMIT;
            let paused = self.held.is_full() || backed_up;
            let (lingering, give_up_at) = match &self.drain {
                Some(d) if !d.settled => (true, d.give_up_at),
                _ => (false, now),
            };
            tokio::select! {
                biased;
                _ = &mut killed => return End::Killed,
                // Polled every time round: an inline writer writes here what
                // the last batch queued, before the next is read.
                ended = &mut *writer => {
                    if let Err(e) = ended {
                        tracing::debug!(peer = %self.peer, error = %e, "writing to the client failed");
                    }
                    return End::PeerClosed;
                }
                _ = &mut draining, if self.drain.is_none() => {
                    self.begin_drain(GoAwayReason::Shutdown, "the server is shutting down");
                }
                _ = self.calls.emptied.notified(), if self.drain.is_some() => {}
                // Async blocks: the futures are built on every turn of the
                // loop (once per frame), but these only matter while
                // draining or holding, so their work waits for a first poll.
                _ = async { tokio::time::sleep_until(give_up_at).await }, if lingering => {
                    if let Some(drain) = &mut self.drain {
                        drain.settled = true;
                    }
                }
                permit = async { (self.permits.clone().acquire_owned().await, own_waker().await) }, if holding => {
                    let (permit, waker) = permit;
                    let request = self.held.pop().expect("holding");
                    let now = Instant::now();
                    let permit = permit.expect("never closed");
                    if let Some(end) = self.start(request, Some(permit), now, &waker) {
                        return end;
                    }
                }
                _ = self.outbox.wait_for_room(BACKLOG_LIMIT), if backed_up => {
                    if self.outbox.is_closed() {
                        return End::PeerClosed;
                    }
                }
                _ = tick.tick() => {
                    if let Some(end) = self.check_timers(reader, &mut clock, paused) {
                        return end;
                    }
                }
                // Paused (the hold is full, or replies are backed up), the
                // driver takes no frames, but the peer may leave
                // meanwhile: it reads ahead a little, only to see that, and
                // then drops the peer's handlers at once. The end of the
                // stream means the peer has gone, as when not paused: a
                // half-closed peer gets no replies, to what was read ahead
                // or to anything else.
                read = std::future::poll_fn(|cx| {
                    if paused {
                        reader.poll_closed(cx, READ_AHEAD_WHILE_PAUSED).map(|()| None)
                    } else {
                        reader.poll_incoming(cx, Kind::Request).map(Some)
                    }
                }) => {
                    let Some(frame) = read else {
                        return End::PeerClosed;
                    };
                    if let Some(end) = self.on_frames(frame, reader, &mut clock).await {
                        return end;
                    }
                }
            }
            let drained = self.drain.as_ref().is_some_and(|d| d.settled)
                && self.held.is_empty()
                && self.calls.is_empty();
            if drained {
                return End::Drained;
            }
        }
    }

    /// Handles `first` and then every frame already buffered, up to a batch:
    /// the `select!` above builds several futures per turn, so a burst of
    /// pipelined requests pays for it once, not once per frame.
    async fn on_frames<R: AsyncRead + Unpin>(
        &mut self,
        first: Option<Result<Incoming, FrameError>>,
        reader: &mut FrameReader<R>,
        clock: &mut Clock,
    ) -> Option<End> {
        let mut next = first;
        // One clock read per batch: the frames of a batch arrived together,
        // and a budget counted from the batch's start is the stricter one.
        let now = Instant::now();
        let waker = own_waker().await;
        let turn_length = self.turns.begin();
        for turn in 1..=turn_length {
            let frame = match next {
                None => return Some(End::PeerClosed),
                Some(Err(e)) => return Some(End::Protocol(e.to_string())),
                Some(Ok(frame)) => frame,
            };
            clock.partial_since = None;
            clock.heard_at = now;
            clock.ping_sent = None;
            // A request, fast or flagged (metadata, compression), is activity.
            if matches!(&frame, Incoming::Of(..))
                || matches!(&frame, Incoming::Frame(f) if f.kind == Kind::Request)
            {
                clock.active_at = now;
            }
            let grant = reader.take_grant();
            let compressed = reader.take_compressed();
            if let Some(end) = self.on_frame(frame, grant, compressed, now, &waker) {
                return Some(end);
            }
            // Each frame spends from the task's budget, so that a peer that
            // never stops sending cannot hold the thread: the driver yields
            // once the budget is spent (with an inline writer the turns
            // themselves do not yield).
            tokio::task::coop::consume_budget().await;
            // Stop before taking a frame that this turn would not handle.
            let full = turn == turn_length;
            if full || self.held.is_full() || self.outbox.queued() >= BACKLOG_LIMIT {
                // An inline writer sends the replies so far when the loop
                // comes round; a spawned one needs the thread.
                if full && !self.writer_inline {
                    tokio::task::yield_now().await;
                }
                return None;
            }
            // One poll with this task's own waker (not a no-op one: under
            // tokio's coop budget a resource wakes the waker it is given,
            // and a wake given to a no-op waker would be lost).
            let next_frame = std::future::poll_fn(|cx| reader.poll_incoming(cx, Kind::Request));
            match futures::poll!(next_frame) {
                Poll::Ready(frame) => next = frame,
                Poll::Pending => return None,
            }
        }
        None
    }

    /// A Request (its id and payload, its share of the frame budget if it
    /// needed one, the algorithm it came compressed with if it did) or
    /// another frame.
    fn on_frame(
        &mut self,
        incoming: Incoming,
        grant: Option<Grant>,
        compressed: Option<Compression>,
        now: Instant,
        waker: &Waker,
    ) -> Option<End> {
        let request = Arrived {
            grant,
            compressed,
            at: now,
            metadata: false,
            fingerprint: false,
        };
        let frame = match incoming {
            Incoming::Of(id, flags, payload) => {
                let request = Arrived {
                    fingerprint: flags & FLAG_SCHEMA != 0,
                    ..request
                };
                return self.on_request(id, payload, request, waker);
            }
            Incoming::Items(items) => return self.on_stream_items(items),
            Incoming::Frame(frame) => frame,
        };
        match frame.kind {
            Kind::Request => {
                let request = Arrived {
                    metadata: frame.flags & FLAG_METADATA != 0,
                    fingerprint: frame.flags & FLAG_SCHEMA != 0,
                    ..request
                };
                let payload = frame.payload.into();
                return self.on_request(frame.call_id, payload, request, waker);
            }
            Kind::Cancel => {
                // A held request that is cancelled never starts.
                let known = self.calls.cancel(frame.call_id) || self.held.cancel(frame.call_id);
                let covered = self.cancel_credits > 0;
                self.cancel_credits = self.cancel_credits.saturating_sub(1);
                if !known && !covered && self.abuse.record() {
                    return Some(End::Abuse("too many cancels of unknown calls".into()));
                }
            }
            Kind::Ping => {
                let _ = self
                    .outbox
                    .send(FrameBuf::new(Kind::Pong, frame.call_id, 0));
            }
            Kind::Pong => {
                if frame.call_id == DRAIN_PING
                    && let Some(drain) = &mut self.drain
                {
                    drain.settled = true;
                }
            }
            Kind::StreamItem | Kind::StreamEnd | Kind::StreamCredit => {
                return self.on_stream_frame(frame);
            }
            Kind::GoAway => {
                // The client is leaving: finish what runs, take nothing new.
                let drain = self.drain.get_or_insert(Drain {
                    settled: true,
                    give_up_at: Instant::now(),
                });
                drain.settled = true;
            }
            other => {
                return Some(End::Protocol(format!(
                    "unexpected {other:?} frame from a client"
                )));
            }
        }
        None
    }
}

/// The waker of the task running this future.
async fn own_waker() -> Waker {
    std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await
}

mod end;
mod handler;
mod held;
mod request;
mod stream_frames;
#[cfg(test)]
mod tests;
mod timers;
