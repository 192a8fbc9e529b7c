//! Streams, in one process: a server streams items to a client, a client
//! streams chunks to the server, and a chat streams both ways (the client
//! finishes sending and reads on).
//!
//! ```text
//! cargo run --example streaming
//! ```

use futures::StreamExt;
use rpc_suite::feed::{FeedClient, FeedImpl, FeedServer};

#[tokio::main]
async fn main() -> Result<(), rpc::Error> {
    let server = rpc::Server::builder()
        .add_service(FeedServer::new(FeedImpl::default()))
        .bind("127.0.0.1:0")
        .await?;
    let feed = FeedClient::connect(server.local_addr()).await?;

    // Server streaming: a stream of results, items then (maybe) an error.
    let mut items = feed.watch(5, 16).await?;
    while let Some(item) = items.next().await {
        println!("watch: item {}", item?.seq);
    }

    // Client streaming: any stream of items, here an iterator's.
    let chunks = rpc::Stream::iter((0..10).map(|_| vec![0u8; 64 << 10]));
    let counted = feed.upload(chunks).await?;
    println!("upload: the server counted {counted} bytes");

    // Both ways, through a channel whose `send` waits for the consumer.
    let (tx, inbox) = rpc::stream::channel();
    let mut replies = feed.chat(inbox).await?;
    for word in ["hello", "world"] {
        tx.send(word.to_string()).await.expect("the call is open");
        println!("chat: {}", replies.next().await.expect("an echo")?);
    }
    drop(tx); // finished sending; the server's stream goes on
    while let Some(reply) = replies.next().await {
        println!("chat: {}", reply?);
    }

    server.shutdown().await;
    Ok(())
}
