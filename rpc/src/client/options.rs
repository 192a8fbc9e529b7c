//! Per-call options: what a handle says about the calls made through it.
//! Today the timeout; metadata, compression and the like join it here, so
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
}

/// The deadline of a call that sets none.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for CallOptions {
    /// A 30 s timeout, the channel builder's default.
    fn default() -> Self {
        CallOptions {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl CallOptions {
    /// These options with calls' deadline `timeout` after they start (a
    /// call made inside a handler keeps the handler's deadline if that is
    /// earlier).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long after it starts a call's deadline is.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
