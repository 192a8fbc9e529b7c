//! Why a connection ended, and what the peer is told about it.

use std::time::Duration;

use crate::protocol::GoAwayReason;

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum End {
    /// A drain (shutdown, idleness, or the peer's GoAway) finished.
    Drained,
    /// The server is stopping now.
    Killed,
    /// The peer closed the connection (or it failed).
    PeerClosed,
    Protocol(String),
    Abuse(String),
    FrameTimeout(Duration),
    /// A frame waited this long for room in the server's frame budget.
    BudgetTimeout(Duration),
    /// Keepalive found the peer unresponsive.
    KeepaliveDead,
}

impl End {
    /// The GoAway to send the peer, if it deserves one.
    pub(super) fn goaway(&self) -> Option<(GoAwayReason, String)> {
        match self {
            End::Protocol(m) => Some((GoAwayReason::Protocol, m.clone())),
            End::Abuse(m) => Some((GoAwayReason::Abuse, m.clone())),
            End::FrameTimeout(d) => Some((
                GoAwayReason::Protocol,
                format!("a frame took longer than {d:?} to arrive"),
            )),
            End::BudgetTimeout(d) => Some((
                GoAwayReason::Protocol,
                format!(
                    "a frame waited {d:?} for room in the server's memory budget for \
                     arriving frames (other connections hold it); send smaller frames \
                     or raise the server's frame_memory_budget"
                ),
            )),
            _ => None,
        }
    }
}
