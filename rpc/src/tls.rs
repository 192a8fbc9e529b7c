//! TLS and mutual TLS over TCP (feature `tls`), on [rustls] with the *ring*
//! crypto provider.
//!
//! A server serves TLS with [`Server::builder().tls(config)`](crate::server::Builder::tls)
//! before [`bind`](crate::server::Builder::bind); a client connects with
//! [`Channel::connect_tls`](crate::Channel::connect_tls) (or
//! [`Channel::builder().connect_tls(..)`](crate::client::Builder::connect_tls)),
//! and a balanced channel with
//! [`Balanced::tls`](crate::client::Balanced::tls). Reconnects, limits,
//! deadlines and shutdown work as over plain TCP: TLS only wraps the stream.
//!
//! ```no_run
//! # #[rpc::service] trait Echo { async fn echo(&self, s: String) -> String; }
//! # struct E; impl Echo for E { async fn echo(&self, s: String) -> String { s } }
//! # async fn run() -> Result<(), rpc::Error> {
//! // The server: its certificate chain and key, from PEM files.
//! let config = rpc::tls::server_config_from_pem("server.crt", "server.key")?;
//! let server = rpc::Server::builder()
//!     .add_service(EchoServer::new(E))
//!     .tls(config)
//!     .bind("127.0.0.1:4433")
//!     .await?;
//!
//! // The client: the CA that signed the server's certificate, and the name
//! // the certificate is for.
//! let roots = rpc::tls::certificates_from_pem("ca.crt")?;
//! let config = rpc::tls::client_config(roots)?;
//! let channel = rpc::Channel::connect_tls("127.0.0.1:4433", config, "localhost").await?;
//! let echo = EchoClient::new(channel);
//! assert_eq!(echo.echo("hi".into()).await?, "hi");
//! # Ok(()) }
//! ```
//!
//! # Mutual TLS
//!
//! A server built with [`mtls_server_config`] (or any `ServerConfig` with a
//! client certificate verifier, such as rustls's `WebPkiClientVerifier`)
//! refuses clients without a certificate its roots signed, at the TLS
//! handshake. A handler sees the client's chain, DER-encoded, leaf first:
//! `rpc::context::current().peer().certificates()` (see
//! [`Peer::Tls`](crate::transport::Peer::Tls)). Clients present theirs with
//! [`mtls_client_config`].
//!
//! # Configs of your own
//!
//! Any `rustls::ServerConfig` and `rustls::ClientConfig` will do; build
//! them with the rustls this module re-exports ([`rustls`]), so that the
//! versions match. The helpers here set the *ring* provider explicitly on
//! each config (`builder_with_provider`), never rustls's process-wide
//! default: so they work whether or not another crate in the build brings
//! a second provider (aws-lc-rs), which would leave rustls unable to pick a
//! default. Do the same in configs of your own: [`provider()`] gives it.
//!
//! # Errors
//!
//! A client that does not trust the server's certificate fails to connect
//! with an [`Error::Io`] whose message gives the reason ("the TLS handshake
//! failed: invalid peer certificate: UnknownIssuer", or `NotValidForName`,
//! `Expired`); the TLS handshake is part of opening the connection, so it is
//! bounded by the channel's connect timeout. A plaintext client of a TLS
//! server is told "the server answered with TLS; connect with TLS"; a TLS
//! client of a plaintext server "the server did not answer the TLS
//! handshake; does it serve TLS?". On the server, a failed TLS handshake
//! costs only that connection (it runs in the connection's own task, within
//! the server's handshake timeout) and is logged with its reason.

use std::path::Path;
use std::sync::Arc;

/// The rustls this crate is built with: build configs with it.
pub use rustls;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::Error;

/// The *ring* crypto provider, which every config this module builds uses.
/// Pass it to `ServerConfig::builder_with_provider` or
/// `ClientConfig::builder_with_provider` in configs of your own.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config presenting `chain` (the server's certificate first, then
/// any intermediates) with its private key `key`; no client certificates.
///
/// # Errors
///
/// [`Error::Config`] if rustls refuses the key (unsupported, or not the
/// certificate's).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, Error> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error("the TLS server config"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(config_error("the TLS server's certificate and key"))
}

