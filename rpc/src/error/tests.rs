use std::io::ErrorKind;

use super::*;

#[test]
fn error_is_send_sync_static_and_names_the_method() {
    fn assert_bounds<E: std::error::Error + Send + Sync + 'static>() {}
    assert_bounds::<Error>();
    let e = Error::UnknownMethod {
        method: "Calculator.mul",
    };
    assert!(e.to_string().starts_with("Calculator.mul: "), "{e}");
}

/// A frame too large says how large, and where the limit is raised: on
/// both sides, by the builders' setting.
#[test]
fn frame_too_large_names_the_size_and_the_settings_of_both_sides() {
    let e = Error::FrameTooLarge {
        method: "Store.put",
        what: "request",
        size: 300,
        limit: 200,
    };
    let text = e.to_string();
    assert!(
        text.starts_with("Store.put: request of 300 bytes exceeds the frame limit of 200 bytes"),
        "{text}"
    );
    for setting in [
        "both sides",
        "Channel::builder().max_frame",
        "Server::builder().max_frame",
    ] {
        assert!(text.contains(setting), "{text}");
    }
}

/// `Protocol` and `Io` name the method when a call was involved, and only
/// then.
#[test]
fn protocol_and_io_errors_name_the_method_of_their_call() {
    let e = Error::Protocol {
        method: Some("Calc.add"),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "Calc.add: protocol error: bad");
    assert_eq!(Error::protocol("bad").to_string(), "protocol error: bad");
    let refused = || std::io::Error::new(ErrorKind::ConnectionRefused, "refused");
    let e = Error::io("connecting to 127.0.0.1:1", refused()).for_call("Calc.add");
    assert_eq!(
        e.to_string(),
        "Calc.add: connecting to 127.0.0.1:1: refused"
    );
    let Error::Io { source, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(source.kind(), ErrorKind::ConnectionRefused);
    let e = Error::io("binding 127.0.0.1:1", refused());
    assert_eq!(e.to_string(), "binding 127.0.0.1:1: refused");
    let e = Error::protocol("not ours").for_call("Calc.add");
    assert_eq!(e.to_string(), "Calc.add: protocol error: not ours");
}

#[test]
fn a_disconnect_before_the_request_was_sent_says_so() {
    let e = Error::disconnected("Calc.add", "no connection", false);
    assert_eq!(
        e.to_string(),
        "Calc.add: disconnected before the request was sent: no connection"
    );
    let e = Error::disconnected("Calc.add", "the server closed the connection", true);
    assert_eq!(
        e.to_string(),
        "Calc.add: disconnected: the server closed the connection"
    );
}

/// The table in `Error`'s docs, row by row: (error, may have run, retryable).
#[test]
fn each_variant_says_whether_it_may_have_run_and_whether_a_retry_can_help() {
    let m = "S.m";
    let io = |kind| Error::io("connecting", std::io::Error::new(kind, "x"));
    let table = [
        (
            Error::DeadlineExceeded {
                method: m,
                budget: Duration::ZERO,
            },
            true,
            false,
        ),
        (Error::disconnected(m, "lost", true), true, true),
        (Error::disconnected(m, "no connection", false), false, true),
        (Error::UnknownMethod { method: m }, false, false),
        (
            Error::Overloaded {
                method: m,
                reason: "busy".into(),
            },
            false,
            true,
        ),
        (
            Error::ShuttingDown {
                method: m,
                mid_stream: false,
            },
            false,
            true,
        ),
        (
            Error::ShuttingDown {
                method: m,
                mid_stream: true,
            },
            true,
            true,
        ),
        (
            Error::Aborted {
                method: m,
                message: "no".into(),
            },
            true,
            false,
        ),
        (
            Error::Panicked {
                method: m,
                message: "boom".into(),
            },
            true,
            false,
        ),
        (
            Error::FrameTooLarge {
                method: m,
                what: "request",
                size: 2,
                limit: 1,
            },
            false,
            false,
        ),
        (
            Error::FrameTooLarge {
                method: m,
                what: "response",
                size: 2,
                limit: 1,
            },
            true,
            false,
        ),
        (
            Error::Decode {
                method: m,
                side: "request on the server",
                message: "bad".into(),
            },
            false,
            false,
        ),
        (
            Error::Decode {
                method: m,
                side: "response",
                message: "bad".into(),
            },
            true,
            false,
        ),
        (
            Error::Decode {
                method: m,
                side: SERVER_ENCODE_SIDE,
                message: "bad".into(),
            },
            true,
            false,
        ),
        (
            Error::Encode {
                method: m,
                message: "bad".into(),
            },
            false,
            false,
        ),
        (
            Error::SchemaMismatch {
                method: m,
                client: "m(u8) -> ()".into(),
                server: "m(u16) -> ()".into(),
            },
            false,
            false,
        ),
        (Error::protocol("not ours").for_call(m), false, false),
        (io(ErrorKind::ConnectionRefused).for_call(m), false, true),
        (io(ErrorKind::TimedOut), false, true),
        (io(ErrorKind::NotFound), false, true),
        (io(ErrorKind::AddrInUse), false, false),
        (io(ErrorKind::PermissionDenied), false, false),
        (Error::Config("two services".into()), false, false),
    ];
    for (e, may_have_run, retryable) in table {
        assert_eq!(e.may_have_run(), may_have_run, "may_have_run of {e:?}");
        assert_eq!(e.is_retryable(), retryable, "is_retryable of {e:?}");
    }
}

/// A schema mismatch names the method and both shapes, and says why they
/// differ; the reply carries only the server's, and the call adds the
/// client's (once: a shape already there is kept).
#[test]
fn a_schema_mismatch_names_both_shapes() {
    let from_reply = status::from_status(
        "Calc.add",
        Duration::ZERO,
        "response",
        crate::protocol::Status::SchemaMismatch as u8,
        b"add(String, i64) -> i64",
        false,
    );
    let e = from_reply.with_client_shape("add(i64, i64) -> i64");
    assert_eq!(
        e.to_string(),
        "Calc.add: the client's shape `add(i64, i64) -> i64` differs from the server's \
         `add(String, i64) -> i64`; client and server were built from different versions \
         of the trait"
    );
    let Error::SchemaMismatch { client, .. } = e.with_client_shape("other() -> ()") else {
        panic!("not a SchemaMismatch")
    };
    assert_eq!(client, "add(i64, i64) -> i64");
    let other = Error::UnknownMethod { method: "Calc.add" }.with_client_shape("x() -> ()");
    assert!(matches!(other, Error::UnknownMethod { .. }));
}
