//! The seam between the library and the bytes: a [`Link`] is one open byte
//! stream to a peer; a [`Connector`] makes new links (the client calls it for
//! its first connection and for every reconnect); a [`Listener`] accepts them
//! (the server's accept loop). TCP, Unix sockets and in-memory pipes are the
//! three shipped here. A transport of its own (TLS, say) is one more pair: a
//! connector that opens a stream and runs its client handshake, and a
//! listener whose set-up step runs the server's.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// The read half of a [`Link`].
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a [`Link`].
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// One open byte stream to a peer, in two halves (a connection reads and
/// writes from two tasks at once), and who is at the other end.
pub struct Link {
    pub(crate) read: ReadHalf,
    pub(crate) write: WriteHalf,
    pub(crate) peer: Peer,
}

impl Link {
    /// A link from halves the transport split without a lock (as TCP's
    /// `into_split` does).
    pub fn from_halves(read: ReadHalf, write: WriteHalf, peer: Peer) -> Link {
        Link { read, write, peer }
    }

    /// A link over a stream that cannot be split on its own (a TLS stream,
    /// say): its halves share it through `tokio::io::split`.
    pub fn new<S>(stream: S, peer: Peer) -> Link
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        Link {
            read: Box::new(read),
            write: Box::new(write),
            peer,
        }
    }

    /// Who is at the other end.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Who is at the other end of a connection, as far as its transport knows.
/// A handler reads it from [`rpc::context::current()`](crate::context::current).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// A TCP peer, by its address.
    Tcp(SocketAddr),
    /// A peer over TLS on TCP (feature `tls`): its address, and the
    /// certificate chain it presented in the TLS handshake.
    Tls {
        /// The peer's TCP address.
        addr: SocketAddr,
        /// The peer's certificates, DER-encoded, its own (the leaf) first.
        /// A server sees the client's chain only under mutual TLS (a client
        /// without a certificate gives an empty one); a client always sees
        /// the server's. Plain bytes, so that `Peer` does not tie its users
        /// to a version of rustls: parse them with any X.509 crate.
        certificates: Arc<[Vec<u8>]>,
    },
    /// A peer on a Unix domain socket: its process's credentials as the
    /// kernel reported them when it connected (`None` where the platform
    /// cannot say).
    Unix(Option<Credentials>),
    /// The other end of an in-memory pipe, in this process.
    Memory,
    /// A peer of a transport outside this crate, as it describes itself.
    Other(String),
}

impl Peer {
    /// The peer's socket address, for transports that have one (TCP, and
    /// TLS over it).
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            Peer::Tcp(addr) | Peer::Tls { addr, .. } => Some(*addr),
            _ => None,
        }
    }

    /// The certificate chain the peer presented in a TLS handshake,
    /// DER-encoded, leaf first: empty for other transports, and for a TLS
    /// client that sent none.
    pub fn certificates(&self) -> &[Vec<u8>] {
        match self {
            Peer::Tls { certificates, .. } => certificates,
            _ => &[],
        }
    }

    /// The peer process's credentials, for transports that know them (Unix
    /// domain sockets).
    pub fn credentials(&self) -> Option<Credentials> {
        match self {
            Peer::Unix(credentials) => *credentials,
            _ => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Tls { addr, certificates } => match certificates.len() {
                0 => write!(f, "{addr} (TLS)"),
                1 => write!(f, "{addr} (TLS, 1 certificate)"),
                n => write!(f, "{addr} (TLS, {n} certificates)"),
            },
            Peer::Unix(Some(c)) => write!(f, "unix peer (uid {}, gid {})", c.uid, c.gid),
            Peer::Unix(None) => f.write_str("unix peer"),
            Peer::Memory => f.write_str("in-memory peer"),
            Peer::Other(what) => f.write_str(what),
        }
    }
}

// By hand, so that a TLS peer's certificates show as their sizes rather
// than as thousands of numbers in every log line that debug-prints a peer.
impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => f.debug_tuple("Tcp").field(addr).finish(),
            Peer::Tls { addr, certificates } => {
                let sizes: Vec<String> = certificates
                    .iter()
                    .map(|c| format!("<{} bytes of DER>", c.len()))
                    .collect();
                f.debug_struct("Tls")
                    .field("addr", addr)
                    .field("certificates", &sizes)
                    .finish()
            }
            Peer::Unix(credentials) => f.debug_tuple("Unix").field(credentials).finish(),
            Peer::Memory => f.write_str("Memory"),
            Peer::Other(what) => f.debug_tuple("Other").field(what).finish(),
        }
    }
}

/// A Unix-socket peer's process, as the kernel reports it (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// The user id of the peer process.
    pub uid: u32,
    /// The group id of the peer process.
    pub gid: u32,
    /// The process id, where the platform reports it.
    pub pid: Option<i32>,
}

/// Where a server serves, or where a client connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A TCP address.
    Tcp(SocketAddr),
    /// The path of a Unix domain socket.
    Unix(PathBuf),
    /// The name of an in-memory server in this process (see
    /// [`Server::builder()...serve_memory`](crate::server::Builder::serve_memory)).
    Memory(String),
    /// A transport outside this crate, as it describes its address.
    Other(String),
}

impl Address {
    /// The TCP address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(addr) => Some(*addr),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Memory(name) => write!(f, "memory:{name}"),
            Address::Other(what) => f.write_str(what),
        }
    }
}

/// Makes new links to one server: a channel calls it for its first
/// connection and again for every reconnect, so a channel over any transport
/// reconnects the same way. The handshake, the connect timeout and the
/// backoff are the channel's; a connector only opens the stream.
pub trait Connector: Send + Sync + 'static {
    /// Opens a new link.
    fn connect(&self) -> BoxFuture<'_, io::Result<Link>>;

    /// Where it connects, for error messages.
    fn address(&self) -> Address;
}

/// Accepts connections for a server: its accept loop calls [`accept`] until
/// the server shuts down, and then drops the listener.
///
/// Accepting has two stages, so that one slow peer never holds up the
/// others: [`accept`] returns as soon as a peer has connected, with a future
/// ([`Listener::SetUp`]) that finishes setting the connection up (a TLS
/// handshake, say) and yields its [`Link`]. The server runs that future in
/// the connection's own task, within the handshake timeout. Transports with
/// nothing to set up return a ready future.
///
/// [`accept`]: Listener::accept
pub trait Listener: Send + 'static {
    /// What is left to set a connection up, run in its own task.
    type SetUp: Future<Output = io::Result<Link>> + Send + 'static;

    /// The next connection a peer opened. An error here (out of file
    /// descriptors, say) is logged and waited out by the accept loop, never
    /// fatal. It must be cancel-safe: the loop drops it when the server
    /// starts shutting down.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::SetUp>> + Send;

    /// Where it listens.
    fn address(&self) -> Address;
}
