//! The fixed parts of each message's payload: Hello, the request head, the
//! response status, GoAway.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};

use super::{
    FLAG_COMPRESSED, FLAG_METADATA, FLAG_SCHEMA, FrameBuf, Kind, MAGIC, Payload, VERSION, features,
};

/// The handshake message, sent by both sides before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) version: u16,
    pub(crate) features: u32,
    /// The largest frame the sender accepts; `None` from a peer whose Hello
    /// stops after `features` (it is then assumed to accept the default).
    pub(crate) max_frame: Option<u32>,
    /// The stream window the sender grants each stream it receives (see
    /// [`crate::stream`]); `None` from a peer whose Hello stops before it.
    pub(crate) stream_window: Option<u32>,
}

impl Hello {
    /// Payload bytes of a Hello: magic, version, features, max frame,
    /// stream window.
    pub(crate) const PAYLOAD_LEN: usize = 18;
    /// The shortest Hello accepted: without the max frame.
    const SHORT_LEN: usize = 10;
    /// What a peer that does not say is assumed to accept (the default limit).
    const ASSUMED_MAX_FRAME: usize = 16 << 20;

    /// This side's Hello: it accepts metadata (and, as [`with_features`]
    /// adds, more).
    ///
    /// [`with_features`]: Self::with_features
    pub(crate) fn ours(max_frame: usize, stream_window: usize) -> Self {
        Hello {
            version: VERSION,
            features: features::METADATA,
            max_frame: Some(u32::try_from(max_frame).unwrap_or(u32::MAX)),
            stream_window: Some(u32::try_from(stream_window).unwrap_or(u32::MAX)),
        }
    }

    /// This Hello, also saying it accepts `more` (see [`features`]).
    pub(crate) fn with_features(mut self, more: u32) -> Self {
        self.features |= more;
        self
    }

    /// Whether the sender accepts `feature` (one of [`features`]).
    pub(crate) fn accepts_feature(&self, feature: u32) -> bool {
        self.features & feature != 0
    }

    /// The frame flags the sender of this Hello accepts.
    pub(crate) fn accepted_flags(&self) -> u8 {
        let mut flags = 0;
        if self.accepts_feature(features::METADATA) {
            flags |= FLAG_METADATA;
        }
        if self.accepts_feature(features::LZ4 | features::ZSTD) {
            flags |= FLAG_COMPRESSED;
        }
        if self.accepts_feature(features::SCHEMA) {
            flags |= FLAG_SCHEMA;
        }
        flags
    }

    /// The window of unconsumed stream bytes this peer grants each stream
    /// we send it.
    pub(crate) fn stream_window(&self) -> usize {
        self.stream_window
            .map_or(crate::stream::DEFAULT_WINDOW, |w| w as usize)
    }

    /// The largest frame we may send this peer.
    pub(crate) fn accepts(&self) -> usize {
        self.max_frame
            .map_or(Self::ASSUMED_MAX_FRAME, |m| m as usize)
    }

    pub(crate) fn encode(self) -> Bytes {
        let mut f = FrameBuf::new(Kind::Hello, 0, Self::PAYLOAD_LEN);
        let p = f.payload_mut();
        p.put_slice(&MAGIC);
        p.put_u16(self.version);
        p.put_u32(self.features);
        p.put_u32(self.max_frame.unwrap_or(0));
        p.put_u32(self.stream_window.unwrap_or(0));
        f.finish()
    }

    /// Parses a Hello payload, or says in plain words why it is not one.
    pub(crate) fn parse(mut payload: Bytes) -> Result<Hello, String> {
        // Longer Hellos are accepted and the rest ignored, so that a later
        // version can add fields without breaking this one.
        if payload.len() < Self::SHORT_LEN || payload[..4] != MAGIC {
            return Err("the peer does not speak this RPC protocol (bad handshake magic)".into());
        }
        payload.advance(4);
        Ok(Hello {
            version: payload.get_u16(),
            features: payload.get_u32(),
            // 0 (or no field) means "the default".
            max_frame: (payload.remaining() >= 4)
                .then(|| payload.get_u32())
                .filter(|&m| m != 0),
            stream_window: (payload.remaining() >= 4)
                .then(|| payload.get_u32())
                .filter(|&w| w != 0),
        })
    }
}

