//! The driver's timers, checked on a coarse tick rather than per frame (a
//! frame that takes too long to arrive, a peer that takes none of its
//! replies, keepalive, idleness), and the drain that idleness or a shutdown
//! begins.

use tokio::time::Instant;

use super::{Driver, End};
use crate::protocol::{DRAIN_PING, DRAIN_PING_TIMEOUT, FrameBuf, GoAwayReason, Kind};
use crate::transport::FrameReader;

/// A drain in progress: GoAway was sent (or received); nothing new starts.
pub(super) struct Drain {
    /// The peer can no longer have requests on the way: it answered the Ping
    /// sent after our GoAway, sent its own GoAway, or took too long to answer.
    pub(super) settled: bool,
    /// When to stop waiting for that Pong.
    pub(super) give_up_at: Instant,
}

/// Timers of the read loop, checked on a coarse tick rather than per frame.
pub(super) struct Clock {
    /// When a frame that is still incomplete was first seen in the buffer.
    pub(super) partial_since: Option<Instant>,
    /// Last time the connection was busy: a request arrived or a handler
    /// ran. Pings do not count, or a peer could hold a connection open for
    /// ever without a call.
    pub(super) active_at: Instant,
    /// Last frame from the peer.
    pub(super) heard_at: Instant,
    pub(super) ping_sent: Option<Instant>,
    /// Bytes the writer had written at the last tick, and since when that
    /// number has not moved while replies were waiting.
    pub(super) written: u64,
    pub(super) stalled_since: Instant,
    /// Last Ping sent to reassure the peer while we were not reading.
    pub(super) paused_ping_at: Instant,
}

impl Driver {
    /// Sends GoAway, then a Ping: once the Pong comes back, every request the
    /// peer sent before it saw the GoAway has arrived (and been answered, if
    /// only with ShuttingDown), so closing loses nothing.
    pub(super) fn begin_drain(&mut self, reason: GoAwayReason, message: &str) {
        if self.drain.is_some() {
            return;
        }
        let _ = self.outbox.send(reason.encode(message));
        let _ = self.outbox.send(FrameBuf::new(Kind::Ping, DRAIN_PING, 0));
        self.drain = Some(Drain {
            settled: false,
            give_up_at: Instant::now() + DRAIN_PING_TIMEOUT,
        });
    }

    /// `paused`: the driver is not reading (every handler slot is taken, or
    /// replies are backed up), so silence from the peer proves nothing.
    pub(super) fn check_timers<R>(
        &mut self,
        reader: &FrameReader<R>,
        clock: &mut Clock,
        paused: bool,
    ) -> Option<End> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let now = Instant::now();
        if paused || reader.read_buffer().is_empty() {
            clock.partial_since = None;
        } else {
            let since = *clock.partial_since.get_or_insert(now);
            if now - since >= config.frame_timeout {
                // Waiting for the budget is no fault of the peer's, but it
                // is bounded the same way, with its own reason.
                return Some(if reader.waiting_for_budget() {
                    End::BudgetTimeout(config.frame_timeout)
                } else {
                    End::FrameTimeout(config.frame_timeout)
                });
            }
        }
        if !self.held.is_empty() {
            self.held.expire(now, &self.outbox);
        }
        // A peer that takes none of the replies waiting for it, for as long as
        // keepalive allows an unanswered peer, is as dead as one that does not
        // answer a Ping.
        let written = self.outbox.written();
        if written != clock.written || self.outbox.queued() == 0 {
            clock.written = written;
            clock.stalled_since = now;
        } else if now - clock.stalled_since
            >= config
                .keepalive_interval
                .saturating_add(config.keepalive_timeout)
        {
            return Some(End::KeepaliveDead);
        }
        if paused {
            clock.heard_at = now;
            clock.ping_sent = None;
            // We are not reading, so we do not read the client's keepalive
            // Pings either; a Ping of ours every half interval tells it we
            // are alive (any frame counts for its keepalive), so its calls
            // are not failed while our handlers are all busy.
            // (Only when the hold is full: a peer that does not read its
            // replies would not read these either.)
            if self.held.is_full() && now - clock.paused_ping_at >= config.keepalive_interval / 2 {
                clock.paused_ping_at = now;
                let _ = self.outbox.send(FrameBuf::new(Kind::Ping, 0, 0));
            }
        }
        let busy = !self.calls.is_empty() || !self.held.is_empty();
        if busy {
            clock.active_at = now;
        } else if self.drain.is_none() && now - clock.active_at >= config.idle_timeout {
            let message = format!("the connection was idle for {:?}", config.idle_timeout);
            self.begin_drain(GoAwayReason::Idle, &message);
        }
        match clock.ping_sent {
            Some(sent) if now - sent >= config.keepalive_timeout => {
                return Some(End::KeepaliveDead);
            }
            None if busy && now - clock.heard_at >= config.keepalive_interval => {
                clock.ping_sent = Some(now);
                let _ = self.outbox.send(FrameBuf::new(Kind::Ping, 0, 0));
            }
            _ => {}
        }
        None
    }
}
