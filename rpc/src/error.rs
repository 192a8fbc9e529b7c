//! [`Error`]: everything a call or a server can fail with.

use std::time::Duration;

/// The error a call (or [`Server::bind`](crate::Server)) fails with.
///
/// An application's own error travels inside the `Ok` value (a method that
/// returns `Result<T, MyError>` is called as `Result<Result<T, MyError>, rpc::Error>`),
/// so every variant here is a failure of the RPC machinery, not of the handler's logic.
/// Each variant names the method (`"Service.method"`) where one was involved, and says
/// whether retrying can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call's deadline passed before a response arrived. The server drops the
    /// handler when the budget runs out, but the call may or may not have taken effect.
    /// Retry only if the method is idempotent, with a fresh deadline.
    #[error("{method}: deadline exceeded after {budget:?}")]
    DeadlineExceeded {
        /// The method called.
        method: &'static str,
        /// The time budget the call had when it was sent.
        budget: Duration,
    },
    /// The connection was lost (or could not be made) while the call was pending.
    /// The call may or may not have run on the server. The next call reconnects.
    #[error("{method}: disconnected: {reason}")]
    Disconnected {
        /// The method called.
        method: &'static str,
        /// What happened to the connection.
        reason: String,
    },
    /// The server does not know this method: it runs an older version of the
    /// service, or does not serve this service at all. The connection stays up;
    /// retrying the same server will not help.
    #[error(
        "{method}: the server does not know this method (it may run an older version of the service)"
    )]
    UnknownMethod {
        /// The method called.
        method: &'static str,
    },
    /// The server refused the call because it is at a limit. The call did not run;
    /// retrying later, or on another server, can help.
    #[error("{method}: the server is overloaded: {reason}")]
    Overloaded {
        /// The method called.
        method: &'static str,
        /// Which limit was reached.
        reason: String,
    },
    /// The server is shutting down and refused the call, which did not run. Retrying
    /// on a new connection (to a new server) is safe.
    #[error("{method}: the server is shutting down; the call was not run")]
    ShuttingDown {
        /// The method called.
        method: &'static str,
    },
    /// The handler panicked. The server and the connection are fine; the panic
    /// message is carried over.
    #[error("{method}: the handler panicked: {message}")]
    Panicked {
        /// The method called.
        method: &'static str,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// A request or response was larger than the frame limit. Only this call fails;
    /// the connection stays up. Raise the limit on both sides or send less.
    #[error("{method}: {what} of {size} bytes exceeds the frame limit of {limit} bytes")]
    FrameTooLarge {
        /// The method called.
        method: &'static str,
        /// `"request"` or `"response"`.
        what: &'static str,
        /// The size of the frame that was refused (at least this many bytes).
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A payload could not be decoded: the peers disagree on a type (different
    /// versions of the service trait), or the bytes are corrupt or hostile.
    /// Retrying will not help until both sides agree on the types.
    #[error("{method}: could not decode the {side}: {message}")]
    Decode {
        /// The method called.
        method: &'static str,
        /// Which side failed: `"request on the server"` or `"response"`.
        side: &'static str,
        /// What the decoder said.
        message: String,
    },
    /// The arguments could not be serialized (serde refused them, for example a
    /// map whose `Serialize` does not report its length). Nothing was sent.
    #[error("{method}: could not encode the request: {message}")]
    Encode {
        /// The method called.
        method: &'static str,
        /// What the serializer said.
        message: String,
    },
    /// The peer broke the protocol (bad handshake, wrong version, malformed frame).
    /// The connection is closed; retrying against the same peer will not help.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An I/O error, such as a refused connection or an address already in use.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The builder was given settings that cannot work together (for example,
    /// two services that define the same method id).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn disconnected(method: &'static str, reason: impl std::fmt::Display) -> Self {
        Error::Disconnected {
            method,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static_and_names_the_method() {
        fn assert_bounds<E: std::error::Error + Send + Sync + 'static>() {}
        assert_bounds::<Error>();
        let e = Error::UnknownMethod {
            method: "Calculator.mul",
        };
        assert!(e.to_string().starts_with("Calculator.mul: "), "{e}");
        let e = Error::FrameTooLarge {
            method: "Store.put",
            what: "request",
            size: 300,
            limit: 200,
        };
        assert_eq!(
            e.to_string(),
            "Store.put: request of 300 bytes exceeds the frame limit of 200 bytes"
        );
    }
}
