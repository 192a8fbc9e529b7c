//! In-memory pipes, no sockets: for users' own tests. A server serves under a
//! name in this process and channels connect to that name, with the same
//! semantics as a TCP port: one server per name at a time, a connect to a
//! name nobody serves is refused, and once the server shuts down the name is
//! free again (so reconnecting, shutdown and every limit behave as over TCP).

use std::collections::HashMap;
use std::future::Ready;
use std::io;
use std::sync::{Mutex, OnceLock};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Address, Connector, Link, Listener, Peer};

/// Bytes each direction of a pipe buffers before its writer waits, as a
/// socket's buffer would.
const PIPE_BUFFER: usize = 256 * 1024;
/// Links opened and not accepted yet, as a listen backlog.
const BACKLOG: usize = 1024;

type Names = Mutex<HashMap<String, mpsc::Sender<Link>>>;

/// The names served in this process.
fn names() -> &'static Names {
    static NAMES: OnceLock<Names> = OnceLock::new();
    NAMES.get_or_init(Names::default)
}

/// Connects to the in-memory server serving `name`.
#[derive(Debug)]
pub(crate) struct MemoryConnector {
    pub(crate) name: String,
}

impl Connector for MemoryConnector {
    fn connect(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            let server = names().lock().unwrap().get(&self.name).cloned();
            let refused = || {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("no in-memory server is serving {:?}", self.name),
                )
            };
            let server = server.ok_or_else(refused)?;
            let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
            server
                .send(Link::new(theirs, Peer::Memory))
                .await
                .map_err(|_| refused())?;
            Ok(Link::new(ours, Peer::Memory))
        })
    }

    fn address(&self) -> Address {
        Address::Memory(self.name.clone())
    }
}

/// Serves a name; frees it when dropped.
#[derive(Debug)]
pub(crate) struct MemoryListener {
    name: String,
    links: mpsc::Receiver<Link>,
    /// The sender the registry holds, to know our entry from a later one.
    ours: mpsc::Sender<Link>,
}

impl MemoryListener {
    /// Takes `name`; fails if another server in this process serves it.
    pub(crate) fn bind(name: String) -> io::Result<Self> {
        let mut names = names().lock().unwrap();
        if names.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("an in-memory server is already serving {name:?}"),
            ));
        }
        let (tx, links) = mpsc::channel(BACKLOG);
        names.insert(name.clone(), tx.clone());
        Ok(MemoryListener {
            name,
            links,
            ours: tx,
        })
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        let mut names = names().lock().unwrap_or_else(|e| e.into_inner());
        // Only our own entry: a new server may have the name by now.
        if names
            .get(&self.name)
            .is_some_and(|s| s.same_channel(&self.ours))
        {
            names.remove(&self.name);
        }
    }
}

/// The next link handed to an in-process listener, set up already. Never
/// ends: the listener holds a sender of its channel itself.
pub(crate) async fn next_link(
    links: &mut mpsc::Receiver<Link>,
) -> io::Result<Ready<io::Result<Link>>> {
    match links.recv().await {
        Some(link) => Ok(std::future::ready(Ok(link))),
        None => std::future::pending().await,
    }
}

impl Listener for MemoryListener {
    type SetUp = Ready<io::Result<Link>>;

    async fn accept(&mut self) -> io::Result<Self::SetUp> {
        next_link(&mut self.links).await
    }

    fn address(&self) -> Address {
        Address::Memory(self.name.clone())
    }
}
