//! [`Error`]: everything a call or a server can fail with.

use std::time::Duration;

/// The error a call (or [`Server::bind`](crate::Server)) fails with.
///
/// An application's own error travels inside the `Ok` value (a method that
/// returns `Result<T, MyError>` is called as `Result<Result<T, MyError>, rpc::Error>`),
/// so every variant here is a failure of the RPC machinery, not of the handler's logic.
/// Each variant names the method (`"Service.method"`) where one was involved.
///
/// # Retrying
///
/// Two questions decide whether to make a failed call again, and each has a
/// method: [`may_have_run`](Self::may_have_run) (could the handler have run,
/// so that a retry runs it twice?) and [`is_retryable`](Self::is_retryable)
/// (can making the call again, on this server later or on another, succeed
/// without anything being changed first?). A call that did not run may be
/// retried whatever the method does; one that may have run only if running
/// it twice is harmless (the method is idempotent).
///
/// | variant | `may_have_run` | `is_retryable` |
/// |---|---|---|
/// | [`DeadlineExceeded`](Self::DeadlineExceeded) | yes | no: not within the same deadline (a new call with a new deadline may succeed) |
/// | [`Disconnected`](Self::Disconnected) | if its request was `sent` | yes |
/// | [`UnknownMethod`](Self::UnknownMethod) | no | no |
/// | [`Overloaded`](Self::Overloaded) | no | yes |
/// | [`ShuttingDown`](Self::ShuttingDown) | only `mid_stream` | yes |
/// | [`Aborted`](Self::Aborted) | yes | no |
/// | [`Panicked`](Self::Panicked) | yes | no |
/// | [`FrameTooLarge`](Self::FrameTooLarge) | for a response, yes; for a request, no | no |
/// | [`Decode`](Self::Decode) | for a response, yes; for a request the server could not decode, no | no |
/// | [`Encode`](Self::Encode) | no | no |
/// | [`Protocol`](Self::Protocol) | no | no |
/// | [`Io`](Self::Io) | no | yes, unless the error's kind says the setting is wrong rather than the moment (see [`is_retryable`](Self::is_retryable)) |
/// | [`InvalidMetadata`](Self::InvalidMetadata) | no | no |
/// | [`Unauthenticated`](Self::Unauthenticated) | no | no |
/// | [`PermissionDenied`](Self::PermissionDenied) | no | no |
/// | [`SchemaMismatch`](Self::SchemaMismatch) | no | no (a balanced channel tries another server within the call) |
/// | [`Config`](Self::Config) | no | no |
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
    /// The connection was lost while the call was pending, or the call found
    /// no connection to go out on. If its request was `sent`, the call may or
    /// may not have run on the server; if not, it did not. The next call
    /// reconnects; retrying can help.
    #[error("{method}: disconnected{}: {reason}", unsent(*.sent))]
    Disconnected {
        /// The method called.
        method: &'static str,
        /// What happened to the connection.
        reason: String,
        /// Whether the request had been handed to a connection (queued to be
        /// written) when that connection was lost: then the server may have
        /// received and run it. False when the call never got that far.
        sent: bool,
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
    /// A server shutting down refused the call, which did not run there, and
    /// the call found no other connection. Retrying on another server, or on
    /// this one once it is back, is safe. (A call that only found its
    /// connection drained, and then could not reconnect, reports why it could
    /// not: an [`Io`](Self::Io) or [`Disconnected`](Self::Disconnected) error.)
    ///
    /// With `mid_stream`, the call did run: a server shutting down ended its
    /// stream at the end of its grace period, after the items before this
    /// error.
    #[error("{method}: {}", if *.mid_stream {
        "the server shut down while the stream was open"
    } else {
        "the server is shutting down; the call was not run"
    })]
    ShuttingDown {
        /// The method called.
        method: &'static str,
        /// The server ended an open stream (the call ran), rather than
        /// refusing the call.
        mid_stream: bool,
    },
    /// The producer of a stream ended it with an error (a handler's stream
    /// of `Result`s yielded an `Err`, say), after the items before it. The
    /// connection is fine.
    #[error("{method}: the stream was aborted: {message}")]
    Aborted {
        /// The method called.
        method: &'static str,
        /// What the producer's error said.
        message: String,
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
    /// the connection stays up. Raise the limit on both sides (each refuses
    /// frames over its own, and tells the other in the handshake), or send less.
    #[error(
        "{method}: {what} of {size} bytes exceeds the frame limit of {limit} bytes; send less, \
         or raise `max_frame` on both sides: `rpc::Channel::builder().max_frame(..)` on the \
         client and `rpc::Server::builder().max_frame(..)` on the server"
    )]
    FrameTooLarge {
        /// The method called.
        method: &'static str,
        /// `"request"` or `"response"`.
        what: &'static str,
        /// The size of the frame that was refused: its length field (header
        /// and payload).
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
        /// Which side failed: `"request on the server"` (the handler did
        /// not run), `"response"`, `"response, which the server could not
        /// encode"` (the handler ran), `"stream item"` (one item of a
        /// stream, or a failure that ended it with an unreadable status),
        /// or `"stream end"` (an end that carried no status at all).
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
    /// The peer broke the protocol while a connection was being set up: it
    /// does not speak this protocol at all (an HTTP server, say), speaks
    /// another version, or failed the handshake. Nothing was sent on that
    /// connection, which is closed; retrying against the same peer will not
    /// help.
    #[error("{}protocol error: {message}", called(*.method))]
    Protocol {
        /// The method whose call needed the connection, if a call did (a
        /// reconnect); `None` for [`Channel::connect`](crate::Channel::connect).
        method: Option<&'static str>,
        /// What was wrong.
        message: String,
    },
    /// An I/O error opening a connection (refused, timed out, nothing at that
    /// address) or binding an address (already in use, say). Once a
    /// connection is up, losing it is [`Disconnected`](Self::Disconnected).
    #[error("{}{context}: {source}", called(*.method))]
    Io {
        /// The method whose call needed the connection, if a call did (a
        /// reconnect); `None` for connecting a channel or binding a server.
        method: Option<&'static str>,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The call's metadata (see [`crate::metadata`]) broke the rules: a key
    /// that is not lowercase ASCII, or more bytes than the sender's or the
    /// server's `max_metadata`. The handler did not run; the connection is
    /// fine.
    #[error("{method}: invalid metadata: {message}")]
    InvalidMetadata {
        /// The method called.
        method: &'static str,
        /// What was wrong.
        message: String,
    },
    /// An interceptor refused the call before its handler ran: the caller
    /// did not say who it is, or not convincingly (a missing or bad token).
    #[error("{method}: unauthenticated: {message}")]
    Unauthenticated {
        /// The method called.
        method: &'static str,
        /// What the interceptor said.
        message: String,
    },
    /// An interceptor refused the call before its handler ran: the caller
    /// is known but may not make this call.
    #[error("{method}: permission denied: {message}")]
    PermissionDenied {
        /// The method called.
        method: &'static str,
        /// What the interceptor said.
        message: String,
    },
    /// The server's version of the method differs from the client's: the
    /// two were built from different versions of the trait (an argument or
    /// the return type changed). The server checked the fingerprint the
    /// request carried before decoding anything: the handler did not run,
    /// and the connection is fine. Not retryable: this server will refuse
    /// the call until one side is rebuilt. (A balanced channel still tries
    /// another server within the call, which did not run: during a rolling
    /// deploy another server may have the client's version.)
    ///
    /// Shapes are normalised (see `#[rpc::service]`'s docs on the schema
    /// check): `add(i64, i64) -> i64`.
    #[error(
        "{method}: the client's shape `{client}` differs from the server's `{server}`; \
         client and server were built from different versions of the trait"
    )]
    SchemaMismatch {
        /// The method called.
        method: &'static str,
        /// The method's shape as this client was built.
        client: String,
        /// The method's shape as the server was built.
        server: String,
    },
    /// The builder was given settings that cannot work together (for example,
    /// two services that define the same method id).
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// `"{method}: "`, or nothing when no call was involved.
fn called(method: Option<&'static str>) -> impl std::fmt::Display {
    struct Called(Option<&'static str>);
    impl std::fmt::Display for Called {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0 {
                Some(method) => write!(f, "{method}: "),
                None => Ok(()),
            }
        }
    }
    Called(method)
}

