//! The seam between generated `{Trait}Server`s and the runtime: the
//! [`Service`] trait they implement, the [`Call`] they decode from and reply
//! through, and the [`Router`] that finds a service by method id.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::id_map::IdMap;
use super::streams::Registration;
use crate::codec;
use crate::observe::metrics::Side;
use crate::protocol::{
    Compressor, FLAG_METADATA, FrameBuf, Kind, LEN_PREFIX, Payload, SERVER_COULD_NOT_ENCODE, Status,
};
use crate::stream::{Encoder, Inbound, Stream};
use crate::transport::Outgoing;
use crate::{Error, Format};

/// A running handler: resolves to the encoded Response frame.
pub type Handler = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// An encoded Response frame, as a handler returns it, and for a method
/// that returns a stream, the stream that follows it.
#[derive(Debug)]
pub struct Reply {
    frame: Outgoing,
    stream: Option<Box<Following>>,
}

/// A stream to send after a Response.
#[derive(Debug)]
pub(crate) struct Following {
    pub(crate) items: Encoder,
    pub(crate) call: Arc<Registration>,
    /// How its items are compressed: as the Response was.
    pub(crate) compress: Compressor,
}

impl Reply {
    fn unary(frame: Outgoing) -> Self {
        Reply {
            frame,
            stream: None,
        }
    }

    /// The Response frame, and the stream to send after it, if any.
    pub(crate) fn into_parts(self) -> (Outgoing, Option<Box<Following>>) {
        (self.frame, self.stream)
    }

    /// Its status (the Response's first byte).
    pub(crate) fn status(&self) -> Status {
        let frame: &[u8] = match &self.frame {
            Outgoing::Bytes(b) => b,
            Outgoing::Buf(f) => f.as_slice(),
        };
        frame
            .get(LEN_PREFIX + crate::protocol::HEADER_LEN)
            .and_then(|&b| Status::from_u8(b))
            .unwrap_or(Status::Ok)
    }

    /// A stream follows it.
    pub(crate) fn streams(&self) -> bool {
        self.stream.is_some()
    }

    /// The error a caller gets from this reply, if it is a failure.
    pub(crate) fn error(&self, method: &'static str, budget: std::time::Duration) -> Option<Error> {
        let frame: &[u8] = match &self.frame {
            Outgoing::Bytes(b) => b,
            Outgoing::Buf(f) => f.as_slice(),
        };
        let reply = frame.get(LEN_PREFIX + crate::protocol::HEADER_LEN..)?;
        crate::error::of_reply(method, budget, reply)
    }

    /// The frame's bytes (for the bench hooks).
    #[cfg(feature = "hooks")]
    pub(crate) fn into_bytes(self) -> Bytes {
        match self.frame {
            Outgoing::Bytes(b) => b,
            Outgoing::Buf(f) => f.finish(),
        }
    }
}

impl From<Bytes> for Reply {
    fn from(frame: Bytes) -> Self {
        Reply::unary(Outgoing::Bytes(frame))
    }
}

/// A method as it is named on the wire, and its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodDesc {
    /// `"Service.method"`.
    pub name: &'static str,
    /// The FNV-1a hash of `name` (see the protocol docs).
    pub id: u64,
    /// It takes a stream from the client.
    pub request_stream: bool,
    /// It returns a stream.
    pub response_stream: bool,
    /// `#[rpc(no_deadline)]`: a call may ask for no deadline (else the
    /// server caps every budget at its `max_budget`).
    pub no_deadline: bool,
    /// The FNV-1a hash of `shape`: a request that carries another is
    /// refused with `SchemaMismatch` before anything of it is decoded.
    pub fingerprint: u64,
    /// `method(T1, T2) -> R`, normalised as `#[rpc::service]` documents
    /// (paths cut to their last segment, borrows as their owned form).
    pub shape: &'static str,
    /// Each argument's name and type, as written in the trait.
    pub args: &'static [(&'static str, &'static str)],
    /// The return type as written, `()` when there is none.
    pub returns: &'static str,
    /// `#[rpc(idempotent)]`: safe to run twice.
    pub idempotent: bool,
}

