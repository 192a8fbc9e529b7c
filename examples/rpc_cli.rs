//! A small command-line tool for any server of this library, through the
//! services every server answers: introspection (`rpc::introspect`) and
//! health (`rpc::health`). It needs no copy of the server's traits.
//!
//! ```text
//! cargo run --example rpc_cli -- serve-demo 127.0.0.1:7000   # a server to try it on
//! cargo run --example rpc_cli -- list 127.0.0.1:7000         # services and methods
//! cargo run --example rpc_cli -- health 127.0.0.1:7000       # the whole server
//! cargo run --example rpc_cli -- health 127.0.0.1:7000 Feed  # one service
//! cargo run --example rpc_cli --features json -- call 127.0.0.1:7000 Calculator.add '[2, 3]'
//! ```
//!
//! `call` needs the feature `json` here and on the server (whose `serve-demo`
//! then accepts JSON): the arguments travel as written, one JSON array
//! element per argument, and the server decodes them as its trait says. It
//! calls unary methods; the server's introspection says which those are.
//!
//! `examples/server.rs` (`cargo run --example server`, on 127.0.0.1:7878)
//! works as well.

use std::io::Write;
use std::process::ExitCode;

use rpc::health::{HealthClient, ServingStatus};
use rpc::introspect::{IntrospectionClient, MethodInfo, MethodKind};
use rpc_suite::calculator::{Calc, CalculatorServer};
use rpc_suite::feed::{FeedImpl, FeedServer};

const USAGE: &str = "\
usage: rpc_cli <command> ...

commands:
  list ADDR                      the services ADDR serves, their methods and signatures
  health ADDR [SERVICE]          whether ADDR (or one of its services) is serving
  call ADDR Service.method JSON  call a method with JSON arguments
  serve-demo ADDR                serve a calculator and a streaming feed at ADDR";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["list", addr] => list(addr).await,
        ["health", addr] => health(addr, "").await,
        ["health", addr, service] => health(addr, service).await,
        ["call", addr, method, json] => call(addr, method, json).await,
        ["serve-demo", addr] => serve_demo(addr).await,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpc_cli: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// Prints each service and, under it, each method: its kind, its signature
/// as the trait writes it, whether it is idempotent, and its fingerprint.
async fn list(addr: &str) -> Result {
    let client = IntrospectionClient::connect(addr).await?;
    // Written, not printed: a closed pipe (`| head`) ends the listing
    // with an error instead of a panic.
    let mut out = std::io::stdout().lock();
    for service in client.services().await? {
        writeln!(out, "{}", service.name)?;
        for m in &service.methods {
            writeln!(out, "  {}", signature(m))?;
            let idempotent = if m.idempotent { ", idempotent" } else { "" };
            writeln!(
                out,
                "      {}{idempotent}; shape {} ({:#018x})",
                kind(m.kind),
                m.shape,
                m.fingerprint
            )?;
        }
    }
    Ok(())
}

/// `name(arg: Type, ..) -> Return`, with the method's own name (not the
/// service's).
fn signature(m: &MethodInfo) -> String {
    let name = m.name.split_once('.').map_or(m.name.as_str(), |(_, m)| m);
    let args: Vec<String> = m
        .args
        .iter()
        .map(|a| format!("{}: {}", a.name, a.ty))
        .collect();
    format!("{name}({}) -> {}", args.join(", "), m.returns)
}

fn kind(kind: MethodKind) -> &'static str {
    match kind {
        MethodKind::Unary => "unary",
        MethodKind::ServerStreaming => "server streaming",
        MethodKind::ClientStreaming => "client streaming",
        MethodKind::Bidi => "bidirectional streaming",
        _ => "another kind",
    }
}

/// Calls `method` ("Service.method") with `json` (an array, one element per
/// argument) and prints what it returns, as JSON.
#[cfg(feature = "json")]
async fn call(addr: &str, method: &str, json: &str) -> Result {
    let args: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the arguments are not JSON: {e}"))?;
    // What the server says of the method, if it says (introspection may be
    // off): a streaming method cannot be called this way.
    if let Ok(client) = IntrospectionClient::connect(addr).await
        && let Ok(services) = client.services().await
    {
        let info = services
            .iter()
            .flat_map(|s| &s.methods)
            .find(|m| m.name == method)
            .ok_or_else(|| {
                format!("{addr} serves no method {method} (`list` shows what it does)")
            })?;
        if info.kind != MethodKind::Unary {
            let why = format!(
                "{method} is a {} method: only unary methods take their arguments as one JSON value",
                kind(info.kind)
            );
            return Err(why.into());
        }
        let given = args.as_array().map(Vec::len);
        if given.is_some_and(|n| n != info.args.len()) {
            let want = info.args.len();
            let why = format!(
                "{method} takes {want} argument{} ({}); got {}",
                if want == 1 { "" } else { "s" },
                signature(info),
                given.unwrap_or_default()
            );
            return Err(why.into());
        }
    }
    let channel = rpc::Channel::builder()
        .format(rpc::Format::Json)
        .connect(addr)
        .await?;
    let value = channel.call_json(method, args).await?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

#[cfg(not(feature = "json"))]
async fn call(_addr: &str, _method: &str, _json: &str) -> Result {
    Err("calling with JSON arguments needs the `json` feature: \
         cargo run --example rpc_cli --features json -- call ..."
        .into())
}

/// Prints the serving status of `service` (`""`: the whole server).
async fn health(addr: &str, service: &str) -> Result {
    let client = HealthClient::connect(addr).await?;
    let status = client.check(service.to_owned()).await?;
    let what = if service.is_empty() {
        "server"
    } else {
        service
    };
    let word = match status {
        ServingStatus::Serving => "serving",
        ServingStatus::NotServing => "not serving",
        ServingStatus::Unknown => "unknown (not served here)",
    };
    println!("{what}: {word}");
    Ok(())
}

/// Serves the calculator and the feed at `addr` until ctrl-c.
async fn serve_demo(addr: &str) -> Result {
    let server = rpc::Server::builder()
        .add_service(CalculatorServer::new(Calc))
        .add_service(FeedServer::new(FeedImpl::default()))
        .bind(addr)
        .await?;
    println!(
        "serving Calculator and Feed on {}; ctrl-c to stop",
        server.local_addr()
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
