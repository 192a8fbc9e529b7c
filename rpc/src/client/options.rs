//! Per-call options: what a handle says about the calls made through it.
//! The timeout and compression; metadata and the like join them here, so
//! that each travels in this one value and no function grows a parameter.

use std::time::Duration;

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
}