impl MethodDesc {
    /// Whether a call of it opens a stream either way.
    pub(crate) fn streams(&self) -> bool {
        self.request_stream || self.response_stream
    }
}

/// What `#[rpc::service]` implements for `{Trait}Server`. Not meant to be
/// implemented by hand: its shape may change between minor versions.
pub trait Service: Send + Sync + 'static {
    /// The service's wire name.
    fn name(&self) -> &'static str;
    /// Every method the service serves.
    fn methods(&self) -> &'static [MethodDesc];
    /// Starts the handler for `method_id`, or `None` if this service lacks it.
    fn call(&self, method_id: u64, call: Call) -> Option<Handler>;
}

/// One request, as handed to a generated handler.
#[derive(Debug)]
pub struct Call {
    pub(crate) id: u64,
    pub(crate) args: Payload,
    /// The largest reply frame the client accepts (a `u32`, as its Hello
    /// gives it, which keeps a Call at 88 bytes with the format in it).
    pub(crate) max_frame: u32,
    /// The most metadata the reply may carry (the server's
    /// `max_metadata`), if the client accepts any.
    pub(crate) reply_metadata_limit: Option<u32>,
    /// A streaming call's place among the connection's open streams.
    pub(crate) stream: Option<Arc<Registration>>,
    /// How the reply (and a stream after it) is compressed: with the
    /// request's algorithm if it came compressed, else the server's choice
    /// if the client accepts it.
    pub(crate) compress: Compressor,
    /// The format of the args, the reply and the streams (the client's).
    pub(crate) format: Format,
}

impl Call {
    /// Decodes the arguments, or gives the Decode error reply to send instead.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, Reply> {
        codec::decode_as(self.format, &self.args)
            .map_err(|message| Status::Decode.reply(self.id, &message).into())
    }

    /// As [`args`](Self::args), for arguments that are all primitive
    /// scalars: decoded without the guard against deep or huge input, which
    /// such a tuple cannot be.
    pub fn flat_args<T: codec::FlatArgs>(&self) -> Result<T, Reply> {
        codec::decode_flat_as(self.format, &self.args)
            .map_err(|message| Status::Decode.reply(self.id, &message).into())
    }

    /// Encodes the handler's return value as the reply frame. A value larger
    /// than the frame limit becomes a FrameTooLarge reply: only this call fails.
    pub fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Reply {
        // Room for a small value in place: a larger one moves the frame to
        // the heap as it grows.
        let mut frame = FrameBuf::new(Kind::Response, self.id, 16);
        frame.extend_from_slice(&[Status::Ok as u8]);
        self.put_reply_metadata(&mut frame);
        // The value follows the status byte and the metadata, if any.
        let value_at = frame.len();
        let limit = self.max_frame as usize + LEN_PREFIX;
        let frame = match codec::encode_as(self.format, value, &mut frame, limit) {
            Ok(()) => {
                frame.compress_value(value_at, self.compress);
                frame
            }
            Err(codec::EncodeError::TooLarge { size, .. }) => {
                let mut f = FrameBuf::new(Kind::Response, self.id, 17);
                f.payload_mut().put_u8(Status::FrameTooLarge as u8);
                f.payload_mut().put_u64((size - LEN_PREFIX) as u64);
                f.payload_mut().put_u64(u64::from(self.max_frame));
                f
            }
            Err(codec::EncodeError::Serde(message)) => {
                let message = format!("{SERVER_COULD_NOT_ENCODE}{message}");
                return Status::Decode.reply(self.id, &message).into();
            }
        };
        Reply::unary(Outgoing::Buf(frame))
    }

    /// Writes what the handler set with
    /// [`set_reply_metadata`](crate::context::set_reply_metadata) after the
    /// status, if the client accepts metadata. Metadata over the limit is
    /// not sent (and logged): the reply itself still goes.
    fn put_reply_metadata(&self, frame: &mut FrameBuf) {
        let Some(metadata) = crate::context::take_reply_metadata() else {
            return;
        };
        let Some(max) = self.reply_metadata_limit else {
            tracing::debug!(call = self.id, "the client does not accept reply metadata");
            return;
        };
        if let Err(why) = metadata.check(max as usize) {
            tracing::warn!(call = self.id, %why, "reply metadata not sent");
            return;
        }
        frame.set_flags(FLAG_METADATA);
        metadata.encode(frame.payload_mut());
    }

    /// The stream the client sends with this call (an empty one for a call
    /// that has none).
    pub fn stream_arg<T: DeserializeOwned + Send + 'static>(&self) -> Stream<T> {
        match &self.stream {
            Some(call) => {
                let open = &call.open;
                let inbound = Inbound::new(
                    open.flow.clone(),
                    open.method,
                    open.budget,
                    Side::Server,
                    None,
                );
                Stream::remote(inbound, codec::decoder::<T>(self.format))
            }
            None => Stream::empty(),
        }
    }

    /// The reply of a method that returns `stream`: a Response, then the
    /// stream.
    pub fn reply_stream<T: Serialize + Send + 'static>(&self, stream: Stream<T>) -> Reply {
        self.followed_by(self.reply(&()), stream)
    }

    /// The reply of a method that returns `Result<Stream<T>, E>`: a Response
    /// of `Ok(())` and then the stream, or of `Err(e)` and nothing more.
    pub fn reply_stream_result<T: Serialize + Send + 'static, E: Serialize>(
        &self,
        out: Result<Stream<T>, E>,
    ) -> Reply {
        match out {
            Ok(stream) => self.followed_by(self.reply(&Ok::<(), &E>(())), stream),
            Err(e) => self.reply(&Err::<(), &E>(&e)),
        }
    }

    fn followed_by<T: Serialize + Send + 'static>(&self, head: Reply, stream: Stream<T>) -> Reply {
        let Some(call) = &self.stream else {
            return head;
        };
        Reply {
            stream: Some(Box::new(Following {
                items: Encoder::new(stream, self.format),
                call: call.clone(),
                compress: self.compress,
            })),
            ..head
        }
    }
}

