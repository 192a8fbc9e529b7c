//! TCP: the default transport. Both sides set `TCP_NODELAY`, so a lone call
//! never waits for Nagle's algorithm.

use std::future::Ready;
use std::io;
use std::net::SocketAddr;

use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};

use super::{Address, Connector, Link, Listener, Peer};

/// Connects to the first of its addresses that accepts (a name may resolve
/// to several). The addresses are resolved once, when the channel is made.
#[derive(Debug)]
pub(crate) struct TcpConnector {
    pub(crate) addrs: Vec<SocketAddr>,
}

impl TcpConnector {
    /// A stream to the first address that accepts, with `TCP_NODELAY` set,
    /// and that address. (TLS opens its streams here too.)
    pub(crate) async fn open(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let mut last = None;
        for &addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok((stream, addr));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))
    }
}

impl Connector for TcpConnector {
    fn connect(&self) -> BoxFuture<'_, io::Result<Link>> {
        Box::pin(async move {
            let (stream, addr) = self.open().await?;
            let (read, write) = stream.into_split();
            Ok(Link::from_halves(
                Box::new(read),
                Box::new(write),
                Peer::Tcp(addr),
            ))
        })
    }

    fn address(&self) -> Address {
        match self.addrs.first() {
            Some(&addr) => Address::Tcp(addr),
            None => Address::Other("no address".into()),
        }
    }
}

impl Listener for TcpListener {
    type SetUp = Ready<io::Result<Link>>;

    async fn accept(&mut self) -> io::Result<Self::SetUp> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // A connection that cannot take the option is still served.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let link = Link::from_halves(Box::new(read), Box::new(write), Peer::Tcp(peer));
        Ok(std::future::ready(Ok(link)))
    }

    fn address(&self) -> Address {
        match self.local_addr() {
            Ok(addr) => Address::Tcp(addr),
            Err(e) => Address::Other(format!("tcp (address unknown: {e})")),
        }
    }
}
