//! Settings of a channel, and the ways to connect one: TCP, TLS over TCP
//! (feature `tls`), a Unix domain socket, an in-memory server, or any
//! [`Connector`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Channel;
use super::config::Config;
use super::endpoint::Endpoint;
use crate::Error;
use crate::transport::Connector;
use crate::transport::memory::MemoryConnector;
use crate::transport::tcp::TcpConnector;
use crate::transport::unix::UnixConnector;

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
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

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

    /// Bytes of a server's stream this client holds unconsumed, per stream
    /// (default 2 MiB, [`DEFAULT_CLIENT_WINDOW`](crate::stream::DEFAULT_CLIENT_WINDOW);
    /// at least 4 KiB): the server sends no more until the
    /// application takes some (see [`crate::stream`]).
    pub fn stream_window(mut self, bytes: usize) -> Self {
        self.config.stream_window = bytes.clamp(crate::protocol::MIN_MAX_FRAME, u32::MAX as usize);
        self
    }

    /// Bytes of metadata a call may send (default 8 KiB, see
    /// [`crate::metadata`]): a call with more fails with
    /// [`Error::InvalidMetadata`](crate::Error::InvalidMetadata) before it
    /// is sent. The server has its own limit.
    pub fn max_metadata(mut self, bytes: usize) -> Self {
        self.config.max_metadata = bytes;
        self
    }

    /// Adds an interceptor (see [`crate::intercept`]): it runs around every
    /// call made through the channel, after those added before it. (A
    /// balanced channel takes it through its `settings`.)
    pub fn interceptor(mut self, interceptor: impl crate::intercept::Interceptor) -> Self {
        self.config.interceptors = self.config.interceptors.with(interceptor);
        self
    }

    /// What requests are compressed with when the server accepts it
    /// (default [`Compression::None`](crate::Compression)); a call may
    /// choose otherwise ([`CallOptions::with_compression`](crate::client::CallOptions::with_compression)).
    /// Requests to a server that did not advertise the algorithm go
    /// uncompressed. Replies come in any algorithm this build has.
    ///
    /// Connecting fails with [`Error::Config`] if the algorithm's cargo
    /// feature is off.
    pub fn compression(mut self, compression: crate::Compression) -> Self {
        self.config.compression = compression;
        self
    }

    /// Values (a request's arguments, a stream item) shorter than this many
    /// bytes are never compressed (default 1 KiB).
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.config.compression_threshold = bytes.max(1);
        self
    }

    /// The format of the values the channel's calls send and receive:
    /// arguments, return values and stream items (default
    /// [`Format::Bincode`](crate::Format)). [`Format::Json`](crate::Format)
    /// needs the feature `json` on both sides; a server that does not accept
    /// the format refuses the handshake, and connecting fails with an
    /// [`Error::Protocol`] that says which format it accepts.
    ///
    /// ```no_run
    /// # #[cfg(feature = "json")]
    /// # async fn run() -> Result<(), rpc::Error> {
    /// let channel = rpc::Channel::builder()
    ///     .format(rpc::Format::Json)
    ///     .connect("127.0.0.1:7878")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn format(mut self, format: crate::Format) -> Self {
        self.config.format = format;
        self
    }

    /// Calls in flight on the connection at once; callers beyond it wait
    /// (default 10,000).
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = calls.max(1);
        self
    }

    /// How long to wait for the transport to open a connection (default 5 s).
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

    /// Resolves `addr` and connects over TCP. A reconnect tries the
    /// addresses resolved now, in order.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the address does not resolve, refuses the connection,
    /// or does not complete the handshake in time; [`Error::Protocol`] if the
    /// peer does not speak this protocol (or this version of it);
    /// [`Error::Config`] if the [`compression`](Self::compression) chosen is
    /// not built in.
    pub async fn connect(self, addr: impl tokio::net::ToSocketAddrs) -> Result<Channel, Error> {
        self.config.compression.check()?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| Error::io("resolving the server address", e))?
            .collect();
        self.connect_with(TcpConnector { addrs }).await
    }

    /// Resolves `addr` and connects over TLS on TCP (feature `tls`),
    /// checking the server's certificate against `config`'s roots and
    /// `server_name` (the DNS name or IP address the certificate is for).
    /// Every reconnect runs a new TLS handshake. See [`crate::tls`].
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect); a failed TLS handshake is an
    /// [`Error::Io`] whose message gives the reason (an untrusted or
    /// expired certificate, a name mismatch, a server that does not serve
    /// TLS). [`Error::Config`] if `server_name` is not a DNS name or IP
    /// address.
    #[cfg(feature = "tls")]
    pub async fn connect_tls(
        self,
        addr: impl tokio::net::ToSocketAddrs,
        config: impl Into<std::sync::Arc<rustls::ClientConfig>>,
        server_name: &str,
    ) -> Result<Channel, Error> {
        let server_name = crate::transport::tls::server_name(server_name)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| Error::io("resolving the server address", e))?
            .collect();
        let connector = crate::transport::tls::TlsConnector::new(addrs, config.into(), server_name);
        self.connect_with(connector).await
    }

    /// Connects to the Unix domain socket at `path`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_unix(self, path: impl Into<PathBuf>) -> Result<Channel, Error> {
        self.connect_with(UnixConnector { path: path.into() }).await
    }

    /// Connects to the in-memory server serving `name` in this process (see
    /// [`serve_memory`](crate::server::Builder::serve_memory)): no sockets,
    /// for tests.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (connection refused) if no server serves `name`.
    pub async fn connect_memory(self, name: impl Into<String>) -> Result<Channel, Error> {
        self.connect_with(MemoryConnector { name: name.into() })
            .await
    }

    /// Connects through `connector`, a transport of your own (TLS, say): it
    /// is called for the first connection and for every reconnect.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with(self, connector: impl Connector) -> Result<Channel, Error> {
        self.config.compression.check()?;
        let endpoint = Endpoint::connect(Box::new(connector), self.config).await?;
        Ok(Channel::over(endpoint))
    }
}