/// Finds the service and method name for a method id.
pub(crate) struct Router {
    routes: IdMap<(usize, &'static MethodDesc)>,
    services: Vec<Arc<dyn Service>>,
}

impl Router {
    /// Builds the routing table, refusing two methods with one id (the same
    /// service added twice, or a hash collision across services).
    pub(crate) fn new(services: Vec<Arc<dyn Service>>) -> Result<Router, Error> {
        let mut routes = IdMap::default();
        for (index, service) in services.iter().enumerate() {
            for m in service.methods() {
                if let Some((_, other)) = routes.insert(m.id, (index, m)) {
                    let other = other.name;
                    return Err(Error::Config(format!(
                        "`{}` and `{other}` have the same method id {:#018x}: \
                         is a service added twice? Pin another wire name with #[rpc(name = \"...\")]",
                        m.name, m.id
                    )));
                }
            }
        }
        Ok(Router { routes, services })
    }

    /// The method `method_id` names, or `None` for an unknown id.
    pub(crate) fn find(&self, method_id: u64) -> Option<(usize, &'static MethodDesc)> {
        self.routes.get(&method_id).copied()
    }

    /// The handler of method `found` (from [`find`](Self::find)).
    pub(crate) fn start(&self, found: (usize, &MethodDesc), call: Call) -> Option<Handler> {
        let (index, desc) = found;
        self.services[index].call(desc.id, call)
    }

    pub(crate) fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|s| s.name()).collect()
    }
}

#[cfg(test)]
mod tests {
    /// A Call is moved into every handler's future: the format it carries
    /// costs it no size. (88 bytes: its args in place hold a request's head,
    /// schema fingerprint and small arguments, 46 bytes; see `Payload`.)
    #[test]
    fn a_call_stays_88_bytes() {
        assert!(
            std::mem::size_of::<super::Call>() <= 88,
            "{}",
            std::mem::size_of::<super::Call>()
        );
    }
}
