//! Frames built and read by hand, following the layout documented in
//! `rpc/src/protocol/mod.rs`, for tests that play a broken, slow or hostile
//! peer over a plain TCP socket.
//!
//! ```text
//!  length u32 BE | kind u8 | flags u8 | call id u64 BE | payload
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frame kinds (protocol v1).
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const REQUEST: u8 = 2;
    pub const RESPONSE: u8 = 3;
    pub const CANCEL: u8 = 4;
    pub const GOAWAY: u8 = 5;
    pub const PING: u8 = 6;
    pub const PONG: u8 = 7;
    pub const STREAM_ITEM: u8 = 8;
    pub const STREAM_END: u8 = 9;
    pub const STREAM_CREDIT: u8 = 10;
}

/// Response statuses (protocol v1).
pub mod status {
    pub const OK: u8 = 0;
    pub const UNKNOWN_METHOD: u8 = 1;
    pub const DECODE: u8 = 2;
    pub const PANICKED: u8 = 3;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const SHUTTING_DOWN: u8 = 6;
    pub const FRAME_TOO_LARGE: u8 = 7;
    /// A stream's producer ended it with an error (in a StreamEnd only).
    pub const ABORTED: u8 = 8;
}

/// GoAway reasons (protocol v1).
pub mod goaway {
    pub const SHUTDOWN: u8 = 0;
    pub const PROTOCOL: u8 = 1;
    pub const ABUSE: u8 = 2;
    pub const IDLE: u8 = 3;
}

/// Length prefix plus fixed header.
pub const HEADER: usize = 14;

/// One whole frame: prefix, header, payload.
pub fn frame(kind: u8, flags: u8, call_id: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    f.extend_from_slice(&(10 + payload.len() as u32).to_be_bytes());
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&call_id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A Hello with the given magic and version (features 0).
pub fn hello_with(magic: &[u8; 4], version: u16) -> Vec<u8> {
    let mut p = magic.to_vec();
    p.extend_from_slice(&version.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    frame(kind::HELLO, 0, 0, &p)
}

/// Our own Hello: magic `ZRPC`, version 1.
pub fn hello() -> Vec<u8> {
    hello_with(b"ZRPC", 1)
}

/// A whole Hello: version 1, accepting frames of up to `max_frame` bytes
/// and granting each stream it receives a window of `window` bytes.
pub fn hello_granting(max_frame: u32, window: u32) -> Vec<u8> {
    let mut p = b"ZRPC".to_vec();
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&max_frame.to_be_bytes());
    p.extend_from_slice(&window.to_be_bytes());
    frame(kind::HELLO, 0, 0, &p)
}

/// A whole Hello with these `features` bits (`0x10`: JSON values), the
/// default frame limit and stream window.
pub fn hello_features(features: u32) -> Vec<u8> {
    let mut p = b"ZRPC".to_vec();
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&features.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    frame(kind::HELLO, 0, 0, &p)
}

/// A StreamItem of call `call_id` carrying `payload` (an encoded item).
pub fn stream_item(call_id: u64, payload: &[u8]) -> Vec<u8> {
    frame(kind::STREAM_ITEM, 0, call_id, payload)
}

/// A StreamEnd of call `call_id` with this exact payload (a status byte,
/// then what it carries; or anything else, for a hostile one).
pub fn stream_end(call_id: u64, payload: &[u8]) -> Vec<u8> {
    frame(kind::STREAM_END, 0, call_id, payload)
}

/// A clean StreamEnd (status 0) of call `call_id`.
pub fn clean_end(call_id: u64) -> Vec<u8> {
    stream_end(call_id, &[status::OK])
}

/// A StreamCredit of `bytes` for call `call_id`.
pub fn credit(call_id: u64, bytes: u32) -> Vec<u8> {
    frame(kind::STREAM_CREDIT, 0, call_id, &bytes.to_be_bytes())
}

/// A Request for `method` ("Service.method") with raw argument bytes.
pub fn request(call_id: u64, method: &str, budget: Duration, args: &[u8]) -> Vec<u8> {
    let mut p = rpc::protocol::method_id(method).to_be_bytes().to_vec();
    let micros = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
    p.extend_from_slice(&micros.to_be_bytes());
    p.extend_from_slice(args);
    frame(kind::REQUEST, 0, call_id, &p)
}

/// A `Probe.hold` request: the handler holds for `ms` milliseconds
/// (`u64::MAX`: until it is dropped), then answers `value`.
pub fn hold(call_id: u64, budget: Duration, ms: u64, value: u32) -> Vec<u8> {
    request(call_id, "Probe.hold", budget, &args(&(ms, value)))
}

pub fn cancel(call_id: u64) -> Vec<u8> {
    frame(kind::CANCEL, 0, call_id, &[])
}

pub fn ping(nonce: u64) -> Vec<u8> {
    frame(kind::PING, 0, nonce, &[])
}

pub fn pong(nonce: u64) -> Vec<u8> {
    frame(kind::PONG, 0, nonce, &[])
}

/// A GoAway with `reason` and a message.
pub fn goaway(reason: u8, message: &str) -> Vec<u8> {
    let mut p = vec![reason];
    p.extend_from_slice(message.as_bytes());
    frame(kind::GOAWAY, 0, 0, &p)
}

/// A Response with a non-Ok status and a message.
pub fn refusal(call_id: u64, status: u8, message: &str) -> Vec<u8> {
    let mut p = vec![status];
    p.extend_from_slice(message.as_bytes());
    frame(kind::RESPONSE, 0, call_id, &p)
}

/// Arguments (a tuple, as generated clients send them) in the wire encoding.
pub fn args<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
}

