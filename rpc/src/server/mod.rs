//! The server side: [`Server::builder`] collects services and limits, and
//! [`Builder::bind`] starts serving and returns a [`ServerHandle`].
//!
//! Roles: the listener accepts connections (`listener.rs`); one driver per
//! connection reads frames, routes each request and enforces the limits
//! (`connection.rs`), starts each handler (`connection/handler.rs`), and
//! checks its timers and drains (`connection/timers.rs`); the handlers
//! running on a connection are kept by call id (`calls.rs`); the router
//! finds a method's service (`dispatch.rs`); a `#[rpc(blocking)]` handler
//! runs on tokio's blocking pool (`blocking.rs`).

mod blocking;
mod calls;
mod config;
mod connection;
pub(crate) mod dispatch;
mod handle;
mod id_map;
mod intercepted;
mod listener;
mod streams;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::health::{self, Reporter};
use crate::transport::Listener;
use crate::transport::budget::FrameBudget;
use crate::transport::memory::MemoryListener;
use crate::transport::unix::UnixListener;
pub(crate) use config::Config;
use dispatch::{Router, Service};
pub use handle::ServerHandle;

/// The entry point: `rpc::Server::builder()`.
#[derive(Debug)]
pub struct Server(());

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> Builder {
        Builder {
            services: Vec::new(),
            config: Config::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Collects services and limits; [`bind`](Builder::bind) starts serving.
///
/// ```no_run
/// # async fn run() -> Result<(), rpc::Error> {
/// # #[rpc::service] trait Echo { async fn echo(&self, s: String) -> String; }
/// # struct E; impl Echo for E { async fn echo(&self, s: String) -> String { s } }
/// let server = rpc::Server::builder()
///     .add_service(EchoServer::new(E))
///     .bind("127.0.0.1:0")
///     .await?;
/// println!("serving on {}", server.local_addr());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Builder {
    services: Vec<Arc<dyn Service>>,
    config: Config,
    /// Set by [`tls`](Self::tls): [`bind`](Self::bind) serves TLS.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.services.iter().map(|s| s.name()).collect();
        f.debug_struct("Builder")
            .field("services", &names)
            .field("config", &self.config)
            .finish()
    }
}

impl Builder {
    /// Adds a service (a generated `{Trait}Server`). Repeatable: many services
    /// share one port.
    pub fn add_service<S: Service>(mut self, service: S) -> Self {
        self.services.push(Arc::new(service));
        self
    }

    /// Adds an interceptor (see [`crate::intercept`]): it runs around every
    /// call, after those added before it.
    pub fn interceptor(mut self, interceptor: impl crate::intercept::Interceptor) -> Self {
        self.config.interceptors = self.config.interceptors.with(interceptor);
        self
    }

