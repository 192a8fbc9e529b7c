//! A Response payload, read: the method's value, or the library's own
//! failure that its status byte names.

use std::time::Duration;

use bytes::Buf;

use crate::Error;
use crate::protocol::{Payload, Status};

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
    let Some((&status, body)) = payload.split_first() else {
        return Err(Error::Protocol(format!("{method}: empty response")));
    };
    let message = || String::from_utf8_lossy(body).into_owned();
    match Status::from_u8(status) {
        Some(Status::Ok) => decode(body).map_err(|message| Error::Decode {
            method,
            side: "response",
            message,
        }),
        Some(Status::UnknownMethod) => Err(Error::UnknownMethod { method }),
        Some(Status::Decode) => Err(Error::Decode {
            method,
            side: "request on the server",
            message: message(),
        }),
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
        Some(Status::FrameTooLarge) => Err(Error::Protocol(format!(
            "{method}: malformed FrameTooLarge reply ({} bytes, expected 16)",
            body.len()
        ))),
        None => Err(Error::Protocol(format!(
            "{method}: unknown response status {status}"
        ))),
    }
}
