//! A Response payload, read: the method's value, or the library's own
//! failure that its status byte names.

use std::time::Duration;

use crate::Error;
use crate::protocol::{Payload, Status};

/// Whether a Response is a refusal by a server shutting down: the call did
/// not run there.
#[inline]
pub(super) fn is_shutting_down(payload: &Payload) -> bool {
    payload.first() == Some(&(Status::ShuttingDown as u8))
}

/// Turns a Response payload into the method's return value or a typed
/// error (a `SchemaMismatch` naming `shape`, the client's).
pub(super) fn decode_response<R>(
    method: &'static str,
    shape: &'static str,
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
    // For a `metadata::capture` around the call: this reply's metadata,
    // none included.
    let payload = match payload {
        Payload::WithMetadata(tagged) => {
            let (payload, metadata) = *tagged;
            crate::metadata::deliver(metadata);
            Payload::Shared(payload)
        }
        payload => {
            crate::metadata::deliver(crate::Metadata::new());
            payload
        }
    };
    let Some((&status, body)) = payload.split_first() else {
        return Err(unreadable("the response is empty".into()));
    };
    match Status::from_u8(status) {
        Some(Status::Ok) => decode(body).map_err(unreadable),
        _ => Err(
            crate::error::from_status(method, budget, "response", status, body, false)
                .with_client_shape(shape),
        ),
    }
}
