//! A [`Channel`]: what generated `{Trait}Client`s call through. A handle is
//! the server behind it (an endpoint: its connection and reconnecting) and
//! the options of the calls made through this handle.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::attempt::Attempt;
use super::balanced::{self, Balancer, EndpointSnapshot};
use super::builder::Builder;
use super::call::{Call, Delivery};
use super::config::Config;
use super::endpoint::{Endpoint, Known};
use super::intercepted;
use super::method::Method;
use super::options::CallOptions;
use super::streaming::{Opened, Reporting};
use crate::codec;
use crate::intercept::{Chain, Side};
use crate::observe::call::Observed;
use crate::protocol::{Compressor, FrameBuf};
use crate::stream::Encoder;
use crate::transport::{Address, Peer};
use crate::{Compression, Error};

mod request;

/// A handle to a server (or, [`balanced`](Channel::balanced), to a set of
/// them) that generated clients call through. Cheap to clone: clones share
/// one multiplexed connection (per server).
pub struct Channel {
    route: Route,
    options: CallOptions,
}

/// The servers behind a channel.
#[derive(Clone)]
enum Route {
    /// One server, and the connection to it the handle knows.
    One {
        endpoint: Arc<Endpoint>,
        known: Known,
    },
    /// The servers discovery found, balanced.
    Balanced(Arc<Balancer>),
}

impl Clone for Channel {
    /// A clone knows the connection in use now (clients are usually cloned
    /// per task or request, so after a reconnect the lock-free path comes
    /// back).
    fn clone(&self) -> Self {
        self.with_options(self.options.clone())
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Channel");
        match &self.route {
            Route::One { endpoint, .. } => f.field("address", &endpoint.address()),
            Route::Balanced(balancer) => f.field("balanced", balancer),
        };
        f.field("options", &self.options).finish_non_exhaustive()
    }
}

impl Channel {
    /// A builder for a channel with non-default settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Connects over TCP with default settings.
    ///
    /// # Errors
    ///
    /// As [`Builder::connect`].
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> Result<Channel, Error> {
        Builder::default().connect(addr).await
    }

    /// Connects over TLS on TCP with default settings (feature `tls`; see
    /// [`crate::tls`]).
    ///
    /// # Errors
    ///
    /// As [`Builder::connect_tls`].
    #[cfg(feature = "tls")]
    pub async fn connect_tls(
        addr: impl tokio::net::ToSocketAddrs,
        config: impl Into<Arc<rustls::ClientConfig>>,
        server_name: &str,
    ) -> Result<Channel, Error> {
        Builder::default()
            .connect_tls(addr, config, server_name)
            .await
    }

    /// Connects to a Unix domain socket with default settings.
    ///
    /// # Errors
    ///
    /// As [`Builder::connect_unix`].
    pub async fn connect_unix(path: impl Into<std::path::PathBuf>) -> Result<Channel, Error> {
        Builder::default().connect_unix(path).await
    }

    /// Connects to an in-memory server of this process with default settings.
    ///
    /// # Errors
    ///
    /// As [`Builder::connect_memory`].
    pub async fn connect_memory(name: impl Into<String>) -> Result<Channel, Error> {
        Builder::default().connect_memory(name).await
    }

    pub(super) fn over(endpoint: Arc<Endpoint>) -> Channel {
        let options = CallOptions::default().with_default_timeout(endpoint.config.timeout);
        let known = endpoint.known();
        Channel {
            route: Route::One { endpoint, known },
            options,
        }
    }

    pub(super) fn over_balancer(balancer: Arc<Balancer>) -> Channel {
        let options = CallOptions::default().with_default_timeout(balancer.config.timeout);
        Channel {
            route: Route::Balanced(balancer),
            options,
        }
    }

