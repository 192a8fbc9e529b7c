//! The library's failures as they travel: a status byte and what it carries
//! (a UTF-8 message, or a FrameTooLarge's sizes), read back into an
//! [`Error`]. A Response carries them, and so does a StreamEnd.

use std::time::Duration;

use bytes::Buf;

use super::{Error, SERVER_ENCODE_SIDE};
use crate::protocol::{SERVER_COULD_NOT_ENCODE, Status};

/// The error a non-Ok `status` and its `body` stand for, in a call of
/// `method` that had `budget`. `what` names the payload for errors about
/// it (`"response"`, `"stream item"`); `mid_stream` says the status ended
/// an open stream rather than answering the call.
pub(crate) fn from_status(
    method: &'static str,
    budget: Duration,
    what: &'static str,
    status: u8,
    body: &[u8],
    mid_stream: bool,
) -> Error {
    let message = || String::from_utf8_lossy(body).into_owned();
    let unreadable = |message: String| Error::Decode {
        method,
        side: what,
        message,
    };
    match Status::from_u8(status) {
        Some(Status::Ok) => unreadable("an Ok status where a failure was expected".into()),
        Some(Status::UnknownMethod) => Error::UnknownMethod { method },
        Some(Status::Decode) => {
            let message = message();
            // The handler ran, but its value did not serialize (see
            // `server::Call::reply`): not the request's fault.
            match message.strip_prefix(SERVER_COULD_NOT_ENCODE) {
                Some(rest) => Error::Decode {
                    method,
                    side: SERVER_ENCODE_SIDE,
                    message: rest.to_owned(),
                },
                None => Error::Decode {
                    method,
                    side: "request on the server",
                    message,
                },
            }
        }
        Some(Status::Panicked) => Error::Panicked {
            method,
            message: message(),
        },
        Some(Status::DeadlineExceeded) => Error::DeadlineExceeded { method, budget },
        Some(Status::Overloaded) => Error::Overloaded {
            method,
            reason: message(),
        },
        Some(Status::ShuttingDown) => Error::ShuttingDown { method, mid_stream },
        Some(Status::FrameTooLarge) if body.len() == 16 => {
            let mut b = body;
            Error::FrameTooLarge {
                method,
                what,
                size: b.get_u64() as usize,
                limit: b.get_u64() as usize,
            }
        }
        Some(Status::FrameTooLarge) => unreadable(format!(
            "malformed FrameTooLarge status ({} bytes, expected 16)",
            body.len()
        )),
        Some(Status::Aborted) => Error::Aborted {
            method,
            message: message(),
        },
        Some(Status::InvalidMetadata) => Error::InvalidMetadata {
            method,
            message: message(),
        },
        Some(Status::Unauthenticated) => Error::Unauthenticated {
            method,
            message: message(),
        },
        Some(Status::PermissionDenied) => Error::PermissionDenied {
            method,
            message: message(),
        },
        // The client's shape is the caller's to add (`with_client_shape`).
        Some(Status::SchemaMismatch) => Error::SchemaMismatch {
            method,
            client: String::new(),
            server: message(),
        },
        None => unreadable(format!(
            "unknown status {status} (the peer may run a newer version of this library)"
        )),
    }
}

/// The error a reply (its status byte, then its body) stands for, if it is
/// a failure: what the caller of `method` gets for it.
pub(crate) fn of_reply(method: &'static str, budget: Duration, reply: &[u8]) -> Option<Error> {
    let (&status, body) = reply.split_first()?;
    (status != Status::Ok as u8)
        .then(|| from_status(method, budget, "response", status, body, false))
}
