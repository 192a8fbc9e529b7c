//! The read half of a client connection: one task that hands each Response
//! to its caller, answers Pings, enforces keepalive, and keeps the one
//! deadline timer that fails the connection's overdue calls.

use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::deadlines::Expired;
use super::state::{Shared, StateLane};
use bytes::{BufMut, Bytes, BytesMut};

use crate::Metadata;
use crate::protocol::{DRAIN_PING, FrameBuf, GoAwayReason, ItemRun, Kind, Payload};
use crate::stream::{End, Flow};
use crate::transport::{
    BACKLOG_LIMIT, CLIENT_ALONE, FrameReader, Incoming, ReadHalf, Turns, WeakOutbox, Writer,
};

/// Frames taken straight from the buffer before the read loop checks the
/// writer and the keepalive tick again.
const FRAMES_PER_CHECK: u32 = 64;
/// Responses handed over per lock of the connection's state.
const RESPONSES_PER_LOCK: usize = 16;

pub(super) async fn read_loop(
    mut reader: FrameReader<ReadHalf>,
    mut writer: Writer,
    shared: Arc<Shared>,
    outbox: WeakOutbox<StateLane>,
    keepalive_interval: Duration,
    keepalive_timeout: Duration,
    max_metadata: usize,
) {
    // However the loop ends, even by a panic or an abort, no call is left
    // waiting: with no timer of their own, they would wait for ever.
    let mut closing = Closing {
        shared: &shared,
        outbox: &outbox,
        reason: "the connection's reader stopped".into(),
    };
    let mut last_heard = Instant::now();
    // Something arrived since the last keepalive tick (cheaper than reading
    // the clock per frame; the tick is the resolution that matters).
    let mut heard = false;
    let mut ping_sent: Option<Instant> = None;
    let mut drain_ponged = false;
    let mut fast_frames = 0u32;
    // Turns of the loop (mostly responses handed to their callers) before it
    // yields to those callers, so their next requests go out while we read
    // the rest: see [`Turns`].
    let mut turns = Turns::new(CLIENT_ALONE);
    let mut turn_left = turns.begin();
    let mut tick = tokio::time::interval(keepalive_interval.min(keepalive_timeout) / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timer = tokio::time::sleep_until(Instant::now());
    let timer_moved = shared.timer_moved.notified();
    tokio::pin!(timer, timer_moved);
    let mut armed = false;
    // What the server's GoAway said, to say why when it then closes.
    let mut goaway: Option<String> = None;
    let mut streams = StreamFrames::default();
    closing.reason = loop {
        // Frames already buffered are taken without a trip through `select!`
        // (polled with this task's own waker: see the server's driver).
        // Every so often through `select!` all the same, so a server that
        // never stops sending cannot hide a dead writer or a deadline.
        fast_frames += 1;
        if turn_left == 0 {
            tokio::task::yield_now().await;
            turn_left = turns.begin();
        }
        turn_left -= 1;
        let buffered = if fast_frames < FRAMES_PER_CHECK {
            futures::poll!(std::future::poll_fn(
                |cx| reader.poll_incoming(cx, Kind::Response)
            ))
        } else {
            fast_frames = 0;
            Poll::Pending
        };
        let frame = if let Poll::Ready(frame) = buffered {
            frame
        } else {
            tokio::select! {
                biased;
                // The writer ends early only by failing (it outlives every
                // Outbox otherwise): the connection is dead, so fail pending
                // calls now and let the next call reconnect, rather than
                // leave requests queued that will never be sent.
                ended = &mut writer => break match ended {
                    Err(e) => format!("writing to the server failed: {e}"),
                    Ok(()) => "the connection's writer stopped".to_string(),
                },
                _ = &mut timer_moved => {
                    timer_moved.set(shared.timer_moved.notified());
                    armed = rearm(&shared, timer.as_mut());
                    continue;
                }
                _ = &mut timer, if armed => {
                    expire(&shared, &outbox);
                    armed = rearm(&shared, timer.as_mut());
                    continue;
                }
                frame = std::future::poll_fn(|cx| reader.poll_incoming(cx, Kind::Response)) => frame,
                _ = tick.tick() => {
                    if std::mem::take(&mut heard) {
                        last_heard = Instant::now();
                        ping_sent = None;
                    }
                    match keepalive_check(&shared, last_heard, &mut ping_sent, keepalive_interval, keepalive_timeout) {
                        Keepalive::Fine => {}
                        Keepalive::SendPing => {
                            if let Some(out) = outbox.upgrade() {
                                let _ = out.send(FrameBuf::new(Kind::Ping, 0, 0));
                            }
                        }
                        Keepalive::Dead => break format!("no answer to a keepalive ping within {keepalive_timeout:?}"),
                    }
                    continue;
                }
            }
        };
        heard = true;
        let frame = match frame {
            Some(Ok(f)) => f,
            Some(Err(e)) => break format!("protocol error from the server: {e}"),
            None => {
                break match goaway.take() {
                    Some(said) => format!("the server closed the connection: {said}"),
                    None => "the server closed the connection".into(),
                };
            }
        };
        let frame = match frame {
            Incoming::Of(call_id, _, payload) => {
                // This Response and those right behind it in the buffer,
                // under one lock; their callers are woken once it is released.
                let mut callers: [Option<Waker>; RESPONSES_PER_LOCK] = Default::default();
                {
                    let mut st = shared.lock();
                    // None: the call was cancelled or timed out; the late
                    // reply is dropped.
                    callers[0] = st.complete(call_id, Ok(payload));
                    for caller in &mut callers[1..] {
                        if turn_left == 0 || fast_frames >= FRAMES_PER_CHECK {
                            break;
                        }
                        let Some((id, payload)) = reader.next_buffered(Kind::Response) else {
                            break;
                        };
                        turn_left -= 1;
                        fast_frames += 1;
                        *caller = st.complete(id, Ok(payload));
                    }
                }
                callers.into_iter().flatten().for_each(Waker::wake);
                continue;
            }
            Incoming::Items(items) => {
                if let Err(why) = streams.items(&shared, items) {
                    break why;
                }
                continue;
            }
            Incoming::Frame(frame) => frame,
        };
        match frame.kind {
            Kind::GoAway => {
                // No new calls here; keep reading for the replies of calls in
                // flight and to answer the drain Ping. The server closes.
                let (why, message) = GoAwayReason::parse(&frame.payload);
                tracing::debug!(?why, %message, "the server sent GoAway");
                goaway = Some(message);
                let in_line = shared.lock().drain();
                // Callers waiting for a slot here go elsewhere.
                in_line.into_iter().for_each(Waker::wake);
            }
            Kind::Ping => {
                // A server that floods Pings and reads nothing does not get
                // its Pongs queued without end; but the one drain Ping after
                // a GoAway is always answered, however backed up we are: the
                // server waits for it before closing, so that requests we sent
                // before seeing the GoAway are answered, not lost.
                let drain_ping = frame.call_id == DRAIN_PING && !drain_ponged;
                drain_ponged |= drain_ping;
                if let Some(out) = outbox.upgrade()
                    && (drain_ping || out.queued() < BACKLOG_LIMIT)
                {
                    let _ = out.send(FrameBuf::new(Kind::Pong, frame.call_id, 0));
                }
            }
            Kind::Pong => {}
            Kind::Response => {
                // One that carries metadata (any other came as `Incoming::Of`).
                let payload = split_metadata(frame.payload, max_metadata);
                if let Some(caller) = shared.lock().complete(frame.call_id, Ok(payload)) {
                    caller.wake();
                }
            }
            Kind::StreamItem | Kind::StreamEnd | Kind::StreamCredit => {
                if let Err(why) = streams.on_frame(&shared, frame) {
                    break why;
                }
            }
            other => {
                break format!("protocol error: the server sent an unexpected {other:?} frame");
            }
        }
    };
}

/// A Response payload (status, metadata block, body) as the caller takes
/// it: the status and body, with the metadata beside them. Metadata that
/// breaks the rules (or this client's `max_metadata`) is dropped, not the
/// reply: the handler ran, and its value is the caller's. Only a block whose
/// length runs past the frame leaves the value's start unknown: the payload
/// goes on as it came, and the caller cannot decode it (a Decode error of
/// the response, which may have run).
fn split_metadata(payload: Bytes, max: usize) -> Payload {
    let Some((&status, rest)) = payload.split_first() else {
        return Payload::Shared(payload);
    };
    let Some(block) = crate::metadata::block_len(rest) else {
        return Payload::Shared(payload);
    };
    let metadata = Metadata::decode(rest, max).map_or_else(
        |why| {
            tracing::debug!(%why, "the reply's metadata was dropped");
            Metadata::new()
        },
        |(metadata, _)| metadata,
    );
    let mut reply = BytesMut::with_capacity(payload.len() - block);
    reply.put_u8(status);
    reply.extend_from_slice(&rest[block..]);
    Payload::WithMetadata(Box::new((reply.freeze(), metadata)))
}

/// Marks the connection closed and fails every pending call when the reader
/// ends, however it ends, and closes the write side: the server learns at
/// once that the connection is given up, rather than when the channel
/// replaces it.
struct Closing<'a> {
    shared: &'a Shared,
    outbox: &'a WeakOutbox<StateLane>,
    reason: String,
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        let reason: Arc<str> = std::mem::take(&mut self.reason).into();
        // The calls in flight fail; those in line for a slot go elsewhere.
        let (callers, flows) = self.shared.lock().close(reason.clone());
        callers.into_iter().for_each(Waker::wake);
        // Every stream on the connection ends with why: never silently.
        for flow in flows {
            flow.fail(End::Lost(reason.clone()));
        }
        if let Some(out) = self.outbox.upgrade() {
            out.close();
        }
    }
}

