//! The handshake: magic bytes, protocol version and frame limit, both ways,
//! before anything else crosses a new connection.

use std::io::{self, ErrorKind::TimedOut, ErrorKind::UnexpectedEof};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::FrameReader;
use crate::Error;
use crate::codec::{Formats, refused};
use crate::protocol::{
    FrameError, HANDSHAKE_MAX_FRAME, HEADER_LEN, Hello, Kind, LEN_PREFIX, MAGIC, MIN_MAX_FRAME,
    VERSION, features,
};

/// Sends our Hello, then reads and checks the peer's, within `timeout`.
/// The server calls it with `server = true` and answers only after the
/// client's Hello arrived, so a non-RPC peer learns nothing. A client's
/// Hello names the format it uses; a server's says the one it answers in:
/// the client's if `formats` (what a server accepts; a client ignores it)
/// holds it, else the one it accepts, and then both sides fail (see
/// [`crate::protocol`], Formats).
pub(crate) async fn handshake<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    server: bool,
    timeout: Duration,
    mut ours: Hello,
    formats: Formats,
) -> Result<Hello, Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Until the peer has shown it speaks the protocol, a frame may be only
    // as long as a Hello can be: a stranger's length prefix allocates little.
    reader.set_max_frame(HANDSHAKE_MAX_FRAME);
    // Set once the peer's first frame is read: from then on, what is
    // buffered is what it sent next, not how it began.
    let mut first_read = false;
    let exchange = async {
        if !server {
            send_hello(writer, ours).await?;
        }
        let first = reader.next().await;
        if let Some(Err(e)) = first {
            return Err(first_frame_failed(e, reader.read_buffer(), server));
        }
        first_read = true;
        let theirs = match first {
            Some(Ok(f)) if f.kind == Kind::Hello => {
                Hello::parse(f.payload).map_err(Error::protocol)?
            }
            Some(Ok(f)) => {
                return Err(Error::protocol(format!(
                    "expected a Hello frame first, got {:?}",
                    f.kind
                )));
            }
            _ => {
                let closed = "the peer closed the connection before sending its Hello";
                return Err(Error::io(CONTEXT, io::Error::new(UnexpectedEof, closed)));
            }
        };
        // A server answers in the client's format, or names its own.
        let format = formats.answer(theirs.features);
        if server {
            let bit = format.unwrap_or_else(|only| only);
            ours.features = (ours.features & !features::JSON) | bit;
            // Answer even on a version mismatch, so the client can name both versions.
            send_hello(writer, ours).await?;
        }
        if theirs.version != VERSION {
            let (client, srv) = if server {
                (theirs.version, VERSION)
            } else {
                (VERSION, theirs.version)
            };
            return Err(Error::protocol(format!(
                "protocol version mismatch: the client speaks v{client}, the server speaks v{srv}"
            )));
        }
        if server && let Err(only) = format {
            return Err(refused(theirs.features, only));
        }
        if !server && (theirs.features ^ ours.features) & features::JSON != 0 {
            return Err(refused(ours.features, theirs.features));
        }
        if let Some(m) = theirs.max_frame
            && (m as usize) < MIN_MAX_FRAME
        {
            return Err(Error::protocol(format!(
                "the peer accepts frames of at most {m} bytes, below the minimum of {MIN_MAX_FRAME}"
            )));
        }
        Ok(theirs)
    };
    let outcome = tokio::time::timeout(timeout, exchange).await;
    match outcome {
        Ok(outcome) => {
            if outcome.is_ok() {
                reader.set_max_frame(ours.accepts());
                reader.accept_flags(ours.accepted_flags());
                reader.accept_compression(ours.features & (features::LZ4 | features::ZSTD));
            }
            outcome
        }
        // A peer that sent something else and waits for an answer (an HTTP
        // client whose request fits under the frame limit, say).
        Err(_) if !first_read && !could_begin_a_hello(reader.read_buffer()) => {
            Err(not_this_protocol(reader.read_buffer(), server))
        }
        // Slow, not foreign: a server at its connection cap answers late.
        Err(_) => {
            let late = format!("not completed within {timeout:?}");
            Err(Error::io(CONTEXT, io::Error::new(TimedOut, late)))
        }
    }
}

/// What an I/O error of the handshake says was being done. (A client adds
/// the server's address: "the handshake with 127.0.0.1:7878".)
const CONTEXT: &str = "the handshake";

/// Why reading the peer's first frame failed. Bytes that cannot begin a
/// Hello say more than the failure does (a length no Hello has, a close
/// part-way): whoever sent them does not speak this protocol, and the bytes
/// often say what it does speak.
fn first_frame_failed(e: FrameError, buffered: &[u8], server: bool) -> Error {
    if !could_begin_a_hello(buffered) {
        return not_this_protocol(buffered, server);
    }
    match e {
        FrameError::Io(e) => Error::io(CONTEXT, e),
        e => Error::protocol(format!("bad handshake: {e}")),
    }
}

