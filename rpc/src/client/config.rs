//! The settings of a channel and of each of its connections, as the
//! builder collected them.

use std::time::Duration;

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
    pub(crate) stream_window: usize,
    pub(crate) max_metadata: usize,
    pub(crate) interceptors: crate::intercept::Chain,
    /// What requests (and the streams they send) are compressed with,
    /// unless a call's options say otherwise.
    pub(crate) compression: crate::Compression,
    pub(crate) compression_threshold: usize,
    /// The format of every value the channel's connections carry.
    pub(crate) format: crate::Format,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: super::options::DEFAULT_TIMEOUT,
            max_frame: 16 << 20,
            max_in_flight: 10_000,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            write_batching: true,
            stream_window: crate::stream::DEFAULT_CLIENT_WINDOW,
            max_metadata: crate::metadata::DEFAULT_MAX_METADATA,
            interceptors: crate::intercept::Chain::default(),
            compression: crate::Compression::None,
            compression_threshold: crate::compression::DEFAULT_THRESHOLD,
            format: crate::Format::Bincode,
        }
    }
}