    /// The largest frame accepted or sent, in bytes (default 16 MiB, at least
    /// 4 KiB). Each side sends the other nothing over the other's limit.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes.clamp(crate::protocol::MIN_MAX_FRAME, u32::MAX as usize);
        self
    }

    /// Bytes the server holds for frames still arriving and for requests
    /// waiting for a handler slot, all connections together (default 256
    /// MiB; raised to fit one frame of [`max_frame`](Self::max_frame)).
    ///
    /// A connection buffers up to 64 KiB of frames on its own; a longer
    /// frame is read only once this budget has room for all of it, and
    /// meanwhile nothing more is read from that peer. So what frames cost
    /// the server is at most this budget plus 64 KiB per connection, however
    /// many peers send large frames and stall. A frame that waits longer
    /// than the [`frame_timeout`](Self::frame_timeout) closes its connection
    /// with a message saying so.
    pub fn frame_memory_budget(mut self, bytes: usize) -> Self {
        self.config.frame_memory_budget = bytes;
        self
    }

    /// Handlers running at once per connection (default 256). At the cap the
    /// server holds up to 1,024 further requests back for a slot (within
    /// the [`frame_memory_budget`](Self::frame_memory_budget)) while it keeps
    /// reading Cancels (a cancelled request never starts), Pings and
    /// GoAways; past that it stops reading the connection until a handler
    /// finishes.
    pub fn max_handlers_per_connection(mut self, n: usize) -> Self {
        self.config.max_handlers_per_connection = n.max(1);
        self
    }

    /// Bytes of a client's stream this server holds unconsumed, per stream
    /// (default 256 KiB, at least 4 KiB): a client sends no more until the
    /// handler takes some (see [`crate::stream`]).
    pub fn stream_window(mut self, bytes: usize) -> Self {
        self.config.stream_window = bytes.clamp(crate::protocol::MIN_MAX_FRAME, u32::MAX as usize);
        self
    }

    /// Streaming calls open at once per connection (default 100); one more
    /// is refused with `Overloaded`. While its handler runs, a streaming
    /// call also takes one of the
    /// [`max_handlers_per_connection`](Self::max_handlers_per_connection)
    /// slots; the stream it returns, once the handler has returned, holds
    /// none.
    pub fn max_streams_per_connection(mut self, n: usize) -> Self {
        self.config.max_streams_per_connection = n.max(1);
        self
    }

    /// What replies and returned streams are compressed with when the
    /// client accepts it (default [`Compression::None`](crate::Compression)):
    /// a reply to a compressed request uses the request's algorithm
    /// instead. The server accepts every algorithm it was built with,
    /// whatever this says.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), rpc::Error> {
    /// // With `rpc = { features = ["zstd"] }` in Cargo.toml.
    /// let server = rpc::Server::builder()
    ///     .compression(rpc::Compression::Zstd)
    ///     .bind("127.0.0.1:0")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Binding fails with [`Error::Config`] if the algorithm's cargo
    /// feature is off.
    pub fn compression(mut self, compression: crate::Compression) -> Self {
        self.config.compression = compression;
        self
    }

    /// Values (a reply's, a stream item's) shorter than this many bytes
    /// are never compressed (default 1 KiB).
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.config.compression_threshold = bytes.max(1);
        self
    }

    /// The algorithms the server advertises and accepts from clients
    /// (default: every one it was built with). A client then compresses
    /// only with these; a frame compressed otherwise closes its
    /// connection. Binding fails with [`Error::Config`] if one is not
    /// built in.
    pub fn accept_compression(
        mut self,
        algorithms: impl IntoIterator<Item = crate::Compression>,
    ) -> Self {
        let bits = algorithms.into_iter().fold(0, |bits, c| bits | c.feature());
        self.config.accept_compression = Some(bits);
        self
    }

    /// The payload formats clients may choose (default: every one this
    /// build has: bincode, and [JSON](crate::Format) with the feature
    /// `json`). Each connection is answered in its client's format; a
    /// client asking for another is refused at the handshake, and both
    /// sides get an [`Error::Protocol`] saying which format was asked for
    /// and which is accepted. Binding fails with [`Error::Config`] if the
    /// set is empty.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), rpc::Error> {
    /// // Bincode clients only, even in a build with `json`.
    /// let server = rpc::Server::builder()
    ///     .accept_formats([rpc::Format::Bincode])
    ///     .bind("127.0.0.1:0")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn accept_formats(mut self, formats: impl IntoIterator<Item = crate::Format>) -> Self {
        self.config.accept_formats = crate::codec::Formats::of(formats);
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

    /// Connections served at once (default 10,000); more wait in the OS backlog.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n.max(1);
        self
    }

    /// How long a new connection has to complete the handshake (default 10 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.config.handshake_timeout = d;
        self
    }

    /// How long a frame, once started, may take to arrive whole (default 30 s).
    pub fn frame_timeout(mut self, d: Duration) -> Self {
        self.config.frame_timeout = d;
        self
    }

    /// A connection with no call running or arriving for this long (Pings do
    /// not count) is sent GoAway and closed once drained (default 5 min).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }

    /// Ping a client after `interval` of silence while its calls run, and drop it
    /// if nothing arrives within `timeout` more (defaults 30 s and 20 s). A
    /// client that takes none of the replies waiting for it for
    /// `interval + timeout` is dropped too.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.keepalive_interval = interval;
        self.config.keepalive_timeout = timeout;
        self
    }

    /// Bytes of metadata a request may carry (default 8 KiB, see
    /// [`crate::metadata`]): a request with more is refused with
    /// [`Error::InvalidMetadata`] before its
    /// handler runs, and the connection stays up. Also the most the
    /// server sends back with a reply.
    pub fn max_metadata(mut self, bytes: usize) -> Self {
        self.config.max_metadata = bytes;
        self
    }

    /// The longest budget a request may claim; longer ones are clamped
    /// (default 10 min).
    pub fn max_budget(mut self, d: Duration) -> Self {
        self.config.max_budget = d;
        self
    }

    /// How long [`ServerHandle::shutdown`] lets in-flight calls finish (default 30 s).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.config.grace = d;
        self
    }

    /// How long a graceful [`shutdown`](ServerHandle::shutdown) keeps
    /// serving after its health service starts answering `NotServing`,
    /// before it drains (default none). Set it to about a prober's interval
    /// so balancers stop sending calls here before connections are drained;
    /// without it, probers only see checks fail once draining starts.
    pub fn shutdown_delay(mut self, d: Duration) -> Self {
        self.config.shutdown_delay = d;
        self
    }

    /// Cancels of unknown calls and protocol errors tolerated per `window` on
    /// one connection before it is sent GoAway and closed (default 1,000 per 10 s).
    pub fn abuse_limit(mut self, events: u32, window: Duration) -> Self {
        self.config.abuse_limit = events;
        self.config.abuse_window = window;
        self
    }

    /// Whether the server answers the introspection service, which lists
    /// its services and their methods (default true; see
    /// [`crate::introspect`] for why). Off, calls of it fail with
    /// [`Error::UnknownMethod`].
    pub fn introspection(mut self, on: bool) -> Self {
        self.config.introspection = on;
        self
    }

    /// Serves TLS (feature `tls`): [`bind`](Self::bind) then runs `config`'s
    /// TLS handshake on every connection, in the connection's own task
    /// within the [`handshake_timeout`](Self::handshake_timeout), before the
    /// protocol's own. A config that verifies client certificates makes it
    /// mutual TLS, and handlers see each client's chain in
    /// [`Peer::Tls`](crate::transport::Peer::Tls). See [`crate::tls`].
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: impl Into<Arc<rustls::ServerConfig>>) -> Self {
        self.tls = Some(config.into());
        self
    }

    /// Binds `addr` over TCP (TLS on it, if `.tls(..)` was called: feature `tls`)
    /// and starts serving in the background.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if two services define the same method id, or the
    /// [`compression`](Self::compression) chosen is not built in;
    /// [`Error::Io`] if the address cannot be bound.
    pub async fn bind(
        #[allow(unused_mut)] mut self,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> Result<ServerHandle, Error> {
        #[cfg(feature = "tls")]
        let tls = self.tls.take();
        let serving = self.finish()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io("binding the server address", e))?;
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            let listener = crate::transport::tls::TlsListener::new(listener, tls);
            return Ok(serving.start(listener));
        }
        Ok(serving.start(listener))
    }

    /// Binds a Unix domain socket at `path` and starts serving. Handlers
    /// see each caller's credentials
    /// ([`Context::peer_credentials`](crate::context::Context::peer_credentials)).
    /// The socket file is removed when the server stops; binding fails if a
    /// file is at `path` already.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub async fn bind_unix(self, path: impl Into<PathBuf>) -> Result<ServerHandle, Error> {
        let serving = self.finish()?;
        let path = path.into();
        let listener = UnixListener::bind(path.clone())
            .map_err(|e| Error::io(format!("binding {}", path.display()), e))?;
        Ok(serving.start(listener))
    }

    /// Serves in memory under `name`, in this process, with no socket:
    /// channels connect with
    /// [`Channel::connect_memory(name)`](crate::Channel::connect_memory).
    /// Reconnecting, shutdown and every limit behave as over TCP; once the
    /// server has shut down, the name is free again. For tests.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] as for [`bind`](Self::bind); [`Error::Io`] if
    /// another server of this process serves `name`.
    pub fn serve_memory(self, name: impl Into<String>) -> Result<ServerHandle, Error> {
        let serving = self.finish()?;
        let name = name.into();
        let listener = MemoryListener::bind(name.clone())
            .map_err(|e| Error::io(format!("serving {name:?} in memory"), e))?;
        Ok(serving.start(listener))
    }

    /// Serves the links `listener` accepts: a transport of your own (TLS,
    /// say), with every limit and the shutdown as over TCP.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub fn serve<L: Listener>(self, listener: L) -> Result<ServerHandle, Error> {
        Ok(self.finish()?.start(listener))
    }

    /// The services with the built-in health and introspection services
    /// added (unless one of that name was added already), routed.
    fn finish(mut self) -> Result<Serving, Error> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return Err(Error::Config(
                "TLS is served over TCP only: call `bind` (not `bind_unix`, `serve_memory` or \
                 `serve`) on a builder given `.tls(..)`"
                    .into(),
            ));
        }
        self.config.compression.check()?;
        self.config.accept_formats.check()?;
        if let Some(bits) = self.config.accept_compression {
            crate::compression::check_features(bits)?;
        }
        let names: Vec<_> = self.services.iter().map(|s| s.name()).collect();
        let health = Reporter::new(names.iter().copied().chain([health::SERVICE_NAME]));
        if !names.contains(&health::SERVICE_NAME) {
            let checker = health::Checker {
                reporter: health.clone(),
            };
            self.services
                .push(Arc::new(health::HealthServer::new(checker)));
        }
        if self.config.introspection {
            crate::introspect::add_to(&mut self.services);
        }
        Ok(Serving {
            router: Router::new(self.services)?,
            health,
            config: self.config,
        })
    }
}