/// What a [`Error::Disconnected`] adds when its request never went out.
fn unsent(sent: bool) -> &'static str {
    if sent {
        ""
    } else {
        " before the request was sent"
    }
}

/// The [`Error::Decode`] side of a reply the server could not encode.
pub(crate) const SERVER_ENCODE_SIDE: &str = "response, which the server could not encode";

impl Error {
    /// Whether the handler may have run (or be running still): false only
    /// when the library knows the request never reached a handler, so that
    /// making the call again cannot run it twice. True when it cannot know
    /// (the connection was lost after the request went out, the deadline
    /// passed) and when it did run (it panicked, its reply was too large).
    /// Errors that involve no call (binding a server, say) answer false.
    /// The table in [`Error`]'s docs gives the answer for each variant.
    ///
    /// A [`DeadlineExceeded`](Self::DeadlineExceeded) answers true even for
    /// a call whose time ran out before it was sent: the error does not
    /// record how far the call got, and no retry fits in its deadline anyway.
    pub fn may_have_run(&self) -> bool {
        match self {
            Error::DeadlineExceeded { .. } | Error::Panicked { .. } | Error::Aborted { .. } => true,
            Error::ShuttingDown { mid_stream, .. } => *mid_stream,
            Error::Disconnected { sent, .. } => *sent,
            Error::FrameTooLarge { what, .. } => *what != "request",
            Error::Decode { side, .. } => *side != "request on the server",
            Error::UnknownMethod { .. }
            | Error::Overloaded { .. }
            | Error::InvalidMetadata { .. }
            | Error::Unauthenticated { .. }
            | Error::PermissionDenied { .. }
            | Error::SchemaMismatch { .. }
            | Error::Encode { .. }
            | Error::Protocol { .. }
            | Error::Io { .. }
            | Error::Config(_) => false,
        }
    }

