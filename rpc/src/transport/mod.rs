//! Bytes in and out. The seam ([`Link`], [`Connector`], [`Listener`]) and
//! its transports (TCP, Unix domain sockets, in-memory pipes, and with the
//! `tls` feature TLS over TCP), then
//! what every connection runs over whichever transport: the handshake, the
//! frame reader and the batching frame writer.

pub(crate) mod budget;
mod handshake;
mod link;
pub(crate) mod memory;
mod reader;
pub(crate) mod tcp;
#[cfg(feature = "tls")]
pub(crate) mod tls;
mod turns;
pub(crate) mod unix;
mod writer;

pub use link::{Address, Connector, Credentials, Link, Listener, Peer, ReadHalf, WriteHalf};

pub(crate) use handshake::handshake;
pub(crate) use reader::{FrameReader, Incoming};
pub(crate) use turns::{CLIENT_ALONE, SERVER_ALONE, SERVER_ALONE_WRITING, Turns};
pub(crate) use writer::{
    BACKLOG_LIMIT, DIRECT_WRITE, Lane, Outbox, Outgoing, Pending, WeakOutbox, Writer, start_writer,
    start_writer_on,
};
