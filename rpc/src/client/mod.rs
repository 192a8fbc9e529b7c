//! The client side: a [`Channel`] is what generated `{Trait}Client`s call
//! through. It owns one multiplexed connection at a time, reconnects with
//! backoff when that connection dies, and moves to a new connection when the
//! server sends GoAway.
//!
//! # Cancel safety
//!
//! Dropping a call's future before it completes cancels the call: the request
//! is removed from the connection, a Cancel frame tells the server to drop the
//! handler, and a response that still arrives is discarded. The call may or may
//! not have run on the server by then.

mod backoff;
mod call;
mod connection;
mod reader;
mod reconnect;
mod slots;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Buf;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::Error;
use crate::codec;
use crate::protocol::{FrameBuf, Kind, LEN_PREFIX, Payload, RequestHead, Status};
use backoff::Backoff;
pub use call::Call;
use connection::{CallError, Connection};
use reconnect::Reconnect;

/// Client settings; every default is from the design's limits table.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) timeout: Duration,
    pub(crate) max_frame: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) write_batching: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(30),
            max_frame: 16 << 20,
            max_in_flight: 10_000,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            write_batching: true,
        }
    }
}

/// Configures and connects a [`Channel`].
///
/// ```no_run
/// # async fn run() -> Result<(), rpc::Error> {
/// use std::time::Duration;
/// let channel = rpc::Channel::builder()
///     .timeout(Duration::from_secs(2))
///     .max_frame(64 << 20)
///     .connect("127.0.0.1:7878")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// The deadline of a call that sets none (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The largest frame sent or accepted, in bytes (default 16 MiB, at least
    /// 4 KiB). Each side sends the other nothing over the other's limit.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes.clamp(crate::protocol::MIN_MAX_FRAME, u32::MAX as usize);
        self
    }

    /// Calls in flight on the connection at once; callers beyond it wait
    /// (default 10,000).
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = calls.max(1);
        self
    }

    /// How long to wait for a TCP connection to be made (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long the server has to answer the handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Ping after `interval` of silence while calls are in flight, and treat the
    /// connection as dead if nothing arrives within `timeout` more (defaults
    /// 30 s and 20 s).
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.keepalive_interval = interval.max(Duration::from_millis(1));
        self.config.keepalive_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The first and the largest delay between reconnect attempts (defaults
    /// 100 ms and 10 s; each failure multiplies the delay by 1.6, +-20% jitter).
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max.max(initial);
        self
    }

    /// Whether frames queued together go out in one write (default true).
    /// Off, every frame gets a write syscall of its own. A lone frame is
    /// written at once either way (the writer never waits for company), so
    /// this exists only to measure what batching buys under concurrency, as
    /// the comparison bench does; hidden for that reason.
    #[cfg(feature = "hooks")]
    #[doc(hidden)]
    pub fn write_batching(mut self, on: bool) -> Self {
        self.config.write_batching = on;
        self
    }

    /// Resolves `addr` and connects.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the address does not resolve or refuses the connection,
    /// [`Error::Protocol`] if the peer fails the handshake.
    pub async fn connect(self, addr: impl tokio::net::ToSocketAddrs) -> Result<Channel, Error> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| Error::io("resolving the server address", e))?
            .collect();
        let conn = Connection::connect(&addrs, &self.config).await?;
        let known = Known {
            conn: Arc::downgrade(&conn),
            generation: 0,
        };
        let timeout = self.config.timeout;
        let inner = Arc::new(Inner {
            addrs,
            current: Mutex::new(Some(conn.clone())),
            generation: AtomicU64::new(0),
            reconnect: Mutex::new(Reconnect {
                backoff: Backoff::new(self.config.backoff_initial, self.config.backoff_max),
                attempt: None,
            }),
            config: self.config,
        });
        conn.serve(&inner);
        Ok(Channel {
            timeout,
            known,
            inner,
        })
    }
}

/// A handle to a server that generated clients call through. Cheap to clone:
/// clones share one multiplexed connection.
pub struct Channel {
    inner: Arc<Inner>,
    timeout: Duration,
    known: Known,
}

/// The connection a handle last saw as current: calls take it without
/// locking `Inner::current` (a lock and an unlock per call, measured as a
/// few percent of the client's time) for as long as it is still current.
#[derive(Clone)]
struct Known {
    /// Weak: once replaced, it must close when its last calls end.
    conn: Weak<Connection>,
    /// `Inner::generation` when it was current.
    generation: u64,
}

impl Clone for Channel {
    /// A clone made after a reconnect knows the new connection (clients are
    /// usually cloned per task or request, so the fast path comes back).
    fn clone(&self) -> Self {
        Channel {
            inner: self.inner.clone(),
            timeout: self.timeout,
            known: self.inner.known(&self.known),
        }
    }
}

