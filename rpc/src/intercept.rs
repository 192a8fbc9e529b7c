//! Interceptors: code that runs around every call, on the server or the
//! client, streaming calls included. An interceptor sees the method, the
//! metadata and the peer; it can refuse the call with a status the caller
//! gets as a typed [`Error`], add or change metadata, and time and count
//! calls.
//!
//! ```no_run
//! use rpc::intercept::{CallInfo, Interceptor, Rejection};
//!
//! /// Lets through only calls that carry the token.
//! struct RequireToken(String);
//!
//! impl Interceptor for RequireToken {
//!     async fn before(&self, call: &mut CallInfo) -> Result<(), Rejection> {
//!         match call.metadata().get_str("authorization") {
//!             Some(t) if t == self.0 => Ok(()),
//!             Some(_) => Err(Rejection::permission_denied("wrong token")),
//!             None => Err(Rejection::unauthenticated("no authorization metadata")),
//!         }
//!     }
//! }
//! # #[rpc::service] trait Calc { async fn add(&self, a: i32, b: i32) -> i32; }
//! # struct CalcImpl;
//! # impl Calc for CalcImpl { async fn add(&self, a: i32, b: i32) -> i32 { a + b } }
//! # async fn run() -> Result<(), rpc::Error> {
//! let server = rpc::Server::builder()
//!     .interceptor(RequireToken("s3cret".into()))
//!     .add_service(CalcServer::new(CalcImpl))
//!     .bind("127.0.0.1:0")
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Several run in the order they were added: each one's [`before`] after
//! the one before it has let the call through, and the [`after`]s in the
//! reverse order. On the server `before` runs in the call's own task, before
//! the handler (a refusal means the handler never runs); the handler sees
//! the metadata as the interceptors left it. On the client `before` runs
//! when the call is first polled, before the request goes out. `after`
//! runs once the outcome is known: for a method that returns a stream, when
//! its Response came (the stream itself may go on). Every interceptor whose
//! `before` ran hears exactly one outcome, also of a call that ended
//! without one: dropped by its caller or cancelled by the client
//! ([`Error::Aborted`]), out of time ([`Error::DeadlineExceeded`]), or a
//! handler's panic ([`Error::Panicked`]).
//!
//! A server or channel with no interceptor pays nothing for this: the call
//! takes the path it takes without them.
//!
//! [`before`]: Interceptor::before
//! [`after`]: Interceptor::after

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::Status;
use crate::transport::{Address, Peer};
use crate::{Error, Metadata};

/// Code that runs around every call (see the [module docs](self)).
pub trait Interceptor: Send + Sync + 'static {
    /// Runs before the call: `Ok` lets it through (perhaps with its
    /// metadata changed), `Err` refuses it.
    fn before(&self, call: &mut CallInfo) -> impl Future<Output = Result<(), Rejection>> + Send {
        let _ = call;
        std::future::ready(Ok(()))
    }

    /// Runs once the call's outcome is known: `Ok` if it succeeded (an
    /// application's own `Err` included), else the error the caller gets.
    fn after(&self, call: &CallInfo, outcome: Result<(), &Error>) {
        let _ = (call, outcome);
    }
}

/// Which end of a call an interceptor runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// On the server, around the handler.
    Server,
    /// On the client, around the call.
    Client,
}

/// What an interceptor sees of a call.
#[derive(Debug)]
pub struct CallInfo {
    method: &'static str,
    side: Side,
    peer: Option<Peer>,
    address: Option<Address>,
    call_id: Option<u64>,
    streaming: bool,
    started: Instant,
    metadata: Metadata,
    reply_metadata: Metadata,
}

impl CallInfo {
    /// `"Service.method"`.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// Server or client.
    pub fn side(&self) -> Side {
        self.side
    }

    /// On the server, the client as its transport knows it (its address,
    /// its Unix credentials, its TLS certificates); on the client, `None`.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// On the client, where the channel connects (the first server of a
    /// balanced channel, whose calls may go to any); on the server, `None`.
    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    /// The call's id on its connection (on the server; a client's call
    /// gets one only when it is sent).
    pub fn call_id(&self) -> Option<u64> {
        self.call_id
    }

    /// Whether the method takes or returns a stream.
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// How long since the call started (on the server: since its handler
    /// was about to run).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The call's metadata: what the client sends (on the client), or what
    /// it sent (on the server).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The call's metadata, to change: on the client what goes out, on the
    /// server what the handler sees.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// On the server, metadata to send back with the reply (with what the
    /// handler adds); on the client, unused.
    pub fn reply_metadata_mut(&mut self) -> &mut Metadata {
        &mut self.reply_metadata
    }
}

/// An interceptor's refusal of a call: the caller gets it as the matching
/// [`Error`] variant, with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    status: Status,
    message: String,
}

