//! Streams: methods that return or take [`Stream<T>`](Stream).
//!
//! ```
//! use futures::StreamExt;
//!
//! #[rpc::service]
//! pub trait Feed {
//!     /// Server streaming: the call returns a stream of events.
//!     async fn watch(&self, prefix: String) -> rpc::Stream<String>;
//!     /// Client streaming: the call sends a stream of chunks.
//!     async fn upload(&self, chunks: rpc::Stream<Vec<u8>>) -> u64;
//!     /// Both: a stream each way.
//!     async fn echo(&self, inbox: rpc::Stream<u32>) -> rpc::Stream<u32>;
//! }
//!
//! struct Impl;
//! impl Feed for Impl {
//!     async fn watch(&self, prefix: String) -> rpc::Stream<String> {
//!         rpc::Stream::iter((0..3).map(move |i| format!("{prefix}{i}")))
//!     }
//!     async fn upload(&self, mut chunks: rpc::Stream<Vec<u8>>) -> u64 {
//!         let mut total = 0;
//!         while let Some(Ok(chunk)) = chunks.next().await {
//!             total += chunk.len() as u64;
//!         }
//!         total
//!     }
//!     async fn echo(&self, inbox: rpc::Stream<u32>) -> rpc::Stream<u32> {
//!         inbox // a received stream can be sent on as it is
//!     }
//! }
//! # async fn client(feed: FeedClient) -> Result<(), rpc::Error> {
//! let mut events = feed.watch("a/".into()).await?;
//! while let Some(event) = events.next().await {
//!     println!("{}", event?);
//! }
//! let sent = feed.upload(rpc::Stream::iter(vec![vec![0u8; 1024]; 8])).await?;
//! assert_eq!(sent, 8192);
//! # Ok(()) }
//! ```
//!
//! A stream yields `Result<T, rpc::Error>`: the items, then (if the stream
//! did not end cleanly) one error, then the end. One item that does not
//! decode is an `Err(Decode)` in its place and the stream goes on; every
//! other error ends it. A handler builds the stream it returns from any
//! `futures::Stream` ([`Stream::new`], [`Stream::from_results`],
//! [`Stream::iter`]) or from a [`channel`], whose sender waits for the
//! consumer.
//!
//! # Flow control
//!
//! Each side grants each stream it receives a window of bytes: a client
//! 2 MiB ([`DEFAULT_CLIENT_WINDOW`]) unless
//! [`Channel::builder().stream_window(..)`](crate::client::Builder::stream_window)
//! says otherwise, a server 256 KiB ([`DEFAULT_WINDOW`]) unless
//! [`Server::builder().stream_window(..)`](crate::server::Builder::stream_window)
//! does, counted in whole frames (an item's bytes plus 14). The
//! producer sends while what it sent and the consumer has not yet *taken*
//! is under the window, so a slow consumer holds its producer back, and at
//! most the window plus one item waits in memory; an item larger than the
//! window still goes out, alone. Credit goes back as the application takes
//! items, a quarter of the window at a time. Each stream has its own
//! window, so a stalled stream holds up nothing else on its connection.
//! Credit is not all a producer waits for: while its connection holds
//! 512 KiB not yet written to the peer, it waits for the writer too, so a
//! peer that grants a huge window or credit it never consumes, and reads
//! nothing, holds the producer back all the same.
//!
//! # Lifetime
//!
//! - The client dropping a stream it receives cancels the call: the server
//!   drops the handler's stream (and the future producing it) at once.
//! - A handler's stream ending ends the call; its error (or panic) ends the
//!   client's stream with that error, after the items before it. A stream
//!   the client is still sending stops there too (a [`Sender`] feeding it
//!   gets [`Gone`]), whether or not the client has read that end yet.
//! - A lost connection ends every stream on it with `Disconnected`: never a
//!   silent end.
//! - One deadline covers the whole call, streams included (both sides end
//!   the stream at it); a method marked `#[rpc(no_deadline)]` has no
//!   deadline unless the handle sets one with `with_timeout`, and keepalive
//!   still notices a dead peer.
//! - The client can finish its own stream (half-close) and keep reading the
//!   server's.
//! - A server shutting down gives streams the grace period, then ends each
//!   with [`Error::ShuttingDown`] (`mid_stream: true`).
//! - Streaming calls are not retried or hedged by a balanced channel: a
//!   stream stays on the server it started on.

mod flow;
mod inbound;
mod pump;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;

use crate::Error;
pub(crate) use flow::{End, Flow};
pub(crate) use inbound::Inbound;
#[cfg(feature = "hooks")]
pub(crate) use pump::encode;
pub(crate) use pump::{Encoder, Pumped, pump};

/// The window of unconsumed bytes a server grants each stream it receives
/// (a client's stream), unless configured, and what a peer whose handshake
/// states none is taken to grant: 256 KiB, four times HTTP/2's initial
/// stream window (RFC 9113, 65,535 bytes), which leaves room for four 64 KiB
/// chunks in flight. A server faces many clients it does not know, each
/// with up to [`DEFAULT_MAX_STREAMS`] streams: 25 MiB a connection at most.
pub const DEFAULT_WINDOW: usize = 256 << 10;

