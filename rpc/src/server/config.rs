//! The settings of a server and of each of its connections, as the
//! builder collected them.

use std::time::Duration;

/// Server settings; every default is from the design's limits table.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_frame: usize,
    pub(crate) frame_memory_budget: usize,
    pub(crate) max_handlers_per_connection: usize,
    pub(crate) max_connections: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) frame_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) max_budget: Duration,
    pub(crate) grace: Duration,
    pub(crate) shutdown_delay: Duration,
    pub(crate) abuse_limit: u32,
    pub(crate) abuse_window: Duration,
    pub(crate) write_batching: bool,
    pub(crate) stream_window: usize,
    pub(crate) max_streams_per_connection: usize,
    pub(crate) max_metadata: usize,
    pub(crate) interceptors: crate::intercept::Chain,
    pub(crate) compression: crate::Compression,
    pub(crate) compression_threshold: usize,
    /// The algorithms advertised and accepted (Hello feature bits); `None`:
    /// every one built in.
    pub(crate) accept_compression: Option<u32>,
    /// The payload formats clients may choose (default: every one built).
    pub(crate) accept_formats: crate::codec::Formats,
    /// Serve the introspection service (see [`crate::introspect`]).
    pub(crate) introspection: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame: 16 << 20,
            frame_memory_budget: 256 << 20,
            max_handlers_per_connection: 256,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_budget: Duration::from_secs(600),
            grace: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            abuse_limit: 1_000,
            abuse_window: Duration::from_secs(10),
            write_batching: true,
            stream_window: crate::stream::DEFAULT_WINDOW,
            max_streams_per_connection: crate::stream::DEFAULT_MAX_STREAMS,
            max_metadata: crate::metadata::DEFAULT_MAX_METADATA,
            interceptors: crate::intercept::Chain::default(),
            compression: crate::Compression::None,
            compression_threshold: crate::compression::DEFAULT_THRESHOLD,
            accept_compression: None,
            accept_formats: crate::codec::Formats::BUILT,
            introspection: true,
        }
    }
}

impl Config {
    /// The Hello feature bits of the algorithms this server accepts.
    pub(crate) fn accepted_compression(&self) -> u32 {
        let built = crate::compression::built_features();
        self.accept_compression.map_or(built, |bits| bits & built)
    }
}
