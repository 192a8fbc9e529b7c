//! The wire protocol, version 1.
//!
//! Every message is one frame. A frame is a 4-byte big-endian length, a fixed
//! 10-byte header, then the payload:
//!
//! ```text
//!  0        4      5       6                      14
//!  +--------+------+-------+----------------------+-------------------+
//!  | length | kind | flags |       call id        |  payload ...      |
//!  | u32 BE |  u8  |  u8   |        u64 BE        |  length - 10      |
//!  +--------+------+-------+----------------------+-------------------+
//!   length counts everything after itself: 10 + payload length.
//! ```
//!
//! | kind | value | call id | payload |
//! |---|---|---|---|
//! | Hello | 1 | 0 | magic `"ZRPC"`, version u16 BE, features u32 BE (see Flags), max frame u32 BE, stream window u32 BE |
//! | Request | 2 | the call | method id u64 BE, budget µs u64 BE, (schema fingerprint u64 BE), (metadata), args (the connection's format: bincode or JSON) |
//! | Response | 3 | the call | status u8, then the value (in the connection's format) if status is 0, else a UTF-8 message (status 12, SchemaMismatch: the server's shape of the method) |
//! | Cancel | 4 | the call | empty |
//! | GoAway | 5 | 0 | reason u8, UTF-8 message |
//! | Ping | 6 | a nonce | empty |
//! | Pong | 7 | the ping's nonce | empty |
//! | StreamItem | 8 | the call | one item (in the connection's format) |
//! | StreamEnd | 9 | the call | status u8 (0: a clean end), then what a Response of that status carries |
//! | StreamCredit | 10 | the call | bytes credited back, u32 BE |
//!
//! Statuses: 0 Ok, 1 UnknownMethod, 2 Decode, 3 Panicked, 4
//! DeadlineExceeded, 5 Overloaded, 6 ShuttingDown, 7 FrameTooLarge (two u64
//! BE: size, limit), 8 Aborted (StreamEnd only), 9 InvalidMetadata, 10
//! Unauthenticated, 11 PermissionDenied, 12 SchemaMismatch. A status a side
//! does not know reads as a Decode error of the response.
//!
//! Flags: bit 0 (`FLAG_COMPRESSED`) marks a compressed value, bit 1 a per-call
//! metadata block in a Request (`u32 BE length` then key/value pairs, placed
//! between the budget and the args), bit 2 (`FLAG_SCHEMA`, Requests only)
//! the method's schema fingerprint, 8 bytes right after the budget (before
//! the metadata block, if any). A side sends a flag only if the peer's
//! Hello `features` advertised it, and refuses a frame with a flag its own
//! Hello did not advertise. Hello features: bit 0 metadata, bit 1 LZ4, bit 2
//! zstd, bit 3 schema fingerprints (servers only), bit 4 JSON (see Formats).
//!
//! **Formats.** Values (a Request's args, a Response's value when its status
//! is 0, a StreamItem) are bincode unless the client's Hello sets bit 4
//! (`0x10`, JSON): then every value of that connection, both ways, is one
//! JSON text (UTF-8, no trailing bytes but whitespace). Status bodies, the
//! frame layout and the heads stay as they are. The server's Hello sets
//! bit 4 exactly when it will speak JSON: it answers in the client's format
//! if it accepts it; if not, its Hello names the format it does accept (the
//! other one), and both sides fail the handshake with the same error
//! ("the client asked for the JSON format; this server accepts only
//! bincode"). A server that predates JSON never sets the bit, so a JSON
//! client is told the same.
//!
//! **Schema check.** A method's *shape* is its wire name and the types it
//! takes and returns as the trait writes them, normalised so that
//! spellings which encode alike read alike (`add(i64, i64) -> i64`; see
//! `#[rpc::service]`'s docs), and its fingerprint is the shape's 64-bit
//! FNV-1a hash, computed by the macro. Every server advertises the feature
//! and accepts the flag; a client flags every request (unary and streaming)
//! to a server that advertised it, and sends it unflagged, unchecked as
//! before, to one that did not. A flagged request whose fingerprint is not
//! the served method's is answered with status 12, SchemaMismatch, whose
//! message is the server's shape: nothing of the args is decoded, the
//! handler never runs, no stream opens (stream frames of that call are
//! dropped as for any failed call), and the connection stays up. A request
//! for an unknown method is UnknownMethod whatever its fingerprint. The
//! check is per call rather than once at the handshake: one connection
//! carries many services and methods, and a method that changed must not
//! stop the unchanged ones from working (nor a server built with a service
//! the client does not know refuse the client).
//!
//! **Compression.** Only the value of a frame is compressed: a Request's args
//! (after the method id and budget, which are patched at send time, and
//! after the metadata block if flagged), a Response's body (after the status
//! byte and the metadata block if flagged), a StreamItem's whole payload; no
//! other kind may set the flag. A compressed value is:
//!
//! ```text
//!  +-----------+-------------------+----------------------------------+
//!  | algorithm | decompressed len  | compressed bytes                 |
//!  |    u8     |      u32 BE       | LZ4: a block (no size prefix);   |
//!  | 1 LZ4,    |                   | zstd: one frame                  |
//!  | 2 zstd    |                   |                                  |
//!  +-----------+-------------------+----------------------------------+
//! ```
//!
//! A side compresses only with an algorithm the peer advertised, only values
//! of at least its threshold (1 KiB by default), and sends a value raw unless
//! the compressed form (with its 5-byte head) is at least an eighth smaller.
//! The receiver decompresses in its frame reader, before anything else sees
//! the frame: the claimed length, with the frame's header and the bytes
//! before the value, must fit in its frame limit (checked before
//! allocating), and the value must decompress to exactly that length in an
//! algorithm it advertised; otherwise the connection closes with a protocol
//! error naming why. A server answers a compressed request in the request's
//! algorithm. Stream windows and credits count items as they are
//! decompressed, so the window bounds what the receiver holds.
//!
//! **Handshake.** On connect both sides send Hello before anything else; the
//! server waits for the client's first. Wrong magic closes the connection; a
//! different version makes both sides fail with an error naming both versions.
//! A peer whose first bytes cannot begin a Hello (an HTTP server's answer,
//! say) is reported as not speaking this protocol, with those bytes shown as
//! escaped text (at most 64 of them), whichever way reading its Hello failed.
//! Each Hello also says the largest frame its sender accepts, and each side
//! sends the other nothing larger: a request or reply over the peer's limit
//! fails that one call with `FrameTooLarge` instead of breaking the
//! connection. (A 10-byte Hello without it means the default, 16 MiB.)
//! Until the handshake completes, each side reads frames of at most 4 KiB,
//! so a peer that is not an rpc peer gets nothing large allocated.
//!
//! **Calls.** The client picks call ids, unique among its in-flight calls; the
//! server refuses a duplicate in-flight id as a protocol error. Responses come
//! in any order. A method is named by a 64-bit FNV-1a hash of `"Service.method"`
//! computed by the macro, so adding or reordering methods never changes an id.
//! The budget is the caller's remaining time, relative (never a wall-clock
//! instant), so clock skew between hosts does not matter.
//!
//! **Draining.** A server that stops taking calls on a connection (shutting
//! down, or the connection sat idle) sends GoAway, then a Ping with nonce
//! `u64::MAX`. The client sends no new call on that connection once it has
//! read the GoAway, and answers the Ping after it, so the Pong tells the
//! server that every request sent before the client saw the GoAway has
//! arrived. Requests that arrive after the GoAway get status ShuttingDown:
//! they never ran, and the client sends them again on a new connection. The
//! server closes the connection once the Pong has come (or 1 s has passed
//! without it, as gRPC-Go's `goAwayTimeout`) and no call is in flight; the
//! client reads until then. A GoAway for a protocol error or abuse is followed
//! by an immediate close instead.
//!
//! **Streams.** A streaming call is a Request as any other (its arguments
//! without the stream), and its stream frames carry its call id; which way
//! a frame goes says which of the call's streams it belongs to. The client's
//! stream (if the method takes one) follows its Request at once: items,
//! then one StreamEnd (status 0 when the client is done sending: a
//! half-close; the call goes on). The server answers with a Response as for
//! any call; for a method that returns a stream, a Response with status Ok
//! is followed by the server's items and one StreamEnd, which ends the call
//! (a Response with another status, or an application `Err`, ends it with
//! no stream). A StreamEnd of a failure carries the same status and body as
//! a Response would, with one more status: 8, Aborted, the producer's own
//! error. A Cancel from the client ends the call either way; items still
//! in flight for a call that is over are dropped on arrival, and so are
//! items for a call whose receiver takes no stream (a client's items for a
//! method that only returns one, a server's for one that only takes one);
//! a request that reuses the id of a stream still open is a protocol
//! error, however soon it would start.
//!
//! Flow control: each Hello says how many bytes of each stream its sender
//! holds unconsumed (0 or absent: 256 KiB). A side sends an item only while
//! the bytes of items it sent (whole frames: 14 + payload each) and has not
//! been credited for are fewer than the peer's window; the receiver sends a
//! StreamCredit as its application takes items (a quarter of the window at
//! a time). An item arriving while the receiver already holds a window's
//! worth is a protocol error, and closes the connection. Credit is the most
//! a side sends, not the least: a sender also waits while its connection's
//! writer holds much that the peer has not read, so a peer cannot make it
//! queue without bound by granting credit (or a window) it never uses.
//!
//! **Limits.** A frame longer than the receiver's limit is refused from its
//! length field alone, before any allocation, and closes the connection; a frame
//! too large to send fails only that call (see [`crate::Error::FrameTooLarge`]).

