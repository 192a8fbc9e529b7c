//! Shared by the integration tests: services, and a server on 127.0.0.1:0
//! or over any transport (`transport.rs`).
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use rpc_suite::calculator::{Calc, CalculatorClient, CalculatorServer, MathError};
pub use transport::Transport;

/// Starts a server with the calculator and the test services.
pub async fn start_server() -> rpc::ServerHandle {
    start_with(rpc::Server::builder()).await
}

/// Adds the test services to `builder` and binds 127.0.0.1:0.
pub async fn start_with(builder: rpc::server::Builder) -> rpc::ServerHandle {
    Transport::Tcp.serve(with_services(builder)).await
}

/// Adds the test services to `builder`, serves it over `transport`, and
/// connects a channel to it.
pub async fn start_over(
    transport: Transport,
    builder: rpc::server::Builder,
) -> (rpc::ServerHandle, rpc::Channel) {
    transport.start(with_services(builder)).await
}

/// `err` says the server did not answer the handshake in time: an I/O
/// timeout (slow, not foreign: a retry may get through), before any call.
pub fn assert_handshake_timed_out(err: &rpc::Error) {
    let rpc::Error::Io { source, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("handshake"), "{err}");
    assert!(err.is_retryable() && !err.may_have_run(), "{err:?}");
}

/// The resident set of the process whose `status` file is at `path` (Linux).
pub fn resident_of(path: &str) -> usize {
    let status = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {path}"));
    kib * 1024
}

/// This process's resident set (Linux).
pub fn resident() -> usize {
    resident_of("/proc/self/status")
}

/// `builder` with the calculator and the test services.
pub fn with_services(builder: rpc::server::Builder) -> rpc::server::Builder {
    builder
        .add_service(CalculatorServer::new(Calc))
        .add_service(ShapesServer::new(ShapesImpl))
        .add_service(SlowServer::new(SlowImpl))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: i32,
    pub y: i32,
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    Circle { center: Point, radius: f64 },
    Polygon(Vec<Point>),
    Empty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppError {
    pub code: u16,
    pub message: String,
}

/// One method per supported argument/return shape.
#[rpc::service]
pub trait Shapes {
    async fn unit(&self);
    async fn string(&self, s: String) -> String;
    async fn structs(&self, p: Point) -> Point;
    async fn enums(&self, s: Shape) -> Shape;
    async fn tuple(&self, t: (u8, i128, bool)) -> (bool, i128, u8);
    async fn option(&self, o: Option<Vec<String>>) -> Option<usize>;
    async fn map(&self, m: HashMap<String, Vec<u32>>) -> Vec<(String, u32)>;
    async fn result(&self, fail: bool) -> Result<Point, AppError>;
    #[allow(clippy::too_many_arguments)]
    async fn many(&self, a: u8, b: u16, c: u32, d: u64, e: f32, f: char, g: Vec<i64>) -> String;
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    async fn make(&self, len: usize) -> Vec<u8>;
}

pub struct ShapesImpl;

impl Shapes for ShapesImpl {
    async fn unit(&self) {}
    async fn string(&self, s: String) -> String {
        s.chars().rev().collect()
    }
    async fn structs(&self, p: Point) -> Point {
        Point {
            x: p.y,
            y: p.x,
            label: p.label.map(|l| l.to_uppercase()),
        }
    }
    async fn enums(&self, s: Shape) -> Shape {
        s
    }
    async fn tuple(&self, t: (u8, i128, bool)) -> (bool, i128, u8) {
        (t.2, t.1, t.0)
    }
    async fn option(&self, o: Option<Vec<String>>) -> Option<usize> {
        o.map(|v| v.len())
    }
    async fn map(&self, m: HashMap<String, Vec<u32>>) -> Vec<(String, u32)> {
        let mut v: Vec<_> = m.into_iter().map(|(k, v)| (k, v.iter().sum())).collect();
        v.sort();
        v
    }
    async fn result(&self, fail: bool) -> Result<Point, AppError> {
        if fail {
            Err(AppError {
                code: 404,
                message: "no such point".into(),
            })
        } else {
            Ok(Point {
                x: 1,
                y: 2,
                label: None,
            })
        }
    }
    async fn many(&self, a: u8, b: u16, c: u32, d: u64, e: f32, f: char, g: Vec<i64>) -> String {
        format!("{a} {b} {c} {d} {e} {f} {g:?}")
    }
    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
    async fn make(&self, len: usize) -> Vec<u8> {
        vec![7; len]
    }
}

/// Handlers that take time, panic, or report their context.
#[rpc::service]
pub trait Slow {
    /// Sleeps, then returns `id`.
    async fn sleep(&self, ms: u64, id: u32) -> u32;
    /// The budget the handler sees, in milliseconds.
    async fn budget_ms(&self) -> u64;
    async fn panic(&self, message: String) -> u32;
}

pub struct SlowImpl;

impl Slow for SlowImpl {
    async fn sleep(&self, ms: u64, id: u32) -> u32 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        id
    }
    async fn budget_ms(&self) -> u64 {
        rpc::context::current().remaining().as_millis() as u64
    }
    async fn panic(&self, message: String) -> u32 {
        panic!("{message}")
    }
}

pub mod fleet;
pub mod hand;
pub mod probe;
pub mod raw;
pub mod transport;