    /// A handle on the same connection whose calls have deadline `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Channel {
        self.with_options(self.options.clone().with_timeout(timeout))
    }

    /// A handle on the same connection whose calls also carry this metadata
    /// pair (see [`crate::metadata`]; an auth token, say).
    pub fn with_metadata(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Channel {
        self.with_options(self.options.clone().with_metadata(key, value))
    }

    /// A handle on the same connection whose calls' requests are
    /// compressed with `compression` (see
    /// [`CallOptions::with_compression`]).
    pub fn with_compression(&self, compression: Compression) -> Channel {
        self.with_options(self.options.clone().with_compression(compression))
    }

    /// A handle on the same connection whose calls have these options.
    pub fn with_options(&self, options: CallOptions) -> Channel {
        let route = match &self.route {
            Route::One { endpoint, known } => Route::One {
                endpoint: endpoint.clone(),
                known: endpoint.refresh(known),
            },
            Route::Balanced(balancer) => Route::Balanced(balancer.clone()),
        };
        Channel { route, options }
    }

    /// The options of calls made through this handle.
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// The deadline given to calls made through this handle.
    pub fn timeout(&self) -> Duration {
        self.options.timeout()
    }

    /// Where the server is (a balanced channel's: where the first of its
    /// servers is, see [`endpoints`](Self::endpoints)).
    pub fn address(&self) -> Address {
        match &self.route {
            Route::One { endpoint, .. } => endpoint.address(),
            Route::Balanced(balancer) => balancer.members().first().map_or_else(
                || Address::Other("no servers".into()),
                |m| m.target.address.clone(),
            ),
        }
    }

    /// The server currently connected, as its transport names it (for a
    /// balanced channel, which has many: `Peer::Other("balanced")`).
    pub fn peer(&self) -> Peer {
        match &self.route {
            Route::One { endpoint, .. } => endpoint
                .current()
                .map_or_else(|| Peer::Other("not connected".into()), |c| c.peer().clone()),
            Route::Balanced(_) => Peer::Other("balanced".into()),
        }
    }

    /// The address of the server currently connected, for TCP.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match &self.route {
            Route::One { endpoint, .. } => endpoint.current()?.peer().addr(),
            Route::Balanced(_) => None,
        }
    }

    /// Each server behind the channel, as it is now: address, connection,
    /// calls in flight, latency estimate, ejected or not. For dashboards
    /// and tests.
    pub fn endpoints(&self) -> Vec<EndpointSnapshot> {
        match &self.route {
            Route::One { endpoint, .. } => vec![EndpointSnapshot::of(endpoint, 1, None)],
            Route::Balanced(balancer) => balancer.snapshot(),
        }
    }

    /// A call of `method` with `args`, its reply decoded as an `R` and
    /// turned into a `T` (generated clients decode through a newtype of the
    /// method's return type). Generated clients call this. The arguments are
    /// encoded here, when the method is called, so the call's future borrows
    /// nothing; the call starts (its deadline counts, the request goes out)
    /// when it is first polled. A call made inside a handler inherits its
    /// deadline if that is earlier: budgets propagate through call chains.
    #[doc(hidden)]
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned, T>(
        &self,
        method: Method,
        args: &A,
        map: fn(R) -> T,
    ) -> Call<R, T> {
        let decode = codec::reply_decoder::<R>(self.config().format);
        self.start_call(method, args, decode, map)
    }

    /// As [`call`](Self::call), for a reply of primitive scalars (a `()` or
    /// a 1-tuple of one, say): decoded without the guard against deep or
    /// huge input, which such a value cannot be.
    #[doc(hidden)]
    pub fn call_flat<A: Serialize + ?Sized, R: codec::FlatArgs, T>(
        &self,
        method: Method,
        args: &A,
        map: fn(R) -> T,
    ) -> Call<R, T> {
        let decode = codec::flat_reply_decoder::<R>(self.config().format);
        self.start_call(method, args, decode, map)
    }

    fn start_call<A: Serialize + ?Sized, R, T>(
        &self,
        method: Method,
        args: &A,
        decode: fn(&[u8]) -> Result<R, String>,
        map: fn(R) -> T,
    ) -> Call<R, T> {
        let (observed, trace) = self.observe(method.name);
        let trace = trace.as_deref();
        let decoding = Delivery {
            shape: method.shape,
            decode,
            map,
            observed,
        };
        if !self.config().interceptors.is_empty() {
            let run = self.intercepted(method, args, trace);
            return Call::balanced(method.name, run, decoding);
        }
        match &self.route {
            Route::One { endpoint, known } => {
                let attempt = Attempt::new(
                    endpoint.clone(),
                    endpoint.still(known),
                    method.name,
                    self.options.timeout(),
                    self.encode_request(method, args, trace),
                );
                Call::one(attempt, decoding)
            }
            Route::Balanced(balancer) => {
                if let Some((endpoint, load)) = balancer.sole() {
                    let attempt = Attempt::new(
                        endpoint,
                        None,
                        method.name,
                        self.options.timeout(),
                        self.encode_request(method, args, trace),
                    );
                    return Call::sole(attempt, load, decoding);
                }
                let request = self
                    .encode_request(method, args, trace)
                    .map(FrameBuf::finish);
                let run = balanced::run(
                    balancer.clone(),
                    method,
                    method.key,
                    request,
                    self.options.timeout(),
                    crate::context::current_deadline(),
                );
                Call::balanced(method.name, Box::pin(run), decoding)
            }
        }
    }

    /// A streaming call of `method`, sent when the future is first polled;
    /// it resolves once the server's Response came (see `streaming.rs`). On
    /// a balanced channel the call stays on the one server chosen for it.
    pub(super) fn open<A: Serialize + ?Sized>(
        &self,
        method: Method,
        args: &A,
        returns_stream: bool,
        outbound: Option<Encoder>,
    ) -> Pin<Box<dyn Future<Output = Result<Opened, Error>> + Send>> {
        let timeout = self.options.timeout_for(method.no_deadline);
        let (observed, trace) = self.observe(method.name);
        let frame = self.encode_request(method, args, trace.as_deref());
        // The stream the call sends is compressed as its request would be,
        // for whichever server it goes to.
        let compress = Compressor::new(
            self.compression().unwrap_or(Compression::None),
            self.config().compression_threshold,
        );
        let (endpoint, first, balanced) = match &self.route {
            Route::One { endpoint, known } => (Some(endpoint.clone()), endpoint.still(known), None),
            Route::Balanced(balancer) => match balancer.choose(method.key, &[]) {
                Some(chosen) => (
                    Some(chosen.member.endpoint.clone()),
                    None,
                    Some(Reporting::new(balancer.clone(), chosen)),
                ),
                None => (None, None, None),
            },
        };
        let inherited = crate::context::current_deadline();
        let attempt = move |frame| {
            endpoint.map(|endpoint| {
                Attempt::new(endpoint, first, method.name, timeout, frame)
                    .inheriting(inherited)
                    .streaming(returns_stream, outbound, compress)
            })
        };
        let config = self.config();
        let format = config.format;
        if config.interceptors.is_empty() {
            let span = observed.span().clone();
            let opened = Opened::open(method, attempt(frame), balanced, format).instrument(span);
            return Box::pin(async move {
                let mut opened = opened.await;
                record_opened(observed, &mut opened, returns_stream);
                opened
            });
        }
        // As `intercepted` does for other calls.
        let chain = config.interceptors.clone();
        let max_metadata = config.max_metadata;
        let sent = self.sent_metadata(trace.as_deref());
        let info =
            Chain::info(method.name, Side::Client, true, sent.clone()).on_client(self.address());
        let span = observed.span().clone();
        let opened = async move {
            let mut around = chain.around(info, None);
            if let Err(rejection) = around.admit().await {
                return Err(rejection.into_error(method.name));
            }
            let frame = match frame {
                Ok(frame) if *around.info().metadata() != sent => intercepted::replace_metadata(
                    &frame,
                    around.info().metadata(),
                    max_metadata,
                    method.name,
                ),
                frame => frame,
            };
            let mut opened = Opened::open(method, attempt(frame), balanced, format).await;
            match &opened {
                Ok(opened) => around.finish(opened.failure().as_ref().map_or(Ok(()), Err)),
                Err(e) => around.finish(Err(e)),
            }
            record_opened(observed, &mut opened, returns_stream);
            opened
        };
        Box::pin(opened.instrument(span))
    }

    /// The settings of the channel's connections.
    pub(super) fn config(&self) -> &Config {
        match &self.route {
            Route::One { endpoint, .. } => &endpoint.config,
            Route::Balanced(balancer) => &balancer.config,
        }
    }
}

/// Records a streaming call's outcome: a failed Response's, or the end of
/// the stream the call returns, or (for a call that only sends one) its
/// Response's value.
fn record_opened(mut observed: Observed, opened: &mut Result<Opened, Error>, returns_stream: bool) {
    match opened {
        Ok(opened) => match opened.failure() {
            None if returns_stream => opened.observe_to_the_end(observed),
            failure => observed.finish_failure(failure.as_ref()),
        },
        Err(e) => observed.finish_failure(Some(e)),
    }
}
