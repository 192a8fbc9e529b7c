//! The parent's side of a cell: which implementations run (`BENCH_IMPLS`),
//! which binary runs each one's cells (this one, or the older build named by
//! `BENCH_BEFORE`), and reading the `RESULT` line a child prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::impls::Impl;
use crate::workloads::Workload;

/// The numbers of one child's `RESULT` line, by key.
pub(crate) type Fields = BTreeMap<String, f64>;

/// Which build's binary runs a contender's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Build {
    /// This binary.
    This,
    /// The binary named by `BENCH_BEFORE`, built from an older commit.
    Before,
}

/// A column of the report: an implementation as compiled into one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Contender {
    pub(crate) imp: Impl,
    pub(crate) build: Build,
}

impl Contender {
    pub(crate) const fn this(imp: Impl) -> Contender {
        Contender {
            imp,
            build: Build::This,
        }
    }

    /// Every contender, in the report's order. An older build is only asked
    /// for this library: that is the comparison it is there for, and it may
    /// not know the implementations added since.
    fn all() -> Vec<Contender> {
        let before = [Impl::Rpc, Impl::RpcUnbatched].map(|imp| Contender {
            imp,
            build: Build::Before,
        });
        Impl::ALL
            .map(Contender::this)
            .into_iter()
            .chain(before)
            .collect()
    }

    fn parse(s: &str) -> Option<Contender> {
        Contender::all().into_iter().find(|c| c.name() == s)
    }

    pub(crate) fn name(self) -> String {
        match self.build {
            Build::This => self.imp.name().to_string(),
            Build::Before => format!("{}-before", self.imp.name()),
        }
    }

    pub(crate) fn color(self) -> &'static str {
        match (self.imp, self.build) {
            (Impl::Rpc, Build::This) => "#1f6fb4",
            (Impl::RpcUnbatched, Build::This) => "#8fbce6",
            (Impl::RpcBalanced, _) => "#6a3d9a",
            (Impl::RpcBalanced2, _) => "#b294c7",
            (Impl::Tarpc, _) => "#9a9a9a",
            (Impl::Baseline, _) => "#2c9a2c",
            (Impl::BaselineYield, _) => "#176117",
            (Impl::BaselineUnbatched, _) => "#9ad98a",
            (Impl::Rpc, Build::Before) => "#d9822b",
            (Impl::RpcUnbatched, Build::Before) => "#f2c48f",
            (Impl::RpcStream, _) => "#0b3d6b",
            (Impl::RpcUnary, _) => "#5fa8d3",
            (Impl::Tonic, _) => "#c0392b",
            (Impl::BaselineStream, _) => "#2c9a2c",
            (Impl::RpcIntercepted, _) => "#17becf",
            (Impl::RpcTls, _) => "#8c564b",
            (Impl::RpcLz4, _) => "#e377c2",
            (Impl::RpcZstd, _) => "#bcbd22",
            (Impl::RpcTraced, _) => "#7f7f7f",
            (Impl::RpcJson, _) => "#ff7f0e",
        }
    }
}

/// The contenders of this run and the binaries that run their cells.
#[derive(Debug)]
pub(crate) struct Lineup {
    pub(crate) contenders: Vec<Contender>,
    /// `BENCH_BEFORE`: an older build of this bench.
    pub(crate) before: Option<PathBuf>,
    this: PathBuf,
}

impl Lineup {
    /// `BENCH_IMPLS` (default: every contender whose binary is at hand) and
    /// `BENCH_BEFORE`.
    pub(crate) fn from_env() -> Lineup {
        let before = std::env::var_os("BENCH_BEFORE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if let Some(path) = &before {
            assert!(
                path.is_file(),
                "BENCH_BEFORE={}: not a file (the path of an older compare binary)",
                path.display()
            );
        }
        let all: Vec<Contender> = Contender::all()
            .into_iter()
            .filter(|c| c.build == Build::This || before.is_some())
            .collect();
        let contenders = crate::selected("BENCH_IMPLS", &all, Contender::parse);
        if let Some(c) = contenders.iter().find(|c| c.build == Build::Before)
            && before.is_none()
        {
            panic!(
                "BENCH_IMPLS: {} needs BENCH_BEFORE=/path/to/an/older/compare/binary",
                c.name()
            );
        }
        Lineup {
            contenders,
            before,
            this: std::env::current_exe().expect("current_exe"),
        }
    }

    pub(crate) fn has(&self, c: Contender) -> bool {
        self.contenders.contains(&c)
    }

    /// The contenders that run on `w`, in the report's order.
    /// The contenders that run `w` (an older build does not know Z1).
    pub(crate) fn on(&self, w: Workload) -> Vec<Contender> {
        self.contenders
            .iter()
            .copied()
            .filter(|c| w.runs(c.imp) && !(c.build == Build::Before && w == Workload::Z1))
            .collect()
    }

    /// Runs one cell in a fresh process of the contender's build.
    pub(crate) fn run(&self, c: Contender, w: Workload) -> Option<Fields> {
        let exe = match c.build {
            Build::This => &self.this,
            Build::Before => self.before.as_ref().expect("checked in from_env"),
        };
        run_child(exe, c.imp.name(), w.name(), &c.name())
    }

    /// Runs this library's memory test in a fresh process of this binary.
    pub(crate) fn run_memory(&self) -> Option<Fields> {
        run_child(&self.this, "rpc", "mem", "rpc")
    }
}

/// Runs `<exe> --child IMPL WORKLOAD` and reads its `RESULT key=value ...`
/// line. Older builds speak the same protocol (that is what makes
/// `BENCH_BEFORE` work): arguments and line stay as they are.
fn run_child(exe: &Path, imp: &str, workload: &str, label: &str) -> Option<Fields> {
    let out = Command::new(exe)
        .args(["--child", imp, workload])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run a child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT "));
    match line {
        Some(line) if out.status.success() => Some(
            line.split_whitespace()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        ),
        _ => {
            eprintln!("compare: {label} {workload} failed ({})", out.status);
            None
        }
    }
}