/// The first bytes of any Hello frame, with `None` where they vary: the
/// length (a later version may send a longer Hello), kind Hello, no flags,
/// call id 0, then the magic.
const HELLO_START: [Option<u8>; LEN_PREFIX + HEADER_LEN + MAGIC.len()] = {
    let mut start = [Some(0); LEN_PREFIX + HEADER_LEN + MAGIC.len()];
    start[LEN_PREFIX - 1] = None;
    start[LEN_PREFIX] = Some(Kind::Hello as u8);
    let mut i = 0;
    while i < MAGIC.len() {
        start[LEN_PREFIX + HEADER_LEN + i] = Some(MAGIC[i]);
        i += 1;
    }
    start
};

/// Whether `bytes` (what has arrived of the peer's first frame) could be
/// the start of a Hello. No bytes could.
fn could_begin_a_hello(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .zip(HELLO_START)
        .all(|(&b, expected)| expected.is_none_or(|e| e == b))
}

/// How many of a foreign peer's first bytes an error shows.
const SHOWN: usize = 64;

/// The error for a peer whose first bytes are `first`, which no peer of ours
/// sends: the bytes shown as text (escaped, and cut to [`SHOWN`]), unless
/// they are a TLS record (a peer that speaks TLS where we speak plaintext),
/// which is said in words: its bytes would tell a user nothing.
fn not_this_protocol(first: &[u8], server: bool) -> Error {
    if looks_like_tls(first) {
        return Error::protocol(if server {
            "the client began a TLS handshake, but this server serves plaintext; \
             serve TLS with `Server::builder().tls(..)`, or connect without TLS"
        } else {
            "the server answered with TLS; connect with TLS (`Channel::connect_tls`)"
        });
    }
    let shown = &first[..first.len().min(SHOWN)];
    let more = if first.len() > SHOWN { "..." } else { "" };
    Error::protocol(format!(
        "the peer does not speak this RPC protocol; its first bytes were \"{}\"{more}",
        shown.escape_ascii()
    ))
}

/// Whether `bytes` begin as a TLS record does: a handshake (a ClientHello,
/// a ServerHello) or an alert (what a TLS server answers a plaintext Hello
/// with), then a major version of 3 (every SSL 3.0 to TLS 1.3 record). No
/// Hello of ours begins so: its first byte is a length's top byte, 0.
fn looks_like_tls(bytes: &[u8]) -> bool {
    const ALERT: u8 = 0x15;
    const HANDSHAKE: u8 = 0x16;
    matches!(bytes, [ALERT | HANDSHAKE, 3, ..])
}

