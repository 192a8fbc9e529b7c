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

/// A call the server refused before any handler ran, with `status`:
/// counted as a call that ended so (no duration: it never started).
/// `method` is `"Service.method"`, or `None` for an id the server does not
/// serve (counted under `service="unknown"`, `method="unknown"`).
#[inline]
pub(crate) fn refused(method: Option<&'static str>, status: &'static str) {
    #[cfg(feature = "metrics")]
    {
        let (service, name) = method.map_or(("unknown", "unknown"), super::call::split);
        let labels = [("service", service), ("method", name), ("status", status)];
        metrics::counter!("rpc_server_calls_total", &labels).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (method, status);
}

/// An open connection, counted while this lives.
#[derive(Debug)]
pub(crate) struct Connection {
    #[cfg(feature = "metrics")]
    side: Side,
}

impl Connection {
    pub(crate) fn open(side: Side) -> Connection {
        #[cfg(feature = "metrics")]
        {
            match side {
                Side::Client => metrics::gauge!("rpc_client_connections").increment(1),
                Side::Server => metrics::gauge!("rpc_server_connections").increment(1),
            }
            Connection { side }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = side;
            Connection {}
        }
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

/// `link` with the bytes read and written through it counted (feature
/// `metrics`; without it, `link` as it is).
pub(crate) fn count_bytes(link: crate::transport::Link, side: Side) -> crate::transport::Link {
    #[cfg(feature = "metrics")]
    {
        use crate::transport::Link;
        let (received, sent) = match side {
            Side::Client => (
                metrics::counter!("rpc_client_bytes_received_total"),
                metrics::counter!("rpc_client_bytes_sent_total"),
            ),
            Side::Server => (
                metrics::counter!("rpc_server_bytes_received_total"),
                metrics::counter!("rpc_server_bytes_sent_total"),
            ),
        };
        let Link { read, write, peer } = link;
        let read = Box::new(counted::Counted {
            io: read,
            bytes: received,
        });
        let write = Box::new(counted::Counted {
            io: write,
            bytes: sent,
        });
        Link::from_halves(read, write, peer)
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = side;
        link
    }
}

#[cfg(feature = "metrics")]
mod counted {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    /// An I/O half whose every byte through it adds to `bytes`.
    pub(super) struct Counted<T> {
        pub(super) io: T,
        pub(super) bytes: metrics::Counter,
    }

    impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
            self.bytes.increment((buf.filled().len() - before) as u64);
            Poll::Ready(Ok(()))
        }
    }

    impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
            self.bytes.increment(n as u64);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
            self.bytes.increment(n as u64);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.io.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }
}

/// The items of streams of one method that one side sends or takes in,
/// counted as they go (a long-lived stream shows on a dashboard before it
/// ends, and one cut short still counts what it moved).
#[derive(Debug)]
pub(crate) struct Items {
    #[cfg(feature = "metrics")]
    counter: metrics::Counter,
}

impl Items {
    /// Items of `method`'s stream that `side` sends (`sent`) or takes in.
    pub(crate) fn new(side: Side, method: &'static str, sent: bool) -> Items {
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
            let counter = if sent {
                metrics::counter!("rpc_stream_items_sent_total", &labels)
            } else {
                metrics::counter!("rpc_stream_items_received_total", &labels)
            };
            Items { counter }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (side, method, sent);
            Items {}
        }
    }

    /// One more item.
    #[inline]
    pub(crate) fn one(&self) {
        #[cfg(feature = "metrics")]
        self.counter.increment(1);
    }
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

/// One balanced channel's share of the `rpc_client_endpoints` gauge: what
/// it added for each state, so that channels add up and a dropped one
/// takes its share back.
#[cfg(feature = "metrics")]
#[derive(Debug, Default)]
pub(crate) struct EndpointStates {
    counts: [u32; 4],
}

#[cfg(feature = "metrics")]
impl EndpointStates {
    const NAMES: [&'static str; 4] = ["ejected", "not_serving", "connected", "disconnected"];

    /// The channel now has `counts` servers in each state of [`Self::NAMES`].
    pub(crate) fn set(&mut self, counts: [u32; 4]) {
        for ((name, old), new) in Self::NAMES.iter().zip(&mut self.counts).zip(counts) {
            if *old != new {
                let gauge = metrics::gauge!("rpc_client_endpoints", "state" => *name);
                gauge.increment(f64::from(new) - f64::from(*old));
                *old = new;
            }
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for EndpointStates {
    fn drop(&mut self) {
        self.set([0; 4]);
    }
}