/// Points the deadline timer at the earliest deadline recorded; false if
/// nothing is pending.
fn rearm(shared: &Shared, timer: std::pin::Pin<&mut tokio::time::Sleep>) -> bool {
    match shared.lock().timer {
        Some(at) => {
            if at != timer.deadline() {
                timer.reset(at);
            }
            true
        }
        None => false,
    }
}

/// Fails the calls whose deadline has passed (telling the server to drop
/// their handlers), and records the earliest deadline left.
fn expire(shared: &Shared, outbox: &WeakOutbox<StateLane>) {
    let now = Instant::now();
    let expired = shared.lock().expire(now);
    let out = outbox.upgrade();
    for (id, expired) in expired {
        if let Some(out) = &out {
            let _ = out.send(FrameBuf::new(Kind::Cancel, id, 0));
        }
        match expired {
            Expired::Caller(caller) => caller.wake(),
            Expired::Stream(flow) => flow.fail(End::DeadlineExceeded),
        }
    }
}

enum Keepalive {
    Fine,
    SendPing,
    Dead,
}

/// gRPC's rule: ping only while calls are in flight and the line has been
/// silent; declare the peer dead if the ping goes unanswered.
fn keepalive_check(
    shared: &Shared,
    last_heard: Instant,
    ping_sent: &mut Option<Instant>,
    interval: Duration,
    timeout: Duration,
) -> Keepalive {
    if let Some(sent) = *ping_sent {
        return if sent.elapsed() >= timeout {
            Keepalive::Dead
        } else {
            Keepalive::Fine
        };
    }
    let busy = shared.lock().any_waiting();
    if busy && last_heard.elapsed() >= interval {
        *ping_sent = Some(Instant::now());
        return Keepalive::SendPing;
    }
    Keepalive::Fine
}