mod compress;
mod frame;
// The fuzz entry point is a hook for the project's own fuzzer and randomized
// tests (feature `hooks`); its unit tests run either way.
#[cfg(any(test, feature = "hooks"))]
mod fuzz;
mod items;
mod message;
mod schema;

pub(crate) use compress::{Compressor, compress_value, inflate, raw_unless_accepted};
pub(crate) use frame::{FrameBuf, FrameCodec, HEADER_LEN, LEN_PREFIX, put_head, seal_at};
#[cfg(feature = "hooks")]
#[doc(hidden)]
pub use fuzz::fuzz_decode;
pub(crate) use items::ItemRun;
pub(crate) use message::{GoAwayReason, Hello, RequestHead, Status};
pub(crate) use schema::{fingerprint_len, strip_fingerprint, take_fingerprint};

use bytes::Bytes;

/// Frame flag: the payload is compressed (see the Hello's features).
pub(crate) const FLAG_COMPRESSED: u8 = 0x01;
/// Frame flag: a Request or Response carries a metadata block (see
/// [`crate::metadata`]).
pub(crate) const FLAG_METADATA: u8 = 0x02;
/// Frame flag: a Request carries its method's schema fingerprint (see
/// `schema.rs`).
pub(crate) const FLAG_SCHEMA: u8 = 0x04;

