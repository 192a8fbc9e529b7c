//! Streams in every position: returned (alone or inside a `Result`), taken
//! as an argument, and both; spelled `rpc::Stream`, `::rpc::Stream` or a
//! bare `Stream` brought in by `use`. The client's methods take and return
//! the same types, and the server describes each method's streams.

#![deny(warnings)]

use rpc::Stream;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event(String);

#[derive(Debug, Serialize, Deserialize)]
pub struct MyError;

#[derive(Debug, Serialize, Deserialize)]
pub struct Chunk(Vec<u8>);

#[derive(Debug, Serialize, Deserialize)]
pub enum UploadError {
    TooLarge,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Msg(String);

#[rpc::service]
pub trait Feed {
    /// Server streaming.
    async fn watch(&self, prefix: String) -> rpc::Stream<Event>;
    async fn watch2(&self, prefix: String) -> Result<rpc::Stream<Event>, MyError>;
    /// Client streaming, after an argument of the tuple and before another.
    async fn upload(
        &self,
        name: String,
        chunks: rpc::Stream<Chunk>,
        #[rpc(key)] shard: u32,
    ) -> Result<u64, UploadError>;
    async fn chat(&self, inbox: ::rpc::Stream<Msg>) -> ::rpc::Stream<Msg>;
    #[rpc(no_deadline)]
    async fn follow(&self) -> Stream<Event>;
    async fn sink(&self, items: Stream<u64>);
    async fn count(&self, items: Stream<u64>) -> u64;
    async fn bytes(&self, items: Stream<Vec<u8>>) -> Vec<u8>;
    #[rpc(idempotent, no_deadline)]
    async fn echo(&self, items: Stream<u64>) -> std::result::Result<Stream<u64>, String>;
}

struct Impl;

impl Feed for Impl {
    async fn watch(&self, prefix: String) -> rpc::Stream<Event> {
        rpc::Stream::new(futures::stream::iter([Event(prefix)]))
    }
    async fn watch2(&self, prefix: String) -> Result<rpc::Stream<Event>, MyError> {
        if prefix.is_empty() {
            return Err(MyError);
        }
        Ok(self.watch(prefix).await)
    }
    async fn upload(&self, _: String, _: rpc::Stream<Chunk>, _: u32) -> Result<u64, UploadError> {
        Err(UploadError::TooLarge)
    }
    async fn chat(&self, inbox: rpc::Stream<Msg>) -> rpc::Stream<Msg> {
        inbox
    }
    async fn follow(&self) -> Stream<Event> {
        rpc::Stream::new(futures::stream::empty())
    }
    async fn sink(&self, _: Stream<u64>) {}
    async fn count(&self, _: Stream<u64>) -> u64 {
        0
    }
    async fn bytes(&self, _: Stream<Vec<u8>>) -> Vec<u8> {
        Vec::new()
    }
    async fn echo(&self, items: Stream<u64>) -> Result<Stream<u64>, String> {
        Ok(items)
    }
}

/// Every client method, with its exact types.
#[allow(dead_code)]
async fn client_calls(client: &FeedClient, up: Stream<Chunk>) -> Result<(), rpc::Error> {
    let _: Stream<Event> = client.watch("a/".into()).await?;
    let _: Result<Stream<Event>, MyError> = client.watch2("a/".into()).await?;
    let _: Result<u64, UploadError> = client.upload("f".into(), up, 3).await?;
    let inbox = Stream::new(futures::stream::iter([Msg("hi".into())]));
    let _: Stream<Msg> = client.chat(inbox).await?;
    let _: Stream<Event> = client.follow().await?;
    let numbers = || Stream::new(futures::stream::iter([1u64, 2]));
    client.sink(numbers()).await?;
    let _: u64 = client.count(numbers()).await?;
    let _: Vec<u8> = client.bytes(Stream::new(futures::stream::empty())).await?;
    let _: Result<Stream<u64>, String> = client.echo(numbers()).await?;
    // The futures own what they send: they can be spawned.
    let spawned = tokio::spawn(client.chat(Stream::new(futures::stream::empty())));
    let _: Stream<Msg> = spawned.await.unwrap()?;
    Ok(())
}

fn main() {
    use rpc::__private::{MethodDesc, Service};
    let server = FeedServer::new(Impl);
    let streams = |name: &str| -> (bool, bool, bool) {
        let m: &MethodDesc = server.methods().iter().find(|m| m.name == name).unwrap();
        (m.request_stream, m.response_stream, m.no_deadline)
    };
    assert_eq!(streams("Feed.watch"), (false, true, false));
    assert_eq!(streams("Feed.watch2"), (false, true, false));
    assert_eq!(streams("Feed.upload"), (true, false, false));
    assert_eq!(streams("Feed.chat"), (true, true, false));
    assert_eq!(streams("Feed.follow"), (false, true, true));
    assert_eq!(streams("Feed.sink"), (true, false, false));
    assert_eq!(streams("Feed.echo"), (true, true, true));
}
