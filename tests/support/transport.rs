//! One way to serve and to connect over each transport, so that a test body
//! written once runs over TCP, Unix domain sockets and in-memory pipes:
//!
//! ```ignore
//! over_all_transports!(a_call_round_trips);
//! async fn a_call_round_trips(transport: Transport) {
//!     let (server, channel) = transport.start(with_services(rpc::Server::builder())).await;
//!     ...
//! }
//! ```
//!
//! makes the tests `a_call_round_trips::{tcp, unix, memory}`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use rpc::transport::Address;

/// A transport a test runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Unix,
    Memory,
}

impl Transport {
    /// An address of this transport that nothing serves yet and no other
    /// test will use: `127.0.0.1:0` (the OS picks a port when it is bound),
    /// a new socket path, a new in-memory name.
    pub fn fresh_address(self) -> Address {
        match self {
            Transport::Tcp => Address::Tcp("127.0.0.1:0".parse().unwrap()),
            Transport::Unix => Address::Unix(socket_path()),
            Transport::Memory => Address::Memory(format!("test-{}", next_id())),
        }
    }

    /// An address where nothing serves: for TCP a port that was bound and
    /// closed again, otherwise a fresh address.
    pub fn unserved_address(self) -> Address {
        match self {
            Transport::Tcp => {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                Address::Tcp(listener.local_addr().unwrap())
            }
            Transport::Unix | Transport::Memory => self.fresh_address(),
        }
    }

    /// Serves `builder` (its services added already) at a fresh address.
    pub async fn serve(self, builder: rpc::server::Builder) -> rpc::ServerHandle {
        let address = self.fresh_address();
        serve_at(builder, &address)
            .await
            .unwrap_or_else(|e| panic!("serving at {address}: {e}"))
    }

    /// [`serve`](Self::serve), and a channel to the server with default settings.
    pub async fn start(self, builder: rpc::server::Builder) -> (rpc::ServerHandle, rpc::Channel) {
        let server = self.serve(builder).await;
        let channel = connect(server.address()).await;
        (server, channel)
    }
}

/// Serves `builder` at `address`, whatever its transport.
pub async fn serve_at(
    builder: rpc::server::Builder,
    address: &Address,
) -> Result<rpc::ServerHandle, rpc::Error> {
    match address {
        Address::Tcp(addr) => builder.bind(*addr).await,
        Address::Unix(path) => builder.bind_unix(path.clone()).await,
        Address::Memory(name) => builder.serve_memory(name.clone()),
        other => panic!("no test transport for {other}"),
    }
}

/// A channel with default settings to the server at `address`.
pub async fn connect(address: &Address) -> rpc::Channel {
    connect_with(rpc::Channel::builder(), address)
        .await
        .unwrap_or_else(|e| panic!("connecting to {address}: {e}"))
}

/// A channel with `builder`'s settings to the server at `address`.
pub async fn connect_with(
    builder: rpc::client::Builder,
    address: &Address,
) -> Result<rpc::Channel, rpc::Error> {
    match address {
        Address::Tcp(addr) => builder.connect(*addr).await,
        Address::Unix(path) => builder.connect_unix(path.clone()).await,
        Address::Memory(name) => builder.connect_memory(name.clone()).await,
        other => panic!("no test transport for {other}"),
    }
}

/// A number no other address of this process has.
fn next_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, SeqCst)
}

/// A socket path no other test uses, in cargo's directory for integration
/// tests' files (or the temp dir if that is too deep for a socket address,
/// which holds 108 bytes).
fn socket_path() -> PathBuf {
    let name = format!("rpc-{}-{}.sock", std::process::id(), next_id());
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&name);
    let path = if path.as_os_str().len() < 100 {
        path
    } else {
        std::env::temp_dir().join(name)
    };
    // Only a crashed earlier process with our pid can have left a file here.
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs the async test body `$name(transport: Transport)` once per
/// transport, as the tests `$name::tcp`, `$name::unix` and `$name::memory`.
/// Arguments after the name go to `#[tokio::test(..)]`
/// (`flavor = "multi_thread", worker_threads = 2`).
// Unused by the test files that run over TCP only.
#[allow(unused_macros)]
macro_rules! over_all_transports {
    ($name:ident $(, $($test:tt)*)?) => {
        mod $name {
            #[tokio::test($($($test)*)?)]
            async fn tcp() {
                super::$name($crate::support::transport::Transport::Tcp).await
            }

            #[tokio::test($($($test)*)?)]
            async fn unix() {
                super::$name($crate::support::transport::Transport::Unix).await
            }

            #[tokio::test($($($test)*)?)]
            async fn memory() {
                super::$name($crate::support::transport::Transport::Memory).await
            }
        }
    };
}

pub(crate) use over_all_transports;