struct Inner {
    addrs: Vec<SocketAddr>,
    /// How many times `current` was replaced: a handle whose `Known` is of
    /// another generation looks the connection up under the lock.
    generation: AtomicU64,
    config: Config,
    current: Mutex<Option<Arc<Connection>>>,
    /// Reconnecting: one attempt at a time, spaced by the backoff.
    reconnect: Mutex<Reconnect>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("addrs", &self.inner.addrs)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// A builder for a channel with non-default settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Connects with default settings.
    ///
    /// # Errors
    ///
    /// As [`Builder::connect`].
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> Result<Channel, Error> {
        Builder::default().connect(addr).await
    }

    /// A handle on the same connection whose calls have deadline `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Channel {
        Channel {
            inner: self.inner.clone(),
            timeout,
            known: self.inner.known(&self.known),
        }
    }

    /// The deadline given to calls made through this handle.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The address of the server currently connected, if any.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner
            .current
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.peer())
    }

    /// A call of `method` with `args`, its reply decoded as an `R` and
    /// turned into a `T` (generated clients decode through a newtype of the
    /// method's return type). Generated clients call this. The arguments are
    /// encoded here, when the method is called, so the call's future borrows
    /// nothing; the call starts (its deadline counts, the request goes out)
    /// when it is first polled (its deadline counts from the first poll of
    /// the first call in its batch: see `connection::State::stamps`). A call
    /// made inside a handler inherits its
    /// deadline if that is earlier: budgets propagate through call chains.
    #[doc(hidden)]
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned, T>(
        &self,
        method: &'static str,
        method_id: u64,
        args: &A,
        map: fn(R) -> T,
    ) -> Call<R, T> {
        self.start_call(method, method_id, args, codec::decode::<R>, map)
    }

    /// As [`call`](Self::call), for a reply of primitive scalars (a `()` or
    /// a 1-tuple of one, say): decoded without the guard against deep or
    /// huge input, which such a value cannot be.
    #[doc(hidden)]
    pub fn call_flat<A: Serialize + ?Sized, R: codec::FlatArgs, T>(
        &self,
        method: &'static str,
        method_id: u64,
        args: &A,
        map: fn(R) -> T,
    ) -> Call<R, T> {
        self.start_call(method, method_id, args, codec::decode_flat::<R>, map)
    }

    fn start_call<A: Serialize + ?Sized, R, T>(
        &self,
        method: &'static str,
        method_id: u64,
        args: &A,
        decode: fn(&[u8]) -> Result<R, String>,
        map: fn(R) -> T,
    ) -> Call<R, T> {
        // A stale read (replaced just now) only sends the call to the old
        // connection, which no longer takes calls; it then goes the general
        // way, through `current`.
        let first = if self.inner.generation.load(Ordering::Relaxed) == self.known.generation {
            self.known.conn.upgrade()
        } else {
            None
        };
        // A call that knows its connection holds only that (the channel is
        // found through it if the call must go elsewhere).
        let channel = if first.is_none() {
            Some(self.inner.clone())
        } else {
            None
        };
        Call::new(
            channel,
            first,
            method,
            crate::context::current_deadline(),
            self.timeout,
            self.encode_request(method, method_id, args),
            decode,
            map,
        )
    }

    fn encode_request<A: Serialize + ?Sized>(
        &self,
        method: &'static str,
        method_id: u64,
        args: &A,
    ) -> Result<FrameBuf, Error> {
        // Room for small arguments in place (see `FrameBuf`).
        let mut frame = FrameBuf::new(Kind::Request, 0, RequestHead::LEN + 16);
        RequestHead {
            method_id,
            budget: Duration::ZERO,
        }
        .write(&mut frame);
        let limit = self.inner.config.max_frame + LEN_PREFIX;
        codec::encode_into(args, &mut frame, limit).map_err(|e| match e {
            codec::EncodeError::TooLarge { limit } => Error::FrameTooLarge {
                method,
                what: "request",
                size: limit - LEN_PREFIX + 1,
                limit: limit - LEN_PREFIX,
            },
            codec::EncodeError::Serde(message) => Error::Encode { method, message },
        })?;
        Ok(frame)
    }
}

