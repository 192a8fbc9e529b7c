//! Streaming calls on a [`Channel`]: what generated clients call for a
//! method that takes or returns an [`rpc::Stream`](crate::Stream). A
//! streaming call is one [`Attempt`] (its request, its flow, and a task
//! that sends its stream, if it has one) that stays open after its Response
//! while the server's stream is read. It is never retried or hedged: items
//! cannot be sent twice, and a stream stays on the server it started on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::Channel;
use super::attempt::Attempt;
use super::balanced::{Balancer, Chosen};
use super::connection::InFlight;
use super::method::Method;
use super::reply::decode_response;
use crate::codec;
use crate::observe::call::Observed;
use crate::observe::metrics::{Items, Side};
use crate::protocol::{Compressor, Payload};
use crate::stream::{self, Encoder, Inbound, Stream};
use crate::{Error, Format};

/// A streaming call, until its Response: resolves to the server's stream
/// (or, for a method that only takes a stream, to its value). Dropping it
/// cancels the call. Boxed: the future must not borrow the arguments, and a
/// stream lives long enough that one allocation does not matter.
#[doc(hidden)]
#[must_use = "a call does nothing unless awaited"]
pub struct StreamCall<T>(Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>);

impl<T> Future for StreamCall<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<T> std::fmt::Debug for StreamCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamCall")
    }
}

/// A streaming call whose Response came.
pub(super) struct Opened {
    method: &'static str,
    /// The method's shape as this client was built.
    shape: &'static str,
    /// The Response payload.
    payload: Payload,
    /// The call, open while the server's stream is read.
    call: Option<InFlight>,
    budget: Duration,
    /// The call's span and metrics, for a call whose outcome is its
    /// returned stream's end.
    observed: Observed,
    /// The format of the Response's value and of the stream's items.
    format: Format,
}

impl Opened {
    /// Runs `attempt` (none: a balanced channel with no server to choose)
    /// until its Response, reporting to the balancer if there is one.
    pub(super) async fn open(
        spec: Method,
        attempt: Option<Attempt>,
        mut report: Option<Reporting>,
        format: Format,
    ) -> Result<Opened, Error> {
        let method = spec.name;
        let Some(mut attempt) = attempt else {
            let why = "the balanced channel has no endpoints (discovery found none yet)";
            return Err(Error::disconnected(method, why, false));
        };
        let result = (&mut attempt).await;
        if let Some(report) = &mut report {
            report.done(result.is_ok() || matches!(result, Err(Error::DeadlineExceeded { .. })));
        }
        Ok(Opened {
            method,
            shape: spec.shape,
            payload: result?,
            call: attempt.take_open(),
            budget: attempt.budget(),
            observed: Observed::none(),
            format,
        })
    }

    /// The call's outcome is its stream's end: recorded there.
    pub(super) fn observe_to_the_end(&mut self, observed: Observed) {
        self.observed = observed;
    }

    /// The error the Response stands for, if it is a failure.
    pub(super) fn failure(&self) -> Option<Error> {
        crate::error::of_reply(self.method, self.budget, &self.payload)
            .map(|e| e.with_client_shape(self.shape))
    }

    /// The Response's value, or the error it carries.
    fn head<R>(&mut self, decode: fn(&[u8]) -> Result<R, String>) -> Result<R, Error> {
        let payload = std::mem::replace(&mut self.payload, Payload::Shared(Default::default()));
        let head = decode_response(self.method, self.shape, self.budget, payload, decode);
        if let Err(e) = &head {
            self.observed.finish_failure(Some(e));
        }
        head
    }

    /// The server ended the call with its Response (an application's
    /// `Err`): nothing follows, and the call delivered its value.
    fn ended_by_server(&mut self) {
        if let Some(call) = self.call.take() {
            call.ended_by_server();
        }
        self.observed.finish("Ok", None);
    }

    /// The server's stream, read through the open call.
    fn into_stream<T>(mut self) -> Result<Stream<T>, Error>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let call = self.call.take();
        let Some(flow) = call.as_ref().and_then(|c| c.flow()).cloned() else {
            let why = "the server's Response came without its stream";
            let e = Error::disconnected(self.method, why, true);
            self.observed.finish_failure(Some(&e));
            return Err(e);
        };
        let call = call.map(|c| Box::new(c) as Box<dyn Send + Sync>);
        let observed = std::mem::replace(&mut self.observed, Observed::none());
        let inbound =
            Inbound::new(flow, self.method, self.budget, Side::Client, call).observed(observed);
        Ok(Stream::remote(inbound, codec::decoder::<T>(self.format)))
    }
}