/// Hands the server's stream frames to their calls' flows. The flow of the
/// last stream seen is kept, so a stream's runs of items cost one lookup (a
/// call's id is never reused while its flow could be kept: see `slots.rs`).
#[derive(Default)]
struct StreamFrames {
    last: Option<Arc<Flow>>,
}

impl StreamFrames {
    /// The flow of call `id`, remembered; none for a call that is over
    /// (the frame crossed our Cancel on the wire, and is dropped).
    fn flow(&mut self, shared: &Shared, id: u64) -> Option<&Arc<Flow>> {
        if self.last.as_ref().is_none_or(|flow| flow.id() != id) {
            self.last = shared.lock().stream_flow(id);
        }
        self.last.as_ref()
    }

    /// StreamItems: to their stream, held until the application takes them.
    fn items(&mut self, shared: &Shared, items: ItemRun) -> Result<(), String> {
        let Some(flow) = self.flow(shared, items.call_id()) else {
            return Ok(());
        };
        flow.push(items).map_err(|overrun| {
            format!(
                "protocol error: the server sent past the {}-byte window of stream {}",
                overrun.window,
                flow.id()
            )
        })
    }

    fn on_frame(&mut self, shared: &Shared, frame: crate::protocol::Frame) -> Result<(), String> {
        let id = frame.call_id;
        if frame.kind == Kind::StreamItem {
            return self.items(shared, ItemRun::one(id, &frame.payload));
        }
        let Some(flow) = self.flow(shared, id) else {
            return Ok(());
        };
        match frame.kind {
            Kind::StreamEnd => {
                // The server's end ends the call: a stream the client is
                // still sending on it stops too, whether or not the
                // application reads this end soon (the server takes no more
                // of it, and would credit none).
                flow.end(End::Peer(frame.payload.into()));
                flow.close();
                self.last = None;
                Ok(())
            }
            _ => flow
                .credit_frame(&frame.payload)
                .map_err(|why| format!("protocol error: {why}")),
        }
    }
}
