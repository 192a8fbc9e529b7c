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
use crate::Error;
use crate::codec;
use crate::protocol::{FrameBuf, Kind, LEN_PREFIX, Payload, SERVER_COULD_NOT_ENCODE, Status};
use crate::transport::Outgoing;

/// A running handler: resolves to the encoded Response frame.
pub type Handler = Pin<Box<dyn Future<Output = Reply> + Send + 'static>>;

/// An encoded Response frame, as a handler returns it.
#[derive(Debug)]
pub struct Reply(Outgoing);

impl Reply {
    /// The frame's bytes (for the bench hooks).
    #[cfg(feature = "hooks")]
    pub(crate) fn into_bytes(self) -> Bytes {
        match self.0 {
            Outgoing::Bytes(b) => b,
            Outgoing::Buf(f) => f.finish(),
        }
    }
}

impl From<Bytes> for Reply {
    fn from(frame: Bytes) -> Self {
        Reply(Outgoing::Bytes(frame))
    }
}

impl From<Reply> for Outgoing {
    fn from(reply: Reply) -> Self {
        reply.0
    }
}

/// A method as it is named on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodDesc {
    /// `"Service.method"`.
    pub name: &'static str,
    /// The FNV-1a hash of `name` (see the protocol docs).
    pub id: u64,
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
    pub(crate) max_frame: usize,
}

impl Call {
    /// Decodes the arguments, or gives the Decode error reply to send instead.
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, Reply> {
        codec::decode(&self.args).map_err(|message| Status::Decode.reply(self.id, &message).into())
    }

    /// As [`args`](Self::args), for arguments that are all primitive
    /// scalars: decoded without the guard against deep or huge input, which
    /// such a tuple cannot be.
    pub fn flat_args<T: codec::FlatArgs>(&self) -> Result<T, Reply> {
        codec::decode_flat(&self.args)
            .map_err(|message| Status::Decode.reply(self.id, &message).into())
    }

    /// Encodes the handler's return value as the reply frame. A value larger
    /// than the frame limit becomes a FrameTooLarge reply: only this call fails.
    pub fn reply<T: Serialize + ?Sized>(&self, value: &T) -> Reply {
        // Room for a small value in place: a larger one moves the frame to
        // the heap as it grows.
        let mut frame = FrameBuf::new(Kind::Response, self.id, 16);
        frame.extend_from_slice(&[Status::Ok as u8]);
        let limit = self.max_frame + LEN_PREFIX;
        let frame = match codec::encode_into(value, &mut frame, limit) {
            Ok(()) => frame,
            Err(codec::EncodeError::TooLarge { size, .. }) => {
                let mut f = FrameBuf::new(Kind::Response, self.id, 17);
                f.payload_mut().put_u8(Status::FrameTooLarge as u8);
                f.payload_mut().put_u64((size - LEN_PREFIX) as u64);
                f.payload_mut().put_u64(self.max_frame as u64);
                f
            }
            Err(codec::EncodeError::Serde(message)) => {
                let message = format!("{SERVER_COULD_NOT_ENCODE}{message}");
                return Status::Decode.reply(self.id, &message).into();
            }
        };
        Reply(Outgoing::Buf(frame))
    }
}

/// Finds the service and method name for a method id.
pub(crate) struct Router {
    routes: IdMap<(usize, &'static str)>,
    services: Vec<Arc<dyn Service>>,
}

impl Router {
    /// Builds the routing table, refusing two methods with one id (the same
    /// service added twice, or a hash collision across services).
    pub(crate) fn new(services: Vec<Arc<dyn Service>>) -> Result<Router, Error> {
        let mut routes = IdMap::default();
        for (index, service) in services.iter().enumerate() {
            for m in service.methods() {
                if let Some((_, other)) = routes.insert(m.id, (index, m.name)) {
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

    /// The method's name and its handler, or `None` for an unknown id.
    pub(crate) fn route(&self, method_id: u64, call: Call) -> Option<(&'static str, Handler)> {
        let &(index, name) = self.routes.get(&method_id)?;
        Some((name, self.services[index].call(method_id, call)?))
    }

    pub(crate) fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|s| s.name()).collect()
    }
}