/// The head of a Request payload; the arguments follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub(crate) method_id: u64,
    /// The caller's remaining time when it sent the request.
    pub(crate) budget: Duration,
}

impl RequestHead {
    pub(crate) const LEN: usize = 16;

    #[inline]
    pub(crate) fn write(self, f: &mut FrameBuf) {
        let mut head = [0u8; Self::LEN];
        head[..8].copy_from_slice(&self.method_id.to_be_bytes());
        let micros = u64::try_from(self.budget.as_micros()).unwrap_or(u64::MAX);
        head[8..].copy_from_slice(&micros.to_be_bytes());
        f.extend_from_slice(&head);
    }

    /// Sets the call id and budget of an encoded request, just before it is
    /// sent (both are known only then).
    #[inline]
    pub(crate) fn patch(f: &mut FrameBuf, call_id: u64, budget: Duration) {
        f.set_call_id(call_id);
        let micros = u64::try_from(budget.as_micros()).unwrap_or(u64::MAX);
        f.patch_u64(super::LEN_PREFIX + super::HEADER_LEN + 8, micros);
    }

    /// The head at the start of a Request payload, if it is long enough.
    fn read(payload: &[u8]) -> Option<RequestHead> {
        let method_id: [u8; 8] = payload.get(..8)?.try_into().ok()?;
        let micros: [u8; 8] = payload.get(8..Self::LEN)?.try_into().ok()?;
        Some(RequestHead {
            method_id: u64::from_be_bytes(method_id),
            budget: Duration::from_micros(u64::from_be_bytes(micros)),
        })
    }

    /// Splits a Request payload into its head and the argument bytes.
    pub(crate) fn split(mut payload: Payload) -> Option<(RequestHead, Payload)> {
        let head = Self::read(&payload)?;
        payload.advance(Self::LEN);
        Some((head, payload))
    }

    /// [`split`](Self::split), for a payload as bytes (the fuzz and bench
    /// hooks, and tests).
    #[cfg(any(test, feature = "hooks"))]
    pub(crate) fn parse(mut payload: Bytes) -> Option<(RequestHead, Bytes)> {
        let head = Self::read(&payload)?;
        payload.advance(Self::LEN);
        Some((head, payload))
    }
}

/// The first byte of a Response payload. Anything but `Ok` is the library's own
/// failure, followed by a UTF-8 message; the app's `Err(E)` travels inside `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    Ok = 0,
    UnknownMethod = 1,
    Decode = 2,
    Panicked = 3,
    DeadlineExceeded = 4,
    Overloaded = 5,
    ShuttingDown = 6,
    FrameTooLarge = 7,
    /// A stream's producer ended it with an error (in a StreamEnd only).
    Aborted = 8,
    /// The request's metadata was malformed or over the server's limit.
    InvalidMetadata = 9,
    /// An interceptor refused the call: who is calling is not known.
    Unauthenticated = 10,
    /// An interceptor refused the call: the caller may not make it.
    PermissionDenied = 11,
    /// The request's schema fingerprint is not the method's: client and
    /// server were built from different versions of the trait. The body is
    /// the server's shape of the method.
    SchemaMismatch = 12,
}

impl Status {
    pub(crate) fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::UnknownMethod,
            2 => Status::Decode,
            3 => Status::Panicked,
            4 => Status::DeadlineExceeded,
            5 => Status::Overloaded,
            6 => Status::ShuttingDown,
            7 => Status::FrameTooLarge,
            8 => Status::Aborted,
            9 => Status::InvalidMetadata,
            10 => Status::Unauthenticated,
            11 => Status::PermissionDenied,
            12 => Status::SchemaMismatch,
            _ => return None,
        })
    }

    /// Its name, as spans and metrics give a call's outcome (the name of
    /// the `rpc::Error` variant it becomes).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Ok => "Ok",
            Status::UnknownMethod => "UnknownMethod",
            Status::Decode => "Decode",
            Status::Panicked => "Panicked",
            Status::DeadlineExceeded => "DeadlineExceeded",
            Status::Overloaded => "Overloaded",
            Status::ShuttingDown => "ShuttingDown",
            Status::FrameTooLarge => "FrameTooLarge",
            Status::Aborted => "Aborted",
            Status::InvalidMetadata => "InvalidMetadata",
            Status::Unauthenticated => "Unauthenticated",
            Status::PermissionDenied => "PermissionDenied",
            Status::SchemaMismatch => "SchemaMismatch",
        }
    }

    /// A StreamEnd payload: this status and a message (cut as a reply's).
    pub(crate) fn end_payload(self, message: &str) -> Vec<u8> {
        let message = bounded(message);
        let mut payload = Vec::with_capacity(1 + message.len());
        payload.push(self as u8);
        payload.extend_from_slice(message.as_bytes());
        payload
    }

    /// A Response frame carrying this (non-Ok) status and a message.
    pub(crate) fn reply(self, call_id: u64, message: &str) -> Bytes {
        let message = bounded(message);
        let mut f = FrameBuf::new(Kind::Response, call_id, 1 + message.len());
        f.extend_from_slice(&[self as u8]);
        f.extend_from_slice(message.as_bytes());
        f.finish()
    }
}