/// The window of unconsumed bytes a client grants each stream it receives
/// (a server's stream), unless configured: 2 MiB, the stream window of
/// hyper's HTTP/2 client, which tonic's client grants. A client receives
/// the streams it asked for, from servers it chose, and those carry the
/// bulk (downloads, watches): a window that covers the time a busy consumer
/// is not scheduled keeps the producer sending meanwhile. There is no window
/// for a whole connection (hyper's client has one of 5 MiB): a client holds
/// at most this plus one item for each stream it has open, 200 MiB for 100
/// streams nobody reads.
pub const DEFAULT_CLIENT_WINDOW: usize = 2 << 20;

/// Streaming calls open at once on one server connection, unless
/// configured: 100, the least that RFC 9113 (§6.5.2) recommends a peer allow
/// for `SETTINGS_MAX_CONCURRENT_STREAMS`.
pub const DEFAULT_MAX_STREAMS: usize = 100;

/// A stream of `T`s, in either direction of a call: what a client receives
/// from a method that returns `rpc::Stream<T>`, what a handler builds to
/// return, what a client passes to a method that takes one, and what that
/// handler receives. Every item is a `Result<T, rpc::Error>` (see the
/// [module docs](self)).
#[must_use = "a stream does nothing unless polled"]
pub struct Stream<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    /// Built on this side, from the application's items.
    Local {
        items: Pin<Box<dyn futures::Stream<Item = Result<T, Error>> + Send>>,
        /// An error was yielded: the stream is over.
        failed: bool,
    },
    /// Received from the peer.
    Remote {
        inbound: Inbound,
        decode: fn(&[u8]) -> Result<T, String>,
    },
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Local { .. } => f.write_str("Stream(local)"),
            Inner::Remote { inbound, .. } => write!(f, "Stream({inbound:?})"),
        }
    }
}

impl<T: Send + 'static> Stream<T> {
    /// A stream of the items of `items`.
    pub fn new(items: impl futures::Stream<Item = T> + Send + 'static) -> Self {
        Stream::local(items.map(Ok))
    }

    /// A stream of the `Ok` items of `items`, ended by the first `Err`,
    /// which its consumer receives as [`Error::Aborted`] with the error's
    /// message.
    pub fn from_results<E: std::fmt::Display>(
        items: impl futures::Stream<Item = Result<T, E>> + Send + 'static,
    ) -> Self {
        Stream::local(items.map(|item| {
            item.map_err(|e| Error::Aborted {
                method: "stream",
                message: e.to_string(),
            })
        }))
    }

    /// A stream of the items of an iterator.
    pub fn iter<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Stream::new(futures::stream::iter(items))
    }

    /// A stream with no items.
    pub fn empty() -> Self {
        Stream::new(futures::stream::empty())
    }

    fn local(items: impl futures::Stream<Item = Result<T, Error>> + Send + 'static) -> Self {
        Stream {
            inner: Inner::Local {
                items: Box::pin(items),
                failed: false,
            },
        }
    }
}

impl<T> Stream<T> {
    /// A stream received from the peer through `inbound`.
    pub(crate) fn remote(inbound: Inbound, decode: fn(&[u8]) -> Result<T, String>) -> Self {
        Stream {
            inner: Inner::Remote { inbound, decode },
        }
    }
}

impl<T> futures::Stream for Stream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.inner {
            Inner::Local { items, failed } => {
                if *failed {
                    return Poll::Ready(None);
                }
                let next = std::task::ready!(items.as_mut().poll_next(cx));
                *failed = matches!(next, Some(Err(_)));
                Poll::Ready(next)
            }
            Inner::Remote { inbound, decode } => {
                let method = inbound.method();
                let next = std::task::ready!(inbound.poll_next(cx));
                Poll::Ready(next.map(|item| {
                    item.and_then(|payload| {
                        decode(payload).map_err(|message| Error::Decode {
                            method,
                            side: "stream item",
                            message,
                        })
                    })
                }))
            }
        }
    }
}

// The stream owns its parts behind boxes; nothing in it is pinned in place.
impl<T> Unpin for Stream<T> {}

/// A stream and the sender that feeds it: [`Sender::send`] waits until the
/// stream's consumer (the peer, through the stream's flow control) has room,
/// so a producer never runs ahead of it by more than one item.
pub fn channel<T: Send + 'static>() -> (Sender<T>, Stream<T>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<T, Error>>(1);
    let items = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    });
    (Sender { tx }, Stream::local(items))
}

/// Feeds a stream made by [`channel`]. Dropping it ends the stream.
#[derive(Debug)]
pub struct Sender<T> {
    tx: tokio::sync::mpsc::Sender<Result<T, Error>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
        }
    }
}

/// The stream a [`Sender`] fed is gone: its call ended or was cancelled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the stream's consumer is gone")]
pub struct Gone;

impl<T> Sender<T> {
    /// Sends an item once the consumer has room for it.
    ///
    /// # Errors
    ///
    /// [`Gone`] if the stream was dropped (the call ended or was cancelled).
    pub async fn send(&self, item: T) -> Result<(), Gone> {
        self.tx.send(Ok(item)).await.map_err(|_| Gone)
    }

    /// Ends the stream with an error: the consumer receives
    /// [`Error::Aborted`] with `message` after the items sent before.
    ///
    /// # Errors
    ///
    /// [`Gone`] as [`send`](Self::send).
    pub async fn abort(self, message: impl Into<String>) -> Result<(), Gone> {
        let error = Error::Aborted {
            method: "stream",
            message: message.into(),
        };
        self.tx.send(Err(error)).await.map_err(|_| Gone)
    }

    /// Waits until the stream's consumer is gone (to stop producing).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

#[cfg(test)]
mod tests;