/// What a side accepts, as its Hello's `features` bits say.
pub(crate) mod features {
    /// Frames flagged [`FLAG_METADATA`](super::FLAG_METADATA).
    pub(crate) const METADATA: u32 = 1 << 0;
    /// Payloads compressed with LZ4 (block format, size-prefixed).
    pub(crate) const LZ4: u32 = 1 << 1;
    /// Payloads compressed with zstd.
    pub(crate) const ZSTD: u32 = 1 << 2;
    /// Payloads in JSON rather than bincode (see [`crate::Format`]): in a
    /// client's Hello, the format it sends and reads; in a server's, the
    /// format it answers in (bit 3 is the schema fingerprint's).
    pub(crate) const JSON: u32 = 1 << 4;
    /// Requests flagged [`FLAG_SCHEMA`](super::FLAG_SCHEMA): servers only.
    pub(crate) const SCHEMA: u32 = 1 << 3;
}

/// Bytes that open every Hello payload.
pub(crate) const MAGIC: [u8; 4] = *b"ZRPC";
/// The smallest frame limit a side may set or advertise: room for any error
/// reply (their messages are cut to 1 KiB) and a small call.
pub(crate) const MIN_MAX_FRAME: usize = 4096;
/// The longest frame either side reads before the handshake completes: a
/// Hello is 32 bytes, and this leaves room for what later versions add to it.
pub(crate) const HANDSHAKE_MAX_FRAME: usize = 4096;
/// The protocol version this crate speaks.
pub(crate) const VERSION: u16 = 1;