/// A server ready to start: what [`Builder`] made of its settings.
struct Serving {
    router: Router,
    health: Reporter,
    config: Config,
}

impl Serving {
    /// Starts the accept loop over `listener`.
    fn start<L: Listener>(self, listener: L) -> ServerHandle {
        let Serving {
            router,
            health,
            config,
        } = self;
        let address = listener.address();
        let shared = Arc::new(Shared {
            router,
            frame_budget: FrameBudget::new(config.frame_memory_budget, config.max_frame),
            config,
            drain: CancellationToken::new(),
            kill: CancellationToken::new(),
            connections: TaskTracker::new(),
        });
        let accept = tokio::spawn(listener::run(listener, shared.clone()));
        ServerHandle {
            address,
            shared,
            health,
            accept,
        }
    }
}

/// What every connection of one server shares.
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) config: Config,
    /// Bytes of frames arriving or waiting for a handler, all connections.
    pub(crate) frame_budget: FrameBudget,
    /// Cancelled by a graceful shutdown: stop accepting, GoAway, drain.
    pub(crate) drain: CancellationToken,
    /// Cancelled when the grace period ends (or on abort): drop everything.
    pub(crate) kill: CancellationToken,
    pub(crate) connections: TaskTracker,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("services", &self.router.service_names())
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}
