//! A Response payload, read: the method's value, or the library's own
//! failure that its status byte names.

use std::time::Duration;

use bytes::Buf;

use crate::Error;
use crate::error::SERVER_ENCODE_SIDE;
use crate::protocol::{Payload, SERVER_COULD_NOT_ENCODE, Status};

/// Whether a Response is a refusal by a server shutting down: the call did
/// not run there.
#[inline]
pub(super) fn is_shutting_down(payload: &Payload) -> bool {
    payload.first() == Some(&(Status::ShuttingDown as u8))
}

/// Turns a Response payload into the method's return value or a typed error.
pub(super) fn decode_response<R>(
    method: &'static str,
    budget: Duration,
    payload: Payload,
    decode: fn(&[u8]) -> Result<R, String>,
) -> Result<R, Error> {
    // A reply this client cannot read is a Decode error of the response, not
    // a Protocol one: the connection stays up, and the call reached the
    // server (a newer server may send a status this client does not know).
    let unreadable = |message: String| Error::Decode {
        method,
        side: "response",
        message,
    };
    let Some((&status, body)) = payload.split_first() else {
        return Err(unreadable("the response is empty".into()));
    };
    let message = || String::from_utf8_lossy(body).into_owned();
    match Status::from_u8(status) {
        Some(Status::Ok) => decode(body).map_err(unreadable),
        Some(Status::UnknownMethod) => Err(Error::UnknownMethod { method }),
        Some(Status::Decode) => {
            let message = message();
            // The handler ran, but its value did not serialize (see
            // `server::Call::reply`): not the request's fault.
            Err(match message.strip_prefix(SERVER_COULD_NOT_ENCODE) {
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
            })
        }
        Some(Status::Panicked) => Err(Error::Panicked {
            method,
            message: message(),
        }),
        Some(Status::DeadlineExceeded) => Err(Error::DeadlineExceeded { method, budget }),
        Some(Status::Overloaded) => Err(Error::Overloaded {
            method,
            reason: message(),
        }),
        Some(Status::ShuttingDown) => Err(Error::ShuttingDown { method }),
        Some(Status::FrameTooLarge) if body.len() == 16 => {
            let mut b = body;
            Err(Error::FrameTooLarge {
                method,
                what: "response",
                size: b.get_u64() as usize,
                limit: b.get_u64() as usize,
            })
        }
        Some(Status::FrameTooLarge) => Err(unreadable(format!(
            "malformed FrameTooLarge reply ({} bytes, expected 16)",
            body.len()
        ))),
        None => Err(unreadable(format!(
            "unknown response status {status} (the server may run a newer version of this library)"
        ))),
    }
}
