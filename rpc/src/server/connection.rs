//! The per-connection driver: reads frames, spawns one task per request,
//! cancels handlers on Cancel, deadline or disconnect, and enforces the
//! connection's limits (handlers, frame time, idleness, keepalive, abuse).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Shared;
use super::dispatch::{Call, Handler};
use crate::context::{self, Context};
use crate::protocol::{Frame, FrameBuf, FrameCodec, GoAwayReason, Kind, RequestHead, Status};
use crate::transport::{self, FrameReader, Outbox};

/// Serves one connection until the peer leaves, a limit closes it, or the
/// server shuts down.
pub(super) async fn serve<R, W>(r: R, mut w: W, peer: Option<SocketAddr>, shared: Arc<Shared>)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let config = &shared.config;
    let mut reader = FrameReader::new(r, FrameCodec::new(config.max_frame));
    let handshake = tokio::select! {
        result = transport::handshake(&mut reader, &mut w, true, config.handshake_timeout) => result,
        _ = shared.drain.cancelled() => return,
    };
    if let Err(e) = handshake {
        tracing::debug!(?peer, error = %e, "handshake failed");
        return;
    }
    let (outbox, writer) = transport::spawn_writer(w);
    let mut driver = Driver {
        permits: Arc::new(Semaphore::new(config.max_handlers_per_connection)),
        calls: Arc::new(Calls::default()),
        abuse: Abuse::new(config.abuse_limit, config.abuse_window),
        draining: false,
        outbox,
        peer,
        shared: shared.clone(),
    };
    let end = driver.run(&mut reader).await;
    tracing::debug!(?peer, ?end, "connection closing");
    if let Some((reason, message)) = end.goaway() {
        let _ = driver.outbox.send(reason.encode(&message));
    }
    driver.calls.abort_all();
    drop(driver);
    // Let queued replies and the GoAway reach the peer, but not forever: a peer
    // that stopped reading must not pin this task.
    let mut writer = writer;
    tokio::select! {
        _ = &mut writer => {}
        _ = tokio::time::sleep(Duration::from_secs(5)) => writer.abort(),
        _ = shared.kill.cancelled() => writer.abort(),
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// Shutdown finished draining it.
    Drained,
    /// The server is stopping now.
    Killed,
    /// The peer closed the connection.
    PeerClosed,
    Protocol(String),
    Abuse(String),
    Idle(Duration),
    FrameTimeout(Duration),
    KeepaliveDead,
}

impl End {
    /// The GoAway to send the peer, if it deserves one.
    fn goaway(&self) -> Option<(GoAwayReason, String)> {
        match self {
            End::Protocol(m) => Some((GoAwayReason::Protocol, m.clone())),
            End::Abuse(m) => Some((GoAwayReason::Abuse, m.clone())),
            End::Idle(d) => Some((GoAwayReason::Idle, format!("idle for {d:?}"))),
            End::FrameTimeout(d) => Some((
                GoAwayReason::Protocol,
                format!("a frame took longer than {d:?} to arrive"),
            )),
            _ => None,
        }
    }
}

/// The handlers running on one connection, by call id.
#[derive(Default)]
struct Calls {
    running: Mutex<HashMap<u64, AbortHandle>>,
    /// Signalled when the last running handler finishes (for draining).
    emptied: Notify,
}

impl Calls {
    fn is_empty(&self) -> bool {
        self.running.lock().unwrap().is_empty()
    }

    fn finish(&self, id: u64) {
        let mut running = self.running.lock().unwrap();
        running.remove(&id);
        if running.is_empty() {
            self.emptied.notify_one();
        }
    }

    fn cancel(&self, id: u64) -> bool {
        let handle = self.running.lock().unwrap().remove(&id);
        handle.map(|h| h.abort()).is_some()
    }

    fn abort_all(&self) {
        for (_, h) in self.running.lock().unwrap().drain() {
            h.abort();
        }
    }
}

/// Counts abuse (cancels of unknown calls, malformed requests) in a window.
struct Abuse {
    limit: u32,
    window: Duration,
    count: u32,
    since: Instant,
}

impl Abuse {
    fn new(limit: u32, window: Duration) -> Self {
        Abuse {
            limit,
            window,
            count: 0,
            since: Instant::now(),
        }
    }

    /// Records one event; true once the budget is exceeded.
    fn record(&mut self) -> bool {
        if self.since.elapsed() > self.window {
            self.count = 0;
            self.since = Instant::now();
        }
        self.count += 1;
        self.count > self.limit
    }
}

struct Driver {
    permits: Arc<Semaphore>,
    calls: Arc<Calls>,
    abuse: Abuse,
    draining: bool,
    outbox: Outbox,
    peer: Option<SocketAddr>,
    shared: Arc<Shared>,
}

/// Timers of the read loop, checked on a coarse tick rather than per frame.
struct Clock {
    /// When a frame that is still incomplete was first seen in the buffer.
    partial_since: Option<Instant>,
    /// Last time the connection was busy (a frame arrived or a handler ran).
    active_at: Instant,
    /// Last frame from the peer.
    heard_at: Instant,
    ping_sent: Option<Instant>,
}