/// How the message of a Decode reply begins when the handler ran but its
/// value did not serialize, so that the client can tell this from a request
/// the server could not decode (which never ran).
pub(crate) const SERVER_COULD_NOT_ENCODE: &str = "the server could not encode the response: ";

/// The nonce of the Ping a server sends right after a draining GoAway.
pub(crate) const DRAIN_PING: u64 = u64::MAX;
/// How long a draining server waits for the Pong to [`DRAIN_PING`] before it
/// stops waiting for stray requests (1 s, as gRPC-Go).
pub(crate) const DRAIN_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Hello = 1,
    Request = 2,
    Response = 3,
    Cancel = 4,
    GoAway = 5,
    Ping = 6,
    Pong = 7,
    StreamItem = 8,
    StreamEnd = 9,
    StreamCredit = 10,
}

impl Kind {
    pub(crate) fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Request,
            3 => Kind::Response,
            4 => Kind::Cancel,
            5 => Kind::GoAway,
            6 => Kind::Ping,
            7 => Kind::Pong,
            8 => Kind::StreamItem,
            9 => Kind::StreamEnd,
            10 => Kind::StreamCredit,
            _ => return None,
        })
    }
}

/// One decoded frame. The payload is a slice of the read buffer (no copy).
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    /// [`FLAG_METADATA`], [`FLAG_COMPRESSED`]: only those the reader was
    /// told this side accepts (see [`FrameCodec::accept_flags`]).
    pub(crate) flags: u8,
    pub(crate) call_id: u64,
    pub(crate) payload: Bytes,
}

/// Payload bytes that a [`Payload`] holds in place rather than as a slice
/// of the read buffer: a request's head and schema fingerprint (24 bytes)
/// and small arguments.
pub(crate) const INLINE_PAYLOAD: usize = 46;

/// A received payload as it is handed over: a small one copied out of the
/// read buffer, a larger one a slice of it (not copied). The copy of a few
/// bytes is cheaper than the slice, which costs two atomic operations on the
/// buffer's reference count (one to take it, one to drop it) for every small
/// Response, and it leaves the read buffer free to be reused in place.
#[derive(Clone)]
pub(crate) enum Payload {
    Inline {
        len: u8,
        bytes: [u8; INLINE_PAYLOAD],
    },
    Shared(Bytes),
    /// A Response that carried metadata: the status and body (the block
    /// taken out), and the metadata, for the caller to deliver.
    WithMetadata(Box<(Bytes, crate::Metadata)>),
}

impl Payload {
    /// A copy of `src`, if it fits in place.
    pub(crate) fn copy_small(src: &[u8]) -> Option<Payload> {
        let mut bytes = [0; INLINE_PAYLOAD];
        bytes.get_mut(..src.len())?.copy_from_slice(src);
        Some(Payload::Inline {
            len: src.len() as u8,
            bytes,
        })
    }

    /// Drops the first `n` bytes (at most all of them).
    pub(crate) fn advance(&mut self, n: usize) {
        match self {
            Payload::Inline { len, bytes } => {
                let n = n.min(usize::from(*len));
                bytes.copy_within(n..usize::from(*len), 0);
                *len -= n as u8;
            }
            Payload::Shared(b) => bytes::Buf::advance(b, n.min(b.len())),
            Payload::WithMetadata(tagged) => {
                let b = &mut tagged.0;
                bytes::Buf::advance(b, n.min(b.len()));
            }
        }
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Payload::Shared(b)
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Payload::Shared(b) => b,
            Payload::WithMetadata(tagged) => &tagged.0,
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

/// Why a frame could not be decoded. Any of these closes the connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("frame length {0} is shorter than the 10-byte header")]
    TooShort(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error(
        "frame sets flags {0:#04x}, which this side did not say it accepts (or not on a frame of this kind)"
    )]
    Flags(u8),
    #[error("bad compressed frame: {0}")]
    Compression(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The method id of `"Service.method"`: 64-bit FNV-1a. The macro computes the same
/// function at compile time; this copy exists for tests and tools.
pub const fn method_id(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}