/// [`server_config`] from PEM files: the certificate chain (leaf first) and
/// the private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
///
/// [`Error::Io`] if a file cannot be read; [`Error::Config`] if it holds no
/// certificate or key, or rustls refuses them.
pub fn server_config_from_pem(
    cert_path: impl AsRef<Path>,
    key_path: impl AsRef<Path>,
) -> Result<ServerConfig, Error> {
    server_config(
        certificates_from_pem(cert_path)?,
        private_key_from_pem(key_path)?,
    )
}

/// A server config for mutual TLS: it presents `chain` and `key` as
/// [`server_config`] does, and requires every client to present a
/// certificate that one of `client_roots` signed. A client without one is
/// refused at the TLS handshake.
///
/// # Errors
///
/// [`Error::Config`] if a root is not a usable CA certificate, or rustls
/// refuses the key.
pub fn mtls_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Vec<CertificateDer<'static>>,
) -> Result<ServerConfig, Error> {
    let roots = Arc::new(root_store(client_roots)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(config_error("the TLS client certificate verifier"))?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error("the TLS server config"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(config_error("the TLS server's certificate and key"))
}

/// A client config that trusts the servers whose certificates one of
/// `roots` signed (your CA's certificate, or a self-signed server's own).
///
/// # Errors
///
/// [`Error::Config`] if no root is given or one is not a certificate.
pub fn client_config(roots: Vec<CertificateDer<'static>>) -> Result<ClientConfig, Error> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error("the TLS client config"))?
        .with_root_certificates(root_store(roots)?)
        .with_no_client_auth())
}

/// [`client_config`] that also presents the client's own certificate
/// `chain` (leaf first) and `key`, for servers that require one (mutual
/// TLS).
///
/// # Errors
///
/// As [`client_config`]; also if rustls refuses the key.
pub fn mtls_client_config(
    roots: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, Error> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error("the TLS client config"))?
        .with_root_certificates(root_store(roots)?)
        .with_client_auth_cert(chain, key)
        .map_err(config_error("the TLS client's certificate and key"))
}

/// Every certificate in the PEM file at `path`, in order.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read; [`Error::Config`] if it is
/// not PEM or holds no certificate.
pub fn certificates_from_pem(
    path: impl AsRef<Path>,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let path = path.as_ref();
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(e, path, "certificates"))?;
    if certificates.is_empty() {
        return Err(pem_error(pem::Error::NoItemsFound, path, "certificates"));
    }
    Ok(certificates)
}

/// The first private key in the PEM file at `path` (PKCS#8, PKCS#1 or
/// SEC1).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read; [`Error::Config`] if it is
/// not PEM or holds no private key.
pub fn private_key_from_pem(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, Error> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(e, path, "a private key"))
}

fn root_store(roots: Vec<CertificateDer<'static>>) -> Result<RootCertStore, Error> {
    if roots.is_empty() {
        return Err(Error::Config(
            "no root certificate to trust: give the CA certificate that signed the peer's".into(),
        ));
    }
    let mut store = RootCertStore::empty();
    for root in roots {
        store
            .add(root)
            .map_err(config_error("a TLS root certificate"))?;
    }
    Ok(store)
}

/// Turns a rustls error about `what` into an [`Error::Config`].
fn config_error<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Config(format!("{what}: {e}"))
}

/// A PEM file that could not be read ([`Error::Io`]) or that held no
/// `what` ([`Error::Config`]).
fn pem_error(e: pem::Error, path: &Path, what: &str) -> Error {
    let path = path.display();
    match e {
        pem::Error::Io(e) => Error::io(format!("reading {what} from {path}"), e),
        pem::Error::NoItemsFound => Error::Config(format!("{path} holds no PEM {what}")),
        e => Error::Config(format!("reading {what} from {path}: {e}")),
    }
}