impl Rejection {
    /// The caller did not say who it is, or not convincingly: the caller
    /// gets [`Error::Unauthenticated`].
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Rejection {
            status: Status::Unauthenticated,
            message: message.into(),
        }
    }

    /// The caller may not make this call: [`Error::PermissionDenied`].
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Rejection {
            status: Status::PermissionDenied,
            message: message.into(),
        }
    }

    /// Not now (a rate limit, say): [`Error::Overloaded`], which the caller
    /// may retry.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Rejection {
            status: Status::Overloaded,
            message: message.into(),
        }
    }

    /// The error a caller of `method` gets for it.
    pub(crate) fn into_error(self, method: &'static str) -> Error {
        crate::error::from_status(
            method,
            Duration::ZERO,
            "response",
            self.status as u8,
            self.message.as_bytes(),
            false,
        )
    }

    /// The Response that refuses call `id`.
    pub(crate) fn reply(&self, id: u64) -> bytes::Bytes {
        self.status.reply(id, &self.message)
    }
}

/// The object-safe form of [`Interceptor`], which the chain holds.
trait Dyn: Send + Sync {
    fn before<'a>(
        &'a self,
        call: &'a mut CallInfo,
    ) -> Pin<Box<dyn Future<Output = Result<(), Rejection>> + Send + 'a>>;
    fn after(&self, call: &CallInfo, outcome: Result<(), &Error>);
}

impl<I: Interceptor> Dyn for I {
    fn before<'a>(
        &'a self,
        call: &'a mut CallInfo,
    ) -> Pin<Box<dyn Future<Output = Result<(), Rejection>> + Send + 'a>> {
        Box::pin(Interceptor::before(self, call))
    }

    fn after(&self, call: &CallInfo, outcome: Result<(), &Error>) {
        Interceptor::after(self, call, outcome);
    }
}

/// The interceptors of a server or a channel, in order; none costs nothing.
#[derive(Clone, Default)]
pub(crate) struct Chain(Option<Arc<[Arc<dyn Dyn>]>>);

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} interceptors", self.0.as_ref().map_or(0, |c| c.len()))
    }
}

impl Chain {
    /// This chain with `interceptor` last.
    pub(crate) fn with(&self, interceptor: impl Interceptor) -> Chain {
        let mut all: Vec<Arc<dyn Dyn>> = self.0.iter().flat_map(|c| c.iter().cloned()).collect();
        all.push(Arc::new(interceptor));
        Chain(Some(all.into()))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// A call's view for the interceptors.
    pub(crate) fn info(
        method: &'static str,
        side: Side,
        streaming: bool,
        metadata: Metadata,
    ) -> CallInfo {
        CallInfo {
            method,
            side,
            peer: None,
            address: None,
            call_id: None,
            streaming,
            started: Instant::now(),
            metadata,
            reply_metadata: Metadata::new(),
        }
    }

    /// The interceptors around one call (see [`Around`]).
    pub(crate) fn around(&self, info: CallInfo, deadline: Option<tokio::time::Instant>) -> Around {
        Around {
            chain: self.clone(),
            info,
            ran: 0,
            done: false,
            deadline,
        }
    }
}

/// A chain's interceptors around one call: runs their `before`s, and makes
/// sure that each whose `before` ran hears exactly one outcome, also when
/// the call is dropped before it ends (cancelled, out of time, a panic).
pub(crate) struct Around {
    chain: Chain,
    info: CallInfo,
    /// How many `before`s have started.
    ran: usize,
    /// The `after`s have run.
    done: bool,
    /// The call's deadline, if known: a drop past it is a deadline.
    deadline: Option<tokio::time::Instant>,
}

impl Around {
    pub(crate) fn info(&self) -> &CallInfo {
        &self.info
    }

    pub(crate) fn info_mut(&mut self) -> &mut CallInfo {
        &mut self.info
    }

    /// Runs each `before` in order, up to the first refusal (whose `after`s
    /// it runs: the call is over).
    pub(crate) async fn admit(&mut self) -> Result<(), Rejection> {
        let Some(all) = self.chain.0.clone() else {
            return Ok(());
        };
        for interceptor in all.iter() {
            self.ran += 1;
            if let Err(rejection) = interceptor.before(&mut self.info).await {
                let error = rejection.clone().into_error(self.info.method());
                self.finish(Err(&error));
                return Err(rejection);
            }
        }
        Ok(())
    }

    /// The call's outcome, for each interceptor whose `before` ran, last
    /// first; once.
    pub(crate) fn finish(&mut self, outcome: Result<(), &Error>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let Some(all) = &self.chain.0 else { return };
        for i in all[..self.ran.min(all.len())].iter().rev() {
            i.after(&self.info, outcome);
        }
    }
}

impl Drop for Around {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let method = self.info.method();
        let error = if std::thread::panicking() {
            Error::Panicked {
                method,
                message: "the handler panicked".into(),
            }
        } else if self
            .deadline
            .is_some_and(|at| tokio::time::Instant::now() >= at)
        {
            Error::DeadlineExceeded {
                method,
                budget: self.info.elapsed(),
            }
        } else {
            let message = match self.info.side() {
                Side::Server => "the call was cancelled (by the client, or its connection closed)",
                Side::Client => "the caller dropped the call before it ended",
            };
            Error::Aborted {
                method,
                message: message.into(),
            }
        };
        self.finish(Err(&error));
    }
}

impl CallInfo {
    pub(crate) fn on_server(mut self, peer: Peer, call_id: u64) -> Self {
        self.peer = Some(peer);
        self.call_id = Some(call_id);
        self
    }

    pub(crate) fn on_client(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }
}