impl Inner {
    /// Sends on the current connection, moving to a new one if the request
    /// provably did not run (the connection was draining, or the server
    /// refused it with ShuttingDown after its GoAway crossed our request).
    /// The general path of a [`Call`], from attempt `first`: 0 tries the
    /// current connection as it is; `refused` says a server refused the
    /// call already. `made_at`: when the call started, if its budget may
    /// count from then (it has not waited since).
    async fn send(
        self: Arc<Self>,
        method: &'static str,
        frame: FrameBuf,
        deadline: Instant,
        made_at: Option<Instant>,
        refused: bool,
        first: usize,
    ) -> Result<Payload, Error> {
        let mut frame = frame;
        // Set once a draining server refused the call: it did not run, so if
        // no other connection can be had, the caller hears ShuttingDown
        // (retry-safe), not Disconnected (which may have run).
        let mut refused = refused;
        // Attempt 0 is the current connection as it is; up to three more go
        // through `connection()`, which checks usability and reconnects.
        for attempt in first..4 {
            // First try: the current connection as it is (`call` checks under
            // its own lock whether it still takes calls). Otherwise the
            // reconnect path, boxed: inline, its state would make every
            // call's future several times larger.
            let current = if attempt == 0 { self.current() } else { None };
            let conn = match current {
                Some(conn) => Ok(conn),
                None => {
                    refused |= self.draining_for_shutdown();
                    Box::pin(self.connection(method, deadline)).await
                }
            };
            let conn = match conn {
                Ok(conn) => conn,
                Err(Error::Disconnected { .. }) if refused => {
                    return Err(Error::ShuttingDown { method });
                }
                Err(e) => return Err(e),
            };
            // Only the first attempt may count its budget from when the call
            // was made; a later one has waited (for a connection) since.
            let made_at = if attempt == first { made_at } else { None };
            match conn.call(method, frame, deadline, made_at).await {
                Ok((payload, _)) if !is_shutting_down(&payload) || conn.is_usable() => {
                    return Ok(payload);
                }
                // The connection is draining or closed, so the next
                // `connection()` moves on; it stays current meanwhile, to
                // remember that the server is shutting down.
                Ok((_, sent)) => {
                    refused = true;
                    frame = sent;
                }
                Err(CallError::NotSent(unsent)) => {
                    refused |= conn.is_draining_for_shutdown();
                    frame = unsent;
                }
                Err(CallError::Failed(e)) => return Err(e),
            }
        }
        Err(Error::ShuttingDown { method })
    }

    /// True while the current connection is drained by a server shutdown.
    fn draining_for_shutdown(&self) -> bool {
        let current = self.current.lock().unwrap();
        current
            .as_ref()
            .is_some_and(|c| c.is_draining_for_shutdown())
    }

    #[inline]
    fn current(&self) -> Option<Arc<Connection>> {
        self.current.lock().unwrap().clone()
    }

    /// `known` if it is still current, else the current connection now.
    fn known(&self, known: &Known) -> Known {
        if self.generation.load(Ordering::Relaxed) == known.generation {
            return known.clone();
        }
        let current = self.current.lock().unwrap();
        Known {
            conn: current.as_ref().map(Arc::downgrade).unwrap_or_default(),
            // Read under the lock the replacement takes to bump it.
            generation: self.generation.load(Ordering::Relaxed),
        }
    }

    fn usable(&self) -> Option<Arc<Connection>> {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .filter(|c| c.is_usable())
            .cloned()
    }
}

#[inline]
fn is_shutting_down(payload: &Payload) -> bool {
    payload.first() == Some(&(Status::ShuttingDown as u8))
}

/// Turns a Response payload into the method's return value or a typed error.
fn decode_response<R>(
    method: &'static str,
    budget: Duration,
    payload: Payload,
    decode: fn(&[u8]) -> Result<R, String>,
) -> Result<R, Error> {
    let Some((&status, body)) = payload.split_first() else {
        return Err(Error::Protocol(format!("{method}: empty response")));
    };
    let message = || String::from_utf8_lossy(body).into_owned();
    match Status::from_u8(status) {
        Some(Status::Ok) => decode(body).map_err(|message| Error::Decode {
            method,
            side: "response",
            message,
        }),
        Some(Status::UnknownMethod) => Err(Error::UnknownMethod { method }),
        Some(Status::Decode) => Err(Error::Decode {
            method,
            side: "request on the server",
            message: message(),
        }),
        Some(Status::Panicked) => Err(Error::Panicked {
            method,
            message: message(),
        }),
        Some(Status::DeadlineExceeded) => Err(Error::DeadlineExceeded { method, budget }),
        Some(Status::Overloaded) => Err(Error::Overloaded {
            method,
            reason: message(),
        }),
        Some(Status::ShuttingDown) => Err(Error::ShuttingDown { method }),
        Some(Status::FrameTooLarge) if body.len() == 16 => {
            let mut b = body;
            Err(Error::FrameTooLarge {
                method,
                what: "response",
                size: b.get_u64() as usize,
                limit: b.get_u64() as usize,
            })
        }
        Some(Status::FrameTooLarge) => Err(Error::Protocol(format!(
            "{method}: malformed FrameTooLarge reply ({} bytes, expected 16)",
            body.len()
        ))),
        None => Err(Error::Protocol(format!(
            "{method}: unknown response status {status}"
        ))),
    }
}
