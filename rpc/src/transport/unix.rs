//! Unix domain sockets: a server reachable only from this machine, whose
//! handlers see the peer process's credentials (uid, gid, pid).

use std::future::Ready;
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
/// shut down), so the path can be bound again: its own file only, known by
/// device and inode, not one a newer server bound at the same path since.
#[derive(Debug)]
pub(crate) struct UnixListener {
    inner: tokio::net::UnixListener,
    path: PathBuf,
    /// The socket file's device and inode, once bound.
    file: Option<(u64, u64)>,
}

/// The device and inode of the file at `path`.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl UnixListener {
    /// Binds `path`; fails if a file is there already (a server still
    /// running, or the file of one that crashed).
    pub(crate) fn bind(path: PathBuf) -> io::Result<Self> {
        let inner = tokio::net::UnixListener::bind(&path)?;
        let file = file_id(&path);
        Ok(UnixListener { inner, path, file })
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        if self.file.is_some() && file_id(&self.path) == self.file {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Listener for UnixListener {
    type SetUp = Ready<io::Result<Link>>;

    async fn accept(&mut self) -> io::Result<Self::SetUp> {
        let (stream, _) = self.inner.accept().await?;
        Ok(std::future::ready(Ok(link(stream))))
    }

    fn address(&self) -> Address {
        Address::Unix(self.path.clone())
    }
}