/// A decoded frame.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub kind: u8,
    pub flags: u8,
    pub call_id: u64,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// A Response's status byte.
    pub fn status(&self) -> u8 {
        assert_eq!(self.kind, kind::RESPONSE, "not a response: {self:?}");
        self.payload[0]
    }

    /// A non-Ok Response's message, or a GoAway's.
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.payload[1..]).into_owned()
    }

    /// An Ok Response's value.
    pub fn value<T: DeserializeOwned>(&self) -> T {
        assert_eq!(self.status(), status::OK, "{}", self.message());
        let (v, read) =
            bincode::serde::decode_from_slice(&self.payload[1..], bincode::config::standard())
                .unwrap();
        assert_eq!(read, self.payload.len() - 1);
        v
    }

    /// A GoAway's reason byte.
    pub fn goaway_reason(&self) -> u8 {
        assert_eq!(self.kind, kind::GOAWAY, "not a GoAway: {self:?}");
        self.payload[0]
    }
}

/// How a connection ended, as the peer saw it.
#[derive(Debug)]
pub enum Closed {
    /// An orderly close (FIN).
    Eof,
    /// A reset or another error.
    Error(std::io::ErrorKind),
}

/// A plain TCP connection that speaks frames by hand.
#[derive(Debug)]
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects without any handshake.
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        RawConn::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> RawConn {
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes the handshake as a client.
    pub async fn handshake(addr: SocketAddr) -> RawConn {
        let mut c = RawConn::connect(addr).await;
        c.send(&hello()).await;
        let theirs = c
            .next_frame(Duration::from_secs(10))
            .await
            .expect("no Hello from the server");
        assert_eq!(theirs.kind, kind::HELLO);
        assert_eq!(&theirs.payload[..6], b"ZRPC\x00\x01");
        c
    }

    /// Connects and completes the handshake as a client, sending `ours`
    /// as its Hello (see [`hello_granting`]).
    pub async fn handshake_with(addr: SocketAddr, ours: &[u8]) -> RawConn {
        let mut c = RawConn::connect(addr).await;
        c.send(ours).await;
        let theirs = c
            .next_frame(Duration::from_secs(10))
            .await
            .expect("no Hello from the server");
        assert_eq!(theirs.kind, kind::HELLO);
        c
    }

    /// Plays the server's side of the handshake on an accepted stream.
    pub async fn accept_handshake(stream: TcpStream) -> RawConn {
        RawConn::accept_handshake_with(stream, &hello()).await
    }

    /// As [`accept_handshake`](Self::accept_handshake), answering with
    /// `ours` as the server's Hello.
    pub async fn accept_handshake_with(stream: TcpStream, ours: &[u8]) -> RawConn {
        let mut c = RawConn::from_stream(stream);
        let theirs = c
            .next_frame(Duration::from_secs(10))
            .await
            .expect("no Hello from the client");
        assert_eq!(theirs.kind, kind::HELLO);
        c.send(ours).await;
        c
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes all of `bytes`, reporting an error instead of panicking (the
    /// peer may have closed the connection).
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next frame, or how the connection ended. Panics if nothing happens
    /// within `within`.
    pub async fn next_frame(&mut self, within: Duration) -> Result<RawFrame, Closed> {
        tokio::time::timeout(within, self.read_frame())
            .await
            .unwrap_or_else(|_| panic!("no frame and no close within {within:?}"))
    }

    async fn read_frame(&mut self) -> Result<RawFrame, Closed> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                assert!(len >= 10, "the peer sent a frame of length {len}");
                if self.buf.len() >= 4 + len {
                    let rest = self.buf.split_off(4 + len);
                    let f = std::mem::replace(&mut self.buf, rest);
                    return Ok(RawFrame {
                        kind: f[4],
                        flags: f[5],
                        call_id: u64::from_be_bytes(f[6..14].try_into().unwrap()),
                        payload: f[14..].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) => return Err(Closed::Eof),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(Closed::Error(e.kind())),
            }
        }
    }

    /// The next frame that is not a Ping (Pings are answered) or a Pong.
    pub async fn next_reply(&mut self, within: Duration) -> Result<RawFrame, Closed> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.next_frame(left).await?;
            match f.kind {
                kind::PING => {
                    let _ = self.try_send(&pong(f.call_id)).await;
                }
                kind::PONG => {}
                _ => return Ok(f),
            }
        }
    }

    /// Reads until the peer closes, returning every frame it sent before.
    /// Panics if the connection is still open after `within`.
    pub async fn frames_until_closed(&mut self, within: Duration) -> (Vec<RawFrame>, Closed) {
        let deadline = tokio::time::Instant::now() + within;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.read_frame()).await {
                Ok(Ok(f)) => frames.push(f),
                Ok(Err(closed)) => return (frames, closed),
                Err(_) => panic!(
                    "the connection was still open after {within:?}; frames so far: {frames:?}"
                ),
            }
        }
    }

    /// True if the peer has said or done nothing for `quiet`.
    pub async fn is_silent_for(&mut self, quiet: Duration) -> bool {
        tokio::time::timeout(quiet, self.read_frame())
            .await
            .is_err()
    }
}
