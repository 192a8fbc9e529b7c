//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): the application installs whichever recorder (exporter) it
//! wants; without one, every record is a no-op. Without the feature, each
//! function here is empty and no clock is read.
//!
//! The names, their labels, and what they count are listed in the crate's
//! `observe` module docs; the functions here are the only places that
//! spell them.

/// Which side of a call a record is about; each has its own metric names
/// (a process may be both client and server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

#[cfg(feature = "metrics")]
use std::time::Instant;

/// A call's measurements: the clock at its start.
#[derive(Debug)]
pub(crate) struct Call {
    #[cfg(feature = "metrics")]
    started: Instant,
}

impl Call {
    /// A call of `method` starts: it counts in flight until `finish`.
    #[inline]
    pub(crate) fn start(side: Side, method: &'static str) -> Call {
        #[cfg(feature = "metrics")]
        {
            let (service, name) = super::call::split(method);
            let labels = [("service", service), ("method", name)];
            match side {
                Side::Client => metrics::gauge!("rpc_client_calls_in_flight", &labels).increment(1),
                Side::Server => metrics::gauge!("rpc_server_calls_in_flight", &labels).increment(1),
            }
            Call {
                started: Instant::now(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (side, method);
            Call {}
        }
    }

    /// The call ended with `status` (`"Ok"`, a status, an error kind, or
    /// `"Cancelled"`): one count and one duration sample, and it no longer
    /// counts in flight.
    #[inline]
    pub(crate) fn finish(&self, side: Side, method: &'static str, status: &'static str) {
        #[cfg(feature = "metrics")]
        {
            let seconds = self.started.elapsed().as_secs_f64();
            let (service, name) = super::call::split(method);
            let call = [("service", service), ("method", name)];
            let outcome = [("service", service), ("method", name), ("status", status)];
            match side {
                Side::Client => {
                    metrics::gauge!("rpc_client_calls_in_flight", &call).decrement(1);
                    metrics::counter!("rpc_client_calls_total", &outcome).increment(1);
                    metrics::histogram!("rpc_client_call_duration_seconds", &outcome)
                        .record(seconds);
                }
                Side::Server => {
                    metrics::gauge!("rpc_server_calls_in_flight", &call).decrement(1);
                    metrics::counter!("rpc_server_calls_total", &outcome).increment(1);
                    metrics::histogram!("rpc_server_call_duration_seconds", &outcome)
                        .record(seconds);
                }
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (self, side, method, status);
    }
}

/// An open connection, counted while this lives.
#[derive(Debug)]
pub(crate) struct Connection {
    side: Side,
}

impl Connection {
    pub(crate) fn open(side: Side) -> Connection {
        #[cfg(feature = "metrics")]
        match side {
            Side::Client => metrics::gauge!("rpc_client_connections").increment(1),
            Side::Server => metrics::gauge!("rpc_server_connections").increment(1),
        }
        Connection { side }
    }

    /// `n` bytes read from the peer.
    #[inline]
    pub(crate) fn received(&self, n: usize) {
        #[cfg(feature = "metrics")]
        match self.side {
            Side::Client => {
                metrics::counter!("rpc_client_bytes_received_total").increment(n as u64)
            }
            Side::Server => {
                metrics::counter!("rpc_server_bytes_received_total").increment(n as u64)
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    /// `n` bytes written to the peer.
    #[inline]
    pub(crate) fn sent(&self, n: usize) {
        #[cfg(feature = "metrics")]
        match self.side {
            Side::Client => metrics::counter!("rpc_client_bytes_sent_total").increment(n as u64),
            Side::Server => metrics::counter!("rpc_server_bytes_sent_total").increment(n as u64),
        }
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        match self.side {
            Side::Client => metrics::gauge!("rpc_client_connections").decrement(1),
            Side::Server => metrics::gauge!("rpc_server_connections").decrement(1),
        }
    }
}

/// Items of one stream of `method` that `side` sent (`sent`) or took in.
#[inline]
pub(crate) fn stream_items(side: Side, method: &'static str, sent: bool, n: usize) {
    #[cfg(feature = "metrics")]
    {
        let (service, name) = super::call::split(method);
        let labels = [
            (
                "side",
                if side == Side::Client {
                    "client"
                } else {
                    "server"
                },
            ),
            ("service", service),
            ("method", name),
        ];
        if sent {
            metrics::counter!("rpc_stream_items_sent_total", &labels).increment(n as u64);
        } else {
            metrics::counter!("rpc_stream_items_received_total", &labels).increment(n as u64);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (side, method, sent, n);
}

/// A balanced channel sent `method` again: `"retry"` after a failure, or
/// `"hedge"` while an earlier attempt was still out.
#[inline]
pub(crate) fn attempt_again(method: &'static str, why: Again) {
    #[cfg(feature = "metrics")]
    {
        let (service, name) = super::call::split(method);
        let labels = [("service", service), ("method", name)];
        match why {
            Again::Retry => metrics::counter!("rpc_client_retries_total", &labels).increment(1),
            Again::Hedge => metrics::counter!("rpc_client_hedges_total", &labels).increment(1),
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (method, why);
}

/// Why a call was sent again.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Again {
    Retry,
    Hedge,
}

/// A balanced channel's endpoint moved from one state to another (each
/// named as `EndpointSnapshot`'s state prints); `None` for a server that
/// joins or leaves the set.
pub(crate) fn endpoint_moved(from: Option<&'static str>, to: Option<&'static str>) {
    #[cfg(feature = "metrics")]
    {
        if let Some(from) = from {
            metrics::gauge!("rpc_client_endpoints", "state" => from).decrement(1);
        }
        if let Some(to) = to {
            metrics::gauge!("rpc_client_endpoints", "state" => to).increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (from, to);
}
