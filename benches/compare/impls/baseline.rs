//! The hand-written baseline: tokio + `LengthDelimitedCodec` + bincode 2
//! (serde, standard config). The client maps request ids to oneshots; the
//! server spawns a task per request. How frames reach the socket is the one
//! parameter ([`Writes`]), the same on both ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::LoadClient;

const MAX_FRAME: usize = 16 << 20;
/// The most frames one write takes.
const BATCH: usize = 128;

/// How frames reach the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writes {
    /// A writer task drains a queue into one buffer and writes once per batch
    /// (`baseline`).
    Batched,
    /// The same writer task, which yields to the runtime once after it is
    /// woken and before it drains the queue, so that callers that are ready
    /// on the same runtime queue their frames first and join the write
    /// (`baseline-yield`).
    BatchedAfterYield,
    /// Every frame is written by its caller, under an async mutex
    /// (`baseline-unbatched`).
    Direct,
}

#[derive(Serialize, Deserialize)]
enum Req {
    Add(i32, i32),
    Echo(#[serde(with = "block")] Vec<u8>),
}

#[derive(Serialize, Deserialize)]
enum Resp {
    Add(i32),
    Echo(#[serde(with = "block")] Vec<u8>),
}

/// Byte buffers as one block (what a careful hand-written protocol does).
pub(super) mod block {
    use serde::{Deserializer, Serializer};

    pub(in crate::impls) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Block)
    }

    /// The same, asking for the bytes in place (bincode's owned path for a
    /// `Vec<u8>`, which `deserialize` takes, zeroes a buffer first, through
    /// `calloc`): for `baseline-stream`.
    pub(in crate::impls) fn deserialize_in_place<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(Block)
    }

    struct Block;

    impl serde::de::Visitor<'_> for Block {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// A length-prefixed frame holding `(id, msg)`.
fn encode<T: Serialize>(id: u64, msg: &T, hint: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + hint);
    buf.put_u32(0);
    let mut w = (&mut buf).writer();
    bincode::serde::encode_into_std_write((id, msg), &mut w, bincode::config::standard())
        .expect("baseline: encode");
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

fn decode<T: DeserializeOwned>(frame: &[u8]) -> (u64, T) {
    let config = bincode::config::standard().with_limit::<MAX_FRAME>();
    bincode::serde::decode_from_slice(frame, config)
        .expect("baseline: decode")
        .0
}

/// The sending half of a connection, shared by everything that sends on it.
#[derive(Clone)]
enum Out {
    Queued(mpsc::UnboundedSender<Bytes>),
    Direct(Arc<tokio::sync::Mutex<OwnedWriteHalf>>),
}

impl Out {
    fn new(w: OwnedWriteHalf, writes: Writes) -> Out {
        match writes {
            Writes::Batched | Writes::BatchedAfterYield => {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(writer(w, rx, writes == Writes::BatchedAfterYield));
                Out::Queued(tx)
            }
            Writes::Direct => Out::Direct(Arc::new(tokio::sync::Mutex::new(w))),
        }
    }

    async fn send(&self, frame: Bytes) {
        match self {
            Out::Queued(tx) => {
                let _ = tx.send(frame);
            }
            Out::Direct(w) => {
                let _ = w.lock().await.write_all(&frame).await;
            }
        }
    }
}

/// The writer task: one write per batch of queued frames, until the socket
/// fails or every sender is gone.
async fn writer(mut w: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Bytes>, yield_first: bool) {
    let mut frames = Vec::with_capacity(BATCH);
    let mut buf = BytesMut::new();
    while next_batch(&mut rx, &mut frames, yield_first).await {
        let written = if frames.len() == 1 {
            w.write_all(&frames[0]).await
        } else {
            for f in &frames {
                buf.extend_from_slice(f);
            }
            w.write_all(&buf).await
        };
        if written.is_err() {
            return;
        }
        frames.clear();
        buf.clear();
    }
}

/// Waits for a frame, then takes up to `BATCH` queued ones into `frames`;
/// `false` once the queue is closed and empty. With `yield_first`, the frame
/// that woke the writer is taken alone, the task yields once, and then what
/// has been queued meanwhile joins it; the batch never waits for frames that
/// are not queued yet.
async fn next_batch(
    rx: &mut mpsc::UnboundedReceiver<Bytes>,
    frames: &mut Vec<Bytes>,
    yield_first: bool,
) -> bool {
    if !yield_first {
        return rx.recv_many(frames, BATCH).await > 0;
    }
    let Some(first) = rx.recv().await else {
        return false;
    };
    frames.push(first);
    tokio::task::yield_now().await;
    while frames.len() < BATCH {
        match rx.try_recv() {
            Ok(frame) => frames.push(frame),
            Err(_) => break,
        }
    }
    true
}

/// Starts a server on the current runtime and returns its address.
pub(crate) async fn serve(writes: Writes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("baseline: bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.expect("baseline: accept");
            stream.set_nodelay(true).expect("nodelay");
            tokio::spawn(serve_connection(stream, writes));
        }
    });
    addr
}

async fn serve_connection(stream: TcpStream, writes: Writes) {
    let (r, w) = stream.into_split();
    let out = Out::new(w, writes);
    let mut frames = FramedRead::new(r, codec());
    while let Some(Ok(frame)) = frames.next().await {
        let out = out.clone();
        tokio::spawn(async move {
            let (id, req): (u64, Req) = decode(&frame);
            let (resp, hint) = match req {
                Req::Add(a, b) => (Resp::Add(a.wrapping_add(b)), 0),
                Req::Echo(data) => {
                    let n = data.len();
                    (Resp::Echo(data), n)
                }
            };
            out.send(encode(id, &resp, hint)).await;
        });
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Resp>>>>;

#[derive(Clone)]
pub(crate) struct Client {
    out: Out,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

pub(crate) async fn connect(addr: SocketAddr, writes: Writes) -> Client {
    let stream = TcpStream::connect(addr).await.expect("baseline: connect");
    stream.set_nodelay(true).expect("nodelay");
    let (r, w) = stream.into_split();
    let pending = Pending::default();
    tokio::spawn(read_responses(r, pending.clone()));
    Client {
        out: Out::new(w, writes),
        pending,
        next_id: Arc::new(AtomicU64::new(1)),
    }
}

async fn read_responses(r: OwnedReadHalf, pending: Pending) {
    let mut frames = FramedRead::new(r, codec());
    while let Some(Ok(frame)) = frames.next().await {
        let (id, resp): (u64, Resp) = decode(&frame);
        if let Some(tx) = pending.lock().unwrap().remove(&id) {
            let _ = tx.send(resp);
        }
    }
    pending.lock().unwrap().clear();
}

impl Client {
    async fn call(&self, req: Req, hint: usize) -> Resp {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id, &req, hint);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.out.send(frame).await;
        rx.await.expect("baseline: connection closed")
    }
}

impl LoadClient for Client {
    async fn add(&self, a: i32, b: i32) -> i32 {
        match self.call(Req::Add(a, b), 0).await {
            Resp::Add(sum) => sum,
            Resp::Echo(_) => panic!("baseline: wrong response"),
        }
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        let n = data.len();
        match self.call(Req::Echo(data), n).await {
            Resp::Echo(data) => data,
            Resp::Add(_) => panic!("baseline: wrong response"),
        }
    }
}
