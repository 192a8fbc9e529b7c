//! Unix domain sockets: a server reachable only from this machine, whose
//! handlers see the peer process's credentials (uid, gid, pid).

use std::io;
use std::path::PathBuf;

use futures::future::BoxFuture;
use tokio::net::UnixStream;

use super::{Address, Connector, Credentials, Link, Listener, Peer};

/// Connects to the socket at `path`.
#[derive(Debug)]
pub(crate) struct UnixConnector {
    pub(crate) path: PathBuf,
}

impl Connector for UnixConnector {
    fn connect(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move { Ok(link(UnixStream::connect(&self.path).await?)) })
    }

    fn address(&self) -> Address {
        Address::Unix(self.path.clone())
    }
}

fn link(stream: UnixStream) -> Link {
    let credentials = stream.peer_cred().ok().map(|c| Credentials {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid(),
    });
    let (read, write) = stream.into_split();
    Link::from_halves(Box::new(read), Box::new(write), Peer::Unix(credentials))
}

/// A listening Unix socket that removes its file when it closes (the server
/// shut down), so the path can be bound again.
#[derive(Debug)]
pub(crate) struct UnixListener {
    inner: tokio::net::UnixListener,
    path: PathBuf,
}

impl UnixListener {
    /// Binds `path`; fails if a file is there already (a server still
    /// running, or one that crashed: remove it first).
    pub(crate) fn bind(path: PathBuf) -> io::Result<Self> {
        let inner = tokio::net::UnixListener::bind(&path)?;
        Ok(UnixListener { inner, path })
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Listener for UnixListener {
    async fn accept(&mut self) -> io::Result<Link> {
        let (stream, _) = self.inner.accept().await?;
        Ok(link(stream))
    }

    fn address(&self) -> Address {
        Address::Unix(self.path.clone())
    }
}