async fn send_hello<W: AsyncWrite + Unpin>(writer: &mut W, ours: Hello) -> Result<(), Error> {
    // Flushed: a transport that buffers (TLS) would otherwise hold the
    // Hello back while both sides wait for each other.
    let sent = async {
        writer.write_all(&ours.encode()).await?;
        writer.flush().await
    };
    sent.await.map_err(|e| Error::io(CONTEXT, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameCodec;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_peer_advertising_a_frame_limit_below_the_minimum_is_refused() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let (r, mut w) = tokio::io::split(ours);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        let peer = tokio::spawn(async move {
            let mut hello = [0u8; 32];
            theirs.read_exact(&mut hello).await.unwrap();
            let tiny = Hello {
                max_frame: Some(100),
                ..Hello::ours(MIN_MAX_FRAME, crate::stream::DEFAULT_WINDOW)
            };
            theirs.write_all(&tiny.encode()).await.unwrap();
            theirs
        });
        let err = handshake(
            &mut reader,
            &mut w,
            false,
            Duration::from_secs(5),
            Hello::ours(1 << 20, crate::stream::DEFAULT_WINDOW),
            Formats::BUILT,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("below the minimum"), "{err}");
        drop(peer.await.unwrap());
    }

    /// A server that does not accept the client's format answers with its
    /// Hello naming the one it does, then fails with the error the client
    /// reads from that Hello too.
    #[tokio::test]
    async fn a_server_refusing_a_format_names_both_in_its_hello_and_its_error() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let (r, mut w) = tokio::io::split(ours);
        let mut reader = FrameReader::new(r, FrameCodec::new(1 << 20));
        let window = crate::stream::DEFAULT_WINDOW;
        let peer = tokio::spawn(async move {
            let asking = Hello::ours(MIN_MAX_FRAME, window).with_features(features::JSON);
            theirs.write_all(&asking.encode()).await.unwrap();
            let mut answer = vec![0u8; 32];
            theirs.read_exact(&mut answer).await.unwrap();
            Hello::parse(bytes::Bytes::from(answer).split_off(14)).unwrap()
        });
        let only_bincode = Formats::of([crate::Format::Bincode]);
        let ours = Hello::ours(1 << 20, window);
        let timeout = Duration::from_secs(5);
        let err = handshake(&mut reader, &mut w, true, timeout, ours, only_bincode)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "protocol error: the client asked for the JSON format; this server accepts only bincode"
        );
        let answered = peer.await.unwrap();
        assert!(!answered.accepts_feature(features::JSON), "{answered:?}");
    }

    /// Runs our side of the handshake (the server's if `server`) against a
    /// peer that sends `sent` and then waits for up to `hold` before closing.
    async fn against(sent: impl Into<Vec<u8>>, server: bool, hold: Duration) -> Error {
        let sent = sent.into();
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let (r, mut w) = tokio::io::split(ours);
        let mut reader = FrameReader::new(r, FrameCodec::new(16 << 20));
        let peer = tokio::spawn(async move {
            theirs.write_all(&sent).await.unwrap();
            let _ = tokio::time::timeout(hold, theirs.read_to_end(&mut Vec::new())).await;
        });
        let timeout = Duration::from_secs(10);
        let ours = Hello::ours(16 << 20, crate::stream::DEFAULT_WINDOW);
        let err = handshake(&mut reader, &mut w, server, timeout, ours, Formats::BUILT)
            .await
            .unwrap_err();
        drop((reader, w));
        peer.await.unwrap();
        err
    }

    /// A client that is not ours (an HTTP client, say) is named as such in
    /// the server's error (which it logs), with what it sent as text.
    #[tokio::test(start_paused = true)]
    async fn a_server_names_a_client_that_does_not_speak_the_protocol_and_shows_its_bytes() {
        let get = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let err = against(&get[..], true, Duration::from_secs(60)).await;
        assert!(
            matches!(err, Error::Protocol { method: None, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "protocol error: the peer does not speak this RPC protocol; \
             its first bytes were \"GET / HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n\""
        );
    }

    /// A TLS record where a Hello should be is named as TLS, on each side,
    /// with what to do about it; never as a frame too large.
    #[tokio::test(start_paused = true)]
    async fn a_tls_peer_of_a_plaintext_one_is_told_to_use_tls() {
        // The start of a ClientHello, as a TLS client sends it to a server.
        let client_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        let err = against(&client_hello[..], true, Duration::from_secs(60)).await;
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("the client began a TLS handshake, but this server serves plaintext"),
            "{err}"
        );
        // A decode_error alert, as a TLS server answers a plaintext Hello.
        let alert = b"\x15\x03\x03\x00\x02\x02\x32";
        let err = against(&alert[..], false, Duration::ZERO).await;
        assert!(
            err.to_string()
                .contains("the server answered with TLS; connect with TLS"),
            "{err}"
        );
    }

    /// What is shown is bounded, and bytes that are not printable are
    /// escaped.
    #[tokio::test(start_paused = true)]
    async fn the_bytes_shown_are_escaped_and_cut() {
        let long = [&b"\x17\x03\x01\x02\x00\x01"[..], &[b'x'; 300]].concat();
        let text = against(long, false, Duration::from_secs(60))
            .await
            .to_string();
        assert!(
            text.contains(r#"its first bytes were "\x17\x03\x01\x02\x00\x01xxx"#),
            "{text}"
        );
        assert!(text.ends_with("xxx\"..."), "{text}");
        assert!(text.len() < 200, "{text}");
    }

    /// A peer that sends a few foreign bytes and waits (fewer than a length
    /// prefix, so no frame error comes): named at the handshake timeout.
    /// One that sent the start of a real Hello and stalls only timed out.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stalls_is_named_by_what_it_sent_before() {
        let err = against(b"hi\n", true, Duration::from_secs(60)).await;
        assert!(
            err.to_string()
                .contains(r#"does not speak this RPC protocol; its first bytes were "hi\n""#),
            "{err}"
        );
        let hello = Hello::ours(MIN_MAX_FRAME, crate::stream::DEFAULT_WINDOW).encode();
        let err = against(&hello[..20], true, Duration::from_secs(60)).await;
        let Error::Io { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(source.kind(), TimedOut, "{err}");
    }

    /// A peer that closes before its Hello, having sent nothing, is an I/O
    /// failure (it may come back), not a foreign peer.
    #[tokio::test]
    async fn a_peer_that_closes_at_once_is_an_io_error() {
        let err = against(b"", false, Duration::ZERO).await;
        let Error::Io { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(source.kind(), UnexpectedEof, "{err}");
        assert!(err.to_string().starts_with("the handshake: "), "{err}");
    }
}
