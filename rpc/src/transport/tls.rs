//! TLS over TCP (feature `tls`): a [`Connector`] that opens a TCP stream and
//! runs the client's TLS handshake over it, and a [`Listener`] whose set-up
//! step runs the server's, so that a slow or hostile peer holds up only its
//! own connection, within the server's handshake timeout. Everything above
//! the link (the rpc handshake, reconnects, limits, shutdown) is as over
//! plain TCP.
//!
//! A failed handshake is an I/O error whose message says why, in rustls's
//! words ("invalid peer certificate: UnknownIssuer"), or, when the other
//! side closed instead of answering, that it may not serve TLS at all.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::net::TcpListener;

use super::tcp::TcpConnector;
use super::{Address, Connector, Link, Listener, Peer};
use crate::Error;

/// Opens TCP streams as [`TcpConnector`] does, and runs TLS over each.
pub(crate) struct TlsConnector {
    tcp: TcpConnector,
    tls: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("addrs", &self.tcp.addrs)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    pub(crate) fn new(
        addrs: Vec<SocketAddr>,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Self {
        TlsConnector {
            tcp: TcpConnector { addrs },
            tls: tokio_rustls::TlsConnector::from(config),
            server_name,
        }
    }
}

impl Connector for TlsConnector {
    fn connect(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            let (stream, addr) = self.tcp.open().await?;
            let tls = self
                .tls
                .connect(self.server_name.clone(), stream)
                .await
                .map_err(client_handshake_failed)?;
            let certificates = chain(tls.get_ref().1.peer_certificates());
            Ok(Link::new(tls, Peer::Tls { addr, certificates }))
        })
    }

    /// The TCP address: TLS changes how the bytes travel, not where.
    fn address(&self) -> Address {
        self.tcp.address()
    }
}

/// A server name as rustls checks the server's certificate against it.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(name.to_owned()).map_err(|_| {
        Error::Config(format!(
            "{name:?} is not a TLS server name: give the DNS name or the IP address \
             that the server's certificate names"
        ))
    })
}

/// The client's handshake failed: rustls's reason if it gave one. A server
/// that closes instead of answering most likely does not serve TLS (a
/// plaintext rpc server drops a peer whose first bytes are not a Hello), so
/// the message says so rather than "unexpected end of file".
fn client_handshake_failed(e: io::Error) -> io::Error {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let message = match rustls_error(&e) {
        Some(reason) => format!("the TLS handshake failed: {reason}"),
        None if matches!(
            e.kind(),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
        ) =>
        {
            format!("the server did not answer the TLS handshake; does it serve TLS? ({e})")
        }
        None => format!("the TLS handshake failed: {e}"),
    };
    io::Error::new(e.kind(), message)
}

/// The server's handshake with the client at `addr` failed; the server logs
/// it. A client whose first bytes are no TLS record at all is most likely a
/// plaintext one (rustls answers it with an alert, which that client's
/// handshake names as TLS).
fn server_handshake_failed(e: io::Error, addr: SocketAddr) -> io::Error {
    let message = match rustls_error(&e) {
        Some(reason @ rustls::Error::InvalidMessage(_)) => format!(
            "the TLS handshake with {addr} failed: {reason}; \
             the client does not speak TLS (a plaintext client?)"
        ),
        Some(reason) => format!("the TLS handshake with {addr} failed: {reason}"),
        None => format!("the TLS handshake with {addr} failed: {e}"),
    };
    io::Error::new(e.kind(), message)
}

/// The rustls error tokio-rustls wrapped in `e`, if it is one.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The peer's certificates as plain DER bytes (see [`Peer::Tls`]).
fn chain(certificates: Option<&[CertificateDer<'_>]>) -> Arc<[Vec<u8>]> {
    certificates
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect()
}

/// Accepts TCP connections and runs the server's TLS handshake on each,
/// in the connection's own task.
pub(crate) struct TlsListener {
    tcp: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        TlsListener {
            tcp,
            tls: tokio_rustls::TlsAcceptor::from(config),
        }
    }
}

impl Listener for TlsListener {
    type SetUp = BoxFuture<'static, io::Result<Link>>;

    async fn accept(&mut self) -> io::Result<Self::SetUp> {
        let (stream, addr) = self.tcp.accept().await?;
        // A connection that cannot take the option is still served.
        let _ = stream.set_nodelay(true);
        let tls = self.tls.clone();
        Ok(Box::pin(async move {
            let tls = tls
                .accept(stream)
                .await
                .map_err(|e| server_handshake_failed(e, addr))?;
            let certificates = chain(tls.get_ref().1.peer_certificates());
            Ok(Link::new(tls, Peer::Tls { addr, certificates }))
        }))
    }

    fn address(&self) -> Address {
        match self.tcp.local_addr() {
            Ok(addr) => Address::Tcp(addr),
            Err(e) => Address::Other(format!("tls (address unknown: {e})")),
        }
    }
}