    /// Whether making the call again (on this server later, or on another)
    /// can succeed without anything being changed first: the failure was of
    /// the moment (a lost or refused connection, a server at a limit or
    /// shutting down), not of the call, the types, or the settings. It does
    /// not say whether a retry is safe: see [`may_have_run`](Self::may_have_run).
    ///
    /// An [`Io`](Self::Io) error is retryable unless its kind names a cause
    /// that waiting does not remove: `PermissionDenied`, `InvalidInput`,
    /// `InvalidData`, `Unsupported`, `AddrInUse`, `AddrNotAvailable`.
    /// A [`DeadlineExceeded`](Self::DeadlineExceeded) is not: no retry fits
    /// in the deadline that passed (a new call, with a new deadline, may
    /// succeed if the method may run twice).
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            Error::Disconnected { .. } | Error::Overloaded { .. } | Error::ShuttingDown { .. } => {
                true
            }
            Error::Io { source, .. } => !matches!(
                source.kind(),
                K::PermissionDenied
                    | K::InvalidInput
                    | K::InvalidData
                    | K::Unsupported
                    | K::AddrInUse
                    | K::AddrNotAvailable
            ),
            Error::DeadlineExceeded { .. }
            | Error::UnknownMethod { .. }
            | Error::Panicked { .. }
            | Error::Aborted { .. }
            | Error::InvalidMetadata { .. }
            | Error::Unauthenticated { .. }
            | Error::PermissionDenied { .. }
            | Error::SchemaMismatch { .. }
            | Error::FrameTooLarge { .. }
            | Error::Decode { .. }
            | Error::Encode { .. }
            | Error::Protocol { .. }
            | Error::Config(_) => false,
        }
    }

    /// This error, if it is a [`SchemaMismatch`](Self::SchemaMismatch),
    /// with the client's shape filled in: the reply carries only the
    /// server's, and the call, which knows the client's, adds it.
    pub(crate) fn with_client_shape(mut self, shape: &'static str) -> Self {
        if let Error::SchemaMismatch { client, .. } = &mut self
            && client.is_empty()
        {
            shape.clone_into(client);
        }
        self
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            method: None,
            context: context.into(),
            source,
        }
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Error::Protocol {
            method: None,
            message: message.into(),
        }
    }

    /// The connection was lost, or none could be had: `sent` says whether
    /// the request had been queued on a connection by then.
    pub(crate) fn disconnected(
        method: &'static str,
        reason: impl std::fmt::Display,
        sent: bool,
    ) -> Self {
        Error::Disconnected {
            method,
            reason: reason.to_string(),
            sent,
        }
    }

    /// This error, which setting up a connection gave, as the failure of a
    /// call of `method` that waited for that connection (several calls can
    /// wait for one attempt, and each gets its own copy).
    pub(crate) fn for_call(&self, method: &'static str) -> Self {
        match self {
            Error::Io {
                context, source, ..
            } => Error::Io {
                method: Some(method),
                context: context.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Protocol { message, .. } => Error::Protocol {
                method: Some(method),
                message: message.clone(),
            },
            other => Error::disconnected(method, format!("connecting failed: {other}"), false),
        }
    }
}

mod status;

/// The message of a caught panic, if its payload was a string.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests;

pub(crate) use status::{from_status, of_reply};
