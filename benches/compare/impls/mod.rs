//! The implementations under test, one file each (server and client), and the
//! one trait the load loops call them through.
//!
//! In this file `rpc` names the module `impls::rpc`; the library is `::rpc`.

pub(crate) mod baseline;
pub(crate) mod baseline_stream;
pub(crate) mod rpc;
pub(crate) mod rpc_stream;
pub(crate) mod rpc_unary;
pub(crate) mod tarpc;
pub(crate) mod tonic;

/// An implementation that a child process of this binary runs: the names are
/// the `IMPL` of `--child IMPL WORKLOAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Impl {
    Rpc,
    Tarpc,
    Baseline,
    BaselineYield,
    BaselineUnbatched,
    RpcUnbatched,
    /// This library through a balanced channel of one endpoint: what the
    /// balancer costs a call.
    RpcBalanced,
    /// A balanced channel of two endpoints, both the one server (over IPv4
    /// and as an IPv4-mapped IPv6 address): what choosing costs a call.
    RpcBalanced2,
    /// This library's server streaming: one call streams every item (S1, S2).
    RpcStream,
    /// This library's unary calls, one per item, pipelined (S1, S2).
    RpcUnary,
    /// tonic 0.14 + prost, server streaming over one HTTP/2 connection (S1, S2).
    Tonic,
    /// A hand-written stream, items encoded back to back with nothing
    /// around them (S1, S2): a floor under a library's cost per item.
    BaselineStream,
    /// This library with one interceptor that does nothing on each side:
    /// what the interceptor machinery costs a call.
    RpcIntercepted,
    /// This library over TLS (rustls, ring; a certificate made at start):
    /// what TLS costs a call.
    RpcTls,
    /// This library with its requests and replies compressed with LZ4 (Z1).
    RpcLz4,
    /// The same with zstd (Z1).
    RpcZstd,
    /// This library with a subscriber that records every span: what the
    /// calls' spans cost when someone listens.
    RpcTraced,
    /// This library with JSON payloads (`rpc::Format::Json`) instead of
    /// bincode: what the self-describing format costs a call.
    RpcJson,
}

/// What an [`Impl`] is built from: the code that serves and connects it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Family {
    /// `balanced`: the endpoints of a balanced channel (0: a plain one);
    /// `extra`: what the server and client add (see [`rpc::Extra`]).
    Rpc {
        batching: bool,
        balanced: u8,
        extra: rpc::Extra,
    },
    Tarpc,
    Baseline(baseline::Writes),
    RpcStream,
    RpcUnary,
    Tonic,
    BaselineStream,
}

impl Impl {
    /// The report's order: tables, bars and the rotation of every repeat.
    pub(crate) const ALL: [Impl; 18] = [
        Impl::Rpc,
        Impl::RpcTraced,
        Impl::RpcJson,
        Impl::RpcIntercepted,
        Impl::RpcTls,
        Impl::RpcLz4,
        Impl::RpcZstd,
        Impl::RpcBalanced,
        Impl::RpcBalanced2,
        Impl::Tarpc,
        Impl::Baseline,
        Impl::BaselineYield,
        Impl::BaselineUnbatched,
        Impl::RpcUnbatched,
        Impl::RpcStream,
        Impl::RpcUnary,
        Impl::Tonic,
        Impl::BaselineStream,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Impl::Rpc => "rpc",
            Impl::Tarpc => "tarpc",
            Impl::Baseline => "baseline",
            Impl::BaselineYield => "baseline-yield",
            Impl::BaselineUnbatched => "baseline-unbatched",
            Impl::RpcUnbatched => "rpc-unbatched",
            Impl::RpcBalanced => "rpc-balanced",
            Impl::RpcBalanced2 => "rpc-balanced-2",
            Impl::RpcStream => "rpc-stream",
            Impl::RpcUnary => "rpc-unary",
            Impl::Tonic => "tonic",
            Impl::BaselineStream => "baseline-stream",
            Impl::RpcIntercepted => "rpc-intercepted",
            Impl::RpcTls => "rpc-tls",
            Impl::RpcLz4 => "rpc-lz4",
            Impl::RpcZstd => "rpc-zstd",
            Impl::RpcTraced => "rpc-traced",
            Impl::RpcJson => "rpc-json",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == s)
    }

    pub(crate) fn family(self) -> Family {
        use rpc::Extra;
        let rpc = |batching, balanced, extra| Family::Rpc {
            batching,
            balanced,
            extra,
        };
        match self {
            Impl::Rpc => rpc(true, 0, Extra::Plain),
            Impl::RpcUnbatched => rpc(false, 0, Extra::Plain),
            Impl::RpcBalanced => rpc(true, 1, Extra::Plain),
            Impl::RpcBalanced2 => rpc(true, 2, Extra::Plain),
            Impl::RpcIntercepted => rpc(true, 0, Extra::Intercepted),
            Impl::RpcTls => rpc(true, 0, Extra::Tls),
            Impl::RpcLz4 => rpc(true, 0, Extra::Compressed(::rpc::Compression::Lz4)),
            Impl::RpcZstd => rpc(true, 0, Extra::Compressed(::rpc::Compression::Zstd)),
            Impl::RpcTraced => rpc(true, 0, Extra::Traced),
            Impl::RpcJson => rpc(true, 0, Extra::Json),
            Impl::Tarpc => Family::Tarpc,
            Impl::Baseline => Family::Baseline(baseline::Writes::Batched),
            Impl::BaselineYield => Family::Baseline(baseline::Writes::BatchedAfterYield),
            Impl::BaselineUnbatched => Family::Baseline(baseline::Writes::Direct),
            Impl::RpcStream => Family::RpcStream,
            Impl::RpcUnary => Family::RpcUnary,
            Impl::Tonic => Family::Tonic,
            Impl::BaselineStream => Family::BaselineStream,
        }
    }

    /// The contenders that compress, which run only on the compression
    /// workload (Z1), where only they and `rpc` (uncompressed) run.
    pub(crate) fn compressing(self) -> bool {
        matches!(self, Impl::RpcLz4 | Impl::RpcZstd)
    }

    /// The variants that give every frame a write of its own. They answer
    /// one question, what batching costs a lone call and buys under
    /// concurrency, so they run only on the small-call workloads (A, B).
    pub(crate) fn unbatched(self) -> bool {
        matches!(self, Impl::BaselineUnbatched | Impl::RpcUnbatched)
    }

    /// The implementations of the streaming workloads (S1, S2), which run
    /// only there: the others have no streaming call.
    pub(crate) fn streaming(self) -> bool {
        matches!(
            self,
            Impl::RpcStream | Impl::RpcUnary | Impl::Tonic | Impl::BaselineStream
        )
    }
}

/// What the load loops call. Each implementation's loop is compiled for its
/// own client type: through an enum, every call's future would be the size
/// of the largest implementation's (tarpc's) and would be copied on every
/// call, a cost that would blur the differences being measured.
pub(crate) trait LoadClient: Clone + Send + Sync + 'static {
    fn add(&self, a: i32, b: i32) -> impl Future<Output = i32> + Send;
    fn echo(&self, data: Vec<u8>) -> impl Future<Output = Vec<u8>> + Send;
}

/// What the streaming workloads (S1, S2) call: `count` items of `size`
/// bytes each from the server, fetched however the implementation fetches
/// them (one stream, or unary calls); returns the payload bytes received.
pub(crate) trait StreamClient: Send + Sync + 'static {
    fn fetch(&self, count: u64, size: u32) -> impl Future<Output = u64> + Send;
}
