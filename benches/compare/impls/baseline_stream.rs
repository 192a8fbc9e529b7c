//! A hand-written stream, for the streaming workloads (S1, S2): what the
//! items cost with none of a library around them. tokio and bincode 2
//! (serde, standard config) as in `baseline`; the server encodes the items
//! one after another into one buffer and writes it every 64 KiB; the client
//! reads into one buffer and decodes the items out of it in the same task.
//! No frame per item, no flow control, no call ids, no cancellation, no
//! errors mid-stream: a floor under the cost per item (S1) of any library
//! that gives the consumer each item as a value of its own. Not one for bulk
//! (S2): it copies each chunk into its write buffer and moves a partial one
//! in its read buffer, where `rpc-stream` writes a batch uncopied.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::StreamClient;

/// Bytes encoded before each write, and the room the client's buffer is
/// given before each read.
const CHUNK: usize = 64 << 10;

/// One streamed item, its bytes as one block (as `rpc-stream`'s and
/// tonic's are), decoded from the read buffer in place.
#[derive(Serialize, Deserialize)]
struct Item {
    #[serde(
        serialize_with = "super::baseline::block::serialize",
        deserialize_with = "super::baseline::block::deserialize_in_place"
    )]
    payload: Vec<u8>,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Starts a server on the current runtime and returns its address. Each
/// connection takes requests of 12 bytes (the count as a `u64` and the size
/// as a `u32`, little-endian) and answers each with its items.
pub(crate) async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("baseline: bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            stream.set_nodelay(true).expect("nodelay");
            tokio::spawn(answer(stream));
        }
    });
    addr
}

async fn answer(mut stream: TcpStream) {
    let mut request = [0u8; 12];
    let mut buf = BytesMut::with_capacity(CHUNK + 64);
    while stream.read_exact(&mut request).await.is_ok() {
        let count = u64::from_le_bytes(request[..8].try_into().expect("8 bytes"));
        let size = u32::from_le_bytes(request[8..].try_into().expect("4 bytes"));
        // A buffer of its own per item, as every implementation's server
        // makes them.
        let payload = vec![0xA5u8; size as usize];
        for _ in 0..count {
            let item = Item {
                payload: payload.clone(),
            };
            bincode::serde::encode_into_std_write(&item, &mut (&mut buf).writer(), config())
                .expect("encode");
            if buf.len() >= CHUNK {
                if stream.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
        }
        if stream.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
}

/// One connection; one fetch at a time.
pub(crate) struct Client {
    conn: tokio::sync::Mutex<(TcpStream, BytesMut)>,
}

pub(crate) async fn connect(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect(addr).await.expect("baseline: connect");
    stream.set_nodelay(true).expect("nodelay");
    Client {
        conn: tokio::sync::Mutex::new((stream, BytesMut::with_capacity(2 * CHUNK))),
    }
}

impl StreamClient for Client {
    async fn fetch(&self, count: u64, size: u32) -> u64 {
        let mut conn = self.conn.lock().await;
        let (stream, buf) = &mut *conn;
        let mut request = [0u8; 12];
        request[..8].copy_from_slice(&count.to_le_bytes());
        request[8..].copy_from_slice(&size.to_le_bytes());
        stream.write_all(&request).await.expect("baseline: request");
        let (mut items, mut bytes) = (0, 0);
        while items < count {
            // Every whole item in the buffer; a partial one waits for more.
            while items < count {
                match bincode::serde::borrow_decode_from_slice::<Item, _>(buf, config()) {
                    Ok((item, used)) => {
                        buf.advance(used);
                        bytes += item.payload.len() as u64;
                        items += 1;
                    }
                    Err(bincode::error::DecodeError::UnexpectedEnd { .. }) => break,
                    Err(e) => panic!("baseline: decode: {e}"),
                }
            }
            if items < count {
                buf.reserve(CHUNK);
                let read = stream.read_buf(buf).await.expect("baseline: read");
                assert!(read > 0, "baseline: the server closed the stream");
            }
        }
        bytes
    }
}