impl Driver {
    async fn run<R: AsyncRead + Unpin>(&mut self, reader: &mut FrameReader<R>) -> End {
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
        };
        loop {
            tokio::select! {
                biased;
                _ = shared.kill.cancelled() => return End::Killed,
                _ = shared.drain.cancelled(), if !self.draining => {
                    self.draining = true;
                    let _ = self.outbox.send(GoAwayReason::Shutdown.encode("the server is shutting down"));
                    if self.calls.is_empty() {
                        return End::Drained;
                    }
                }
                _ = self.calls.emptied.notified(), if self.draining => {
                    if self.calls.is_empty() {
                        return End::Drained;
                    }
                }
                _ = tick.tick() => {
                    if let Some(end) = self.check_timers(reader, &mut clock) {
                        return end;
                    }
                }
                frame = reader.next() => {
                    let frame = match frame {
                        None => return End::PeerClosed,
                        Some(Err(e)) => return End::Protocol(e.to_string()),
                        Some(Ok(frame)) => frame,
                    };
                    let now = Instant::now();
                    clock.partial_since = None;
                    clock.heard_at = now;
                    clock.active_at = now;
                    clock.ping_sent = None;
                    if let Some(end) = self.on_frame(frame).await {
                        return end;
                    }
                }
            }
        }
    }

    fn check_timers<R>(&self, reader: &FrameReader<R>, clock: &mut Clock) -> Option<End> {
        let config = &self.shared.config;
        let now = Instant::now();
        if reader.read_buffer().is_empty() {
            clock.partial_since = None;
        } else {
            let since = *clock.partial_since.get_or_insert(now);
            if now - since >= config.frame_timeout {
                return Some(End::FrameTimeout(config.frame_timeout));
            }
        }
        let busy = !self.calls.is_empty();
        if busy {
            clock.active_at = now;
        } else if now - clock.active_at >= config.idle_timeout {
            return Some(End::Idle(config.idle_timeout));
        }
        match clock.ping_sent {
            Some(sent) if now - sent >= config.keepalive_timeout => {
                return Some(End::KeepaliveDead);
            }
            None if busy && now - clock.heard_at >= config.keepalive_interval => {
                clock.ping_sent = Some(now);
                let _ = self.outbox.send(FrameBuf::new(Kind::Ping, 0, 0).finish());
            }
            _ => {}
        }
        None
    }

    async fn on_frame(&mut self, frame: Frame) -> Option<End> {
        match frame.kind {
            Kind::Request => return self.on_request(frame.call_id, frame.payload).await,
            Kind::Cancel => {
                if !self.calls.cancel(frame.call_id) && self.abuse.record() {
                    return Some(End::Abuse("too many cancels of unknown calls".into()));
                }
            }
            Kind::Ping => {
                let _ = self
                    .outbox
                    .send(FrameBuf::new(Kind::Pong, frame.call_id, 0).finish());
            }
            Kind::Pong => {}
            Kind::GoAway => {
                // The client is leaving: finish what runs, take nothing new.
                self.draining = true;
                if self.calls.is_empty() {
                    return Some(End::Drained);
                }
            }
            other => {
                return Some(End::Protocol(format!(
                    "unexpected {other:?} frame from a client"
                )));
            }
        }
        None
    }

    async fn on_request(&mut self, id: u64, payload: Bytes) -> Option<End> {
        let Some((head, args)) = RequestHead::parse(payload) else {
            let _ = self
                .outbox
                .send(Status::Decode.reply(id, "request shorter than its 16-byte head"));
            return self
                .abuse
                .record()
                .then(|| End::Abuse("too many malformed requests".into()));
        };
        if self.draining {
            let _ = self
                .outbox
                .send(Status::ShuttingDown.reply(id, "the server is shutting down"));
            return None;
        }
        if self.calls.running.lock().unwrap().contains_key(&id) {
            return Some(End::Protocol(format!("call id {id} is already in flight")));
        }
        let config = &self.shared.config;
        let call = Call {
            id,
            args,
            max_frame: config.max_frame,
        };
        let Some((method, handler)) = self.shared.router.route(head.method_id, call) else {
            let services = self.shared.router.service_names().join(", ");
            let message = format!(
                "no method with id {:#018x} (this server serves: {services})",
                head.method_id
            );
            let _ = self.outbox.send(Status::UnknownMethod.reply(id, &message));
            return None;
        };
        // Backpressure: at the cap, stop reading this connection until a
        // handler finishes, rather than queueing requests without bound.
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::select! {
                p = self.permits.clone().acquire_owned() => p.expect("never closed"),
                _ = self.shared.kill.cancelled() => return Some(End::Killed),
            },
        };
        let budget = head.budget.min(config.max_budget);
        self.spawn_handler(id, method, handler, budget, permit);
        None
    }

    fn spawn_handler(
        &self,
        id: u64,
        method: &'static str,
        handler: Handler,
        budget: Duration,
        permit: OwnedSemaphorePermit,
    ) {
        let deadline = Instant::now() + budget;
        let ctx = Context {
            deadline,
            peer: self.peer,
            call_id: id,
            method,
        };
        let calls = self.calls.clone();
        let outbox = self.outbox.clone();
        // Held across the spawn so the task cannot finish (and remove itself)
        // before its abort handle is recorded.
        let mut running = self.calls.running.lock().unwrap();
        let task = tokio::spawn(async move {
            let run = AssertUnwindSafe(context::scope(ctx, handler)).catch_unwind();
            let reply = match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(panic)) => Status::Panicked.reply(id, &panic_message(&*panic)),
                Err(_) => Status::DeadlineExceeded
                    .reply(id, &format!("the handler ran past its {budget:?} budget")),
            };
            calls.finish(id);
            let _ = outbox.send(reply);
            drop(permit);
        });
        running.insert(id, task.abort_handle());
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}