/// The longest message an error reply or GoAway carries. Messages can
/// repeat a request's data (a panic message, a serde error), and a reply must
/// fit in the peer's smallest allowed frame ([`super::MIN_MAX_FRAME`]).
const MAX_MESSAGE: usize = 1024;

/// `message` cut to [`MAX_MESSAGE`] bytes, at a char boundary.
fn bounded(message: &str) -> &str {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Why a GoAway was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum GoAwayReason {
    /// The server is draining: finish what is in flight, send nothing new.
    Shutdown = 0,
    /// The peer broke the protocol.
    Protocol = 1,
    /// The peer exceeded an abuse budget.
    Abuse = 2,
    /// The connection was idle too long.
    Idle = 3,
}

impl GoAwayReason {
    pub(crate) fn encode(self, message: &str) -> Bytes {
        let message = bounded(message);
        let mut f = FrameBuf::new(Kind::GoAway, 0, 1 + message.len());
        f.extend_from_slice(&[self as u8]);
        f.extend_from_slice(message.as_bytes());
        f.finish()
    }

    /// Parses a GoAway payload into its reason and message.
    pub(crate) fn parse(payload: &[u8]) -> (Option<GoAwayReason>, String) {
        let reason = match payload.first() {
            Some(0) => Some(GoAwayReason::Shutdown),
            Some(1) => Some(GoAwayReason::Protocol),
            Some(2) => Some(GoAwayReason::Abuse),
            Some(3) => Some(GoAwayReason::Idle),
            _ => None,
        };
        let message = payload
            .get(1..)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        (reason, message.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_of_hello() {
        assert_eq!(
            &Hello::ours(16 << 20, 256 << 10).encode()[..],
            &[
                0, 0, 0, 28, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'Z', b'R', b'P', b'C', 0,
                1, // version
                0, 0, 0, 1, // features: metadata
                1, 0, 0, 0, // max frame: 16 MiB
                0, 4, 0, 0, // stream window: 256 KiB
            ]
        );
    }

    #[test]
    fn hello_round_trips_and_rejects_bad_magic() {
        let hello = Hello {
            version: 7,
            features: 3,
            max_frame: Some(1 << 20),
            stream_window: Some(1 << 16),
        };
        let payload = hello.encode().slice(14..);
        assert_eq!(Hello::parse(payload.clone()), Ok(hello));
        assert_eq!(hello.accepts(), 1 << 20);
        assert_eq!(hello.stream_window(), 1 << 16);
        // A Hello without the max frame: the peer is taken to accept the default.
        let short = Hello::parse(payload.slice(..10)).unwrap();
        assert_eq!((short.max_frame, short.accepts()), (None, 16 << 20));
        let no_window = Hello::parse(payload.slice(..14)).unwrap();
        assert_eq!(
            no_window.stream_window(),
            crate::stream::DEFAULT_WINDOW,
            "a Hello without the window means the default"
        );
        let mut bad = payload.to_vec();
        bad[0] = b'X';
        assert!(Hello::parse(bad.into()).unwrap_err().contains("magic"));
        assert!(Hello::parse(Bytes::from_static(b"ZRPC")).is_err());
    }

    #[test]
    fn error_messages_are_cut_to_1_kib_at_a_char_boundary() {
        let long = "é".repeat(5_000); // 2 bytes each
        let reply = Status::Panicked.reply(9, &long);
        let message = &reply[15..];
        assert!(message.len() <= MAX_MESSAGE && message.len() > MAX_MESSAGE - 2);
        assert!(std::str::from_utf8(message).is_ok());
        let goaway = GoAwayReason::Protocol.encode(&long);
        assert!(goaway.len() <= 15 + MAX_MESSAGE);
        assert_eq!(&Status::Decode.reply(1, "short")[15..], b"short");
    }

    #[test]
    fn longer_hellos_are_accepted_and_a_zero_limit_means_the_default() {
        let mut payload = Hello::ours(1 << 20, 1 << 20).encode()[14..].to_vec();
        payload.extend_from_slice(b"future fields");
        assert_eq!(Hello::parse(payload.into()).unwrap().accepts(), 1 << 20);
        let zero = Hello {
            version: 1,
            features: 0,
            max_frame: Some(0),
            stream_window: Some(0),
        };
        let parsed = Hello::parse(zero.encode().slice(14..)).unwrap();
        assert_eq!((parsed.max_frame, parsed.accepts()), (None, 16 << 20));
    }

    #[test]
    fn golden_bytes_of_a_request_head() {
        let mut f = FrameBuf::new(Kind::Request, 5, 0);
        RequestHead {
            method_id: 0x1122_3344_5566_7788,
            budget: Duration::from_millis(1500),
        }
        .write(&mut f);
        f.payload_mut().put_u8(42); // one byte of args
        let bytes = f.finish();
        assert_eq!(
            &bytes[..],
            &[
                0, 0, 0, 27, 2, 0, 0, 0, 0, 0, 0, 0, 0, 5, // prefix + header
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // method id
                0, 0, 0, 0, 0, 0x16, 0xE3, 0x60, // 1_500_000 µs
                42,
            ]
        );
        let (head, args) = RequestHead::parse(bytes.slice(14..)).unwrap();
        assert_eq!(head.budget, Duration::from_millis(1500));
        assert_eq!(&args[..], &[42]);
        assert!(RequestHead::parse(Bytes::from_static(&[0; 15])).is_none());
    }

    /// `split` gives the same head and arguments as `parse`, from a payload
    /// copied in place or shared, and refuses one shorter than the head.
    #[test]
    fn split_matches_parse_in_place_and_shared() {
        for args_len in [0usize, 1, 22, 23, 100] {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
            bytes.extend_from_slice(&1_500_000u64.to_be_bytes());
            bytes.extend((0..args_len).map(|i| i as u8));
            let (want_head, want_args) = RequestHead::parse(Bytes::from(bytes.clone())).unwrap();
            let shared = Payload::from(Bytes::from(bytes.clone()));
            let mut forms = vec![shared];
            forms.extend(Payload::copy_small(&bytes));
            for payload in forms {
                let (head, args) = RequestHead::split(payload).unwrap();
                assert_eq!(head.method_id, want_head.method_id);
                assert_eq!(head.budget, want_head.budget);
                assert_eq!(&args[..], &want_args[..], "{args_len} bytes of arguments");
            }
        }
        assert!(RequestHead::split(Payload::copy_small(&[0; 15]).unwrap()).is_none());
        assert!(RequestHead::split(Bytes::from_static(&[0; 15]).into()).is_none());
    }

    #[test]
    fn golden_bytes_of_an_error_reply_and_goaway() {
        assert_eq!(
            &Status::UnknownMethod.reply(2, "no")[..],
            &[0, 0, 0, 13, 3, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, b'n', b'o']
        );
        let g = GoAwayReason::Shutdown.encode("bye");
        assert_eq!(
            &g[..],
            &[
                0, 0, 0, 14, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'b', b'y', b'e'
            ]
        );
        assert_eq!(
            GoAwayReason::parse(&g[14..]),
            (Some(GoAwayReason::Shutdown), "bye".into())
        );
    }

    #[test]
    fn method_ids_are_fnv1a_and_stable() {
        // Fixed forever: changing these breaks every deployed peer.
        assert_eq!(super::super::method_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::super::method_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(
            super::super::method_id("Calculator.add"),
            super::super::method_id("Calculator.div")
        );
    }
}