impl Channel {
    /// A call of a method that returns `rpc::Stream<T>`, sending `outbound`
    /// if the method takes a stream too. Generated clients call this.
    #[doc(hidden)]
    pub fn stream<A, C, T>(
        &self,
        method: Method,
        args: &A,
        outbound: Option<Stream<C>>,
    ) -> StreamCall<Stream<T>>
    where
        A: Serialize + ?Sized,
        C: Serialize + Send + 'static,
        T: DeserializeOwned + Send + 'static,
    {
        let format = self.config().format;
        let open = self.open(
            method,
            args,
            true,
            outbound.map(|s| Encoder::new(s, format)),
        );
        StreamCall(Box::pin(async move {
            let mut opened = open.await?;
            opened.head(codec::flat_reply_decoder::<()>(opened.format))?;
            opened.into_stream()
        }))
    }

    /// As [`stream`](Self::stream), for a method that returns
    /// `Result<rpc::Stream<T>, E>`: an `Err` from the handler comes instead
    /// of the stream.
    #[doc(hidden)]
    pub fn stream_result<A, C, T, E>(
        &self,
        method: Method,
        args: &A,
        outbound: Option<Stream<C>>,
    ) -> StreamCall<Result<Stream<T>, E>>
    where
        A: Serialize + ?Sized,
        C: Serialize + Send + 'static,
        T: DeserializeOwned + Send + 'static,
        E: DeserializeOwned + Send + 'static,
    {
        let format = self.config().format;
        let open = self.open(
            method,
            args,
            true,
            outbound.map(|s| Encoder::new(s, format)),
        );
        StreamCall(Box::pin(async move {
            let mut opened = open.await?;
            match opened.head(codec::reply_decoder::<Result<(), E>>(opened.format))? {
                Ok(()) => opened.into_stream().map(Ok),
                // No stream follows an `Err`: the call is over, ended by
                // the server (so no Cancel goes out for it).
                Err(e) => {
                    opened.ended_by_server();
                    Ok(Err(e))
                }
            }
        }))
    }

    /// A call of a method that takes `outbound` and returns a value, decoded
    /// as an `R` and turned into a `T`. Generated clients call this.
    #[doc(hidden)]
    pub fn upload<A, C, R, T>(
        &self,
        method: Method,
        args: &A,
        outbound: Stream<C>,
        map: fn(R) -> T,
    ) -> StreamCall<T>
    where
        A: Serialize + ?Sized,
        C: Serialize + Send + 'static,
        R: DeserializeOwned + 'static,
        T: 'static,
    {
        let format = self.config().format;
        let open = self.open(method, args, false, Some(Encoder::new(outbound, format)));
        StreamCall(Box::pin(async move {
            let mut opened = open.await?;
            opened
                .head(codec::reply_decoder::<R>(opened.format))
                .map(map)
        }))
    }
}

/// A balanced streaming call's report on the server chosen for it: how long
/// its Response took and whether it came. What happens after (a stream may
/// last hours) says nothing of the server's latency.
pub(super) struct Reporting {
    balancer: Arc<Balancer>,
    chosen: Chosen,
    started: Instant,
    done: bool,
}

impl Reporting {
    pub(super) fn new(balancer: Arc<Balancer>, chosen: Chosen) -> Self {
        chosen.member.load.start();
        Reporting {
            balancer,
            chosen,
            started: Instant::now(),
            done: false,
        }
    }

    fn done(&mut self, answered: bool) {
        self.done = true;
        let rtt = self.started.elapsed();
        self.balancer.report(&self.chosen.member, rtt, answered);
    }
}

impl Drop for Reporting {
    fn drop(&mut self) {
        if !self.done {
            self.balancer
                .abandoned(&self.chosen.member, self.chosen.probe);
        }
    }
}

/// A streaming call's part in its attempt.
pub(super) struct Streaming {
    /// The server answers with a stream.
    pub(super) returns_stream: bool,
    /// The stream the call sends, until it is handed to its pump.
    pub(super) outbound: Option<Encoder>,
    /// The stream the call sends went out on a connection: the call can
    /// no longer move to another one.
    pub(super) pumped: bool,
    /// How the items are compressed, with an algorithm the server may not
    /// accept (filtered once the connection is known).
    pub(super) compress: Compressor,
}

impl Streaming {
    /// The call's request is queued on `call`'s connection: its stream
    /// follows, sent by a task of its own as the server's credit allows.
    pub(super) fn start_pump(&mut self, call: &InFlight, method: &'static str) {
        let (Some(mut items), Some(flow)) = (self.outbound.take(), call.flow().cloned()) else {
            return;
        };
        self.pumped = true;
        let limit = call.connection().send_limit();
        let peer = call.connection().peer_features();
        let compress = Compressor {
            algorithm: self.compress.algorithm.if_accepted(peer),
            ..self.compress
        };
        let counted = Items::new(Side::Client, method, true);
        tokio::spawn(
            async move { stream::pump(&flow, &mut items, limit, compress, &counted).await },
        );
    }
}
