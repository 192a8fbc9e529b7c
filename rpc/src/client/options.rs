//! Per-call options: what a handle says about the calls made through it.
//! The timeout, metadata and compression; what else a call may say joins them here, so
//! that each travels in this one value and no function grows a parameter.

use std::sync::Arc;
use std::time::Duration;

use crate::Metadata;

/// The options a [`Channel`](super::Channel) handle gives the calls made
/// through it. Handles are cheap: make one per set of options with
/// [`Channel::with_options`](super::Channel::with_options) or
/// [`with_timeout`](super::Channel::with_timeout).
///
/// ```
/// use std::time::Duration;
/// let quick = rpc::client::CallOptions::default().with_timeout(Duration::from_millis(50));
/// assert_eq!(quick.timeout(), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOptions {
    timeout: Duration,
    /// The timeout was set for these calls, not inherited from the
    /// channel's default: it applies to `#[rpc(no_deadline)]` methods too.
    timeout_set: bool,
    /// Sent with every call (shared: handles are cloned per call site).
    metadata: Option<Arc<Metadata>>,
    /// The algorithm these calls' requests are compressed with; `None`:
    /// the channel's.
    compression: Option<crate::Compression>,
}

/// The deadline of a call that sets none.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for CallOptions {
    /// A 30 s timeout, the channel builder's default.
    fn default() -> Self {
        CallOptions {
            timeout: DEFAULT_TIMEOUT,
            timeout_set: false,
            metadata: None,
            compression: None,
        }
    }
}

impl CallOptions {
    /// These options with calls' deadline `timeout` after they start (a
    /// call made inside a handler keeps the handler's deadline if that is
    /// earlier).
    ///
    /// Set this way, the timeout applies to methods marked
    /// `#[rpc(no_deadline)]` too, which otherwise have no deadline.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.timeout_set = true;
        self
    }

    /// These options with calls' requests (and the streams they send)
    /// compressed with `compression` rather than the channel's choice
    /// (see [`Builder::compression`](crate::client::Builder::compression)).
    /// A server that did not advertise the algorithm gets them
    /// uncompressed; one this build lacks fails the call with
    /// [`Error::Config`](crate::Error::Config).
    ///
    /// ```
    /// let raw = rpc::client::CallOptions::default().with_compression(rpc::Compression::None);
    /// assert_eq!(raw.compression(), Some(rpc::Compression::None));
    /// ```
    #[must_use]
    pub fn with_compression(mut self, compression: crate::Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// The compression these options choose, if they choose one (else the
    /// channel's applies).
    pub fn compression(&self) -> Option<crate::Compression> {
        self.compression
    }

    /// These options with the channel's default timeout, which methods
    /// marked `#[rpc(no_deadline)]` do not take.
    pub(super) fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.timeout_set = false;
        self
    }

    /// The timeout of a call of a method that may have no deadline.
    pub(super) fn timeout_for(&self, no_deadline: bool) -> Duration {
        if no_deadline && !self.timeout_set {
            Duration::MAX
        } else {
            self.timeout
        }
    }

    /// How long after it starts a call's deadline is.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// These options with one more metadata pair sent with every call (see
    /// [`crate::metadata`]): an auth token, say. A key that is not
    /// lowercase ASCII fails the calls with
    /// [`Error::InvalidMetadata`](crate::Error::InvalidMetadata).
    ///
    /// ```
    /// let opts = rpc::client::CallOptions::default().with_metadata("x-request-id", "42");
    /// assert_eq!(opts.metadata().get_str("x-request-id"), Some("42"));
    /// ```
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Arc::make_mut(self.metadata.get_or_insert_default()).insert(key, value);
        self
    }

    /// The metadata sent with every call.
    pub fn metadata(&self) -> &Metadata {
        static NONE: Metadata = Metadata::new();
        self.metadata.as_deref().unwrap_or(&NONE)
    }
}
