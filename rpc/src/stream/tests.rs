//! Streams end to end over the in-memory transport, through a service
//! written by hand against the seam the macro generates code for (the
//! macro's own tests are in `rpc-macros` and the root package's).

use futures::StreamExt;

use crate::client::Method;
use crate::protocol::method_id;
use crate::server::dispatch::{Call, Handler, MethodDesc, Service};
use crate::{Channel, Error, Server, Stream};

const fn desc(name: &'static str, request_stream: bool, response_stream: bool) -> MethodDesc {
    MethodDesc {
        name,
        id: method_id(name),
        request_stream,
        response_stream,
        no_deadline: false,
        fingerprint: method_id(name),
        shape: name,
        args: &[],
        returns: "()",
        idempotent: false,
    }
}

const WATCH: MethodDesc = desc("Feed.watch", false, true);
const UPLOAD: MethodDesc = desc("Feed.upload", true, false);
const ECHO: MethodDesc = desc("Feed.echo", true, true);

struct Feed;

impl Service for Feed {
    fn name(&self) -> &'static str {
        "Feed"
    }

    fn methods(&self) -> &'static [MethodDesc] {
        &[WATCH, UPLOAD, ECHO]
    }

    fn call(&self, method_id: u64, call: Call) -> Option<Handler> {
        Some(match method_id {
            id if id == WATCH.id => Box::pin(async move {
                let (count,): (u64,) = match call.args() {
                    Ok(args) => args,
                    Err(reply) => return reply,
                };
                call.reply_stream(Stream::iter(0..count))
            }),
            id if id == UPLOAD.id => Box::pin(async move {
                let mut chunks = call.stream_arg::<Vec<u8>>();
                let mut total = 0u64;
                while let Some(chunk) = chunks.next().await {
                    total += chunk.map_or(0, |c| c.len() as u64);
                }
                call.reply(&total)
            }),
            id if id == ECHO.id => Box::pin(async move {
                let inbox = call.stream_arg::<u32>();
                call.reply_stream(inbox)
            }),
            _ => return None,
        })
    }
}

fn method(desc: MethodDesc) -> Method {
    Method {
        name: desc.name,
        id: desc.id,
        idempotent: false,
        key: None,
        no_deadline: false,
        fingerprint: desc.fingerprint,
        shape: desc.shape,
    }
}

async fn serve(name: &str) -> (crate::ServerHandle, Channel) {
    let server = Server::builder()
        .add_service(Feed)
        .serve_memory(name)
        .unwrap();
    let channel = Channel::connect_memory(name).await.unwrap();
    (server, channel)
}

#[tokio::test]
async fn each_shape_round_trips() {
    let (_server, channel) = serve("stream-shapes").await;
    let watched: Vec<u64> = channel
        .stream::<_, (), u64>(method(WATCH), &(5000u64,), None)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(watched, (0..5000).collect::<Vec<_>>());

    let chunks = Stream::iter((0..100).map(|_| vec![7u8; 10_000]));
    let total: u64 = channel
        .upload(method(UPLOAD), &(), chunks, |n: u64| n)
        .await
        .unwrap();
    assert_eq!(total, 1_000_000);

    let echoed: Vec<u32> = channel
        .stream::<_, u32, u32>(method(ECHO), &(), Some(Stream::iter(0..3000u32)))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(echoed, (0..3000).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stream_of_the_wrong_type_is_a_decode_error_per_item() {
    let (_server, channel) = serve("stream-decode").await;
    // u64s read as pairs: each item fails to decode, and the stream goes on.
    let items: Vec<Result<(u64, u64), Error>> = channel
        .stream::<_, (), (u64, u64)>(method(WATCH), &(3u64,), None)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    assert!(
        items.iter().all(|i| matches!(
            i,
            Err(Error::Decode {
                side: "stream item",
                ..
            })
        )),
        "{items:?}"
    );
}
