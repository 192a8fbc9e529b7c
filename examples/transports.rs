//! One service over the three transports: TCP, a Unix domain socket (the
//! handler sees the caller's uid, gid and pid) and in-memory pipes (no
//! socket at all: what a test of your own would use).
//!
//! ```text
//! cargo run --example transports
//! ```

use rpc::transport::Peer;

/// Tells callers who they are, as the server sees them.
#[rpc::service]
pub trait Mirror {
    /// How the server sees the caller.
    async fn who_am_i(&self) -> String;
}

struct Reflect;

impl Mirror for Reflect {
    async fn who_am_i(&self) -> String {
        match rpc::context::current().peer() {
            Peer::Tcp(addr) => format!("a TCP peer at {addr}"),
            Peer::Unix(Some(c)) => format!("uid {}, gid {}, pid {:?}", c.uid, c.gid, c.pid),
            Peer::Memory => "the other end of an in-memory pipe".to_string(),
            other => format!("{other}"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let tcp = rpc::Server::builder()
        .add_service(MirrorServer::new(Reflect))
        .bind("127.0.0.1:0")
        .await?;
    let path = std::env::temp_dir().join(format!("rpc-example-{}.sock", std::process::id()));
    let unix = rpc::Server::builder()
        .add_service(MirrorServer::new(Reflect))
        .bind_unix(&path)
        .await?;
    let memory = rpc::Server::builder()
        .add_service(MirrorServer::new(Reflect))
        .serve_memory("mirror")?;

    let channels = [
        rpc::Channel::connect(tcp.local_addr()).await?,
        rpc::Channel::connect_unix(&path).await?,
        rpc::Channel::connect_memory("mirror").await?,
    ];
    for channel in channels {
        let address = channel.address();
        let mirror = MirrorClient::new(channel);
        println!("{address}: the server sees {}", mirror.who_am_i().await?);
    }

    for server in [tcp, unix, memory] {
        let address = server.address().clone();
        server.shutdown().await;
        println!("{address}: shut down");
    }
    println!("the socket file is gone: {}", !path.exists());
    Ok(())
}
