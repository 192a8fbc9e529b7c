//! What the report says about the machine and the build: CPU, kernel,
//! compiler, commit, load, date.

use std::fmt::Write as _;
use std::process::Command;
use std::time::SystemTime;

pub(super) fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `/proc/loadavg`, as it reads.
pub(crate) fn load_average() -> String {
    read_trimmed("/proc/loadavg")
}

/// Clock ticks per second, the unit of `/proc/self/stat`'s CPU times.
pub(super) fn clock_ticks_per_sec() -> f64 {
    command_output("getconf", &["CLK_TCK"])
        .and_then(|v| v.parse().ok())
        .unwrap_or(100.0)
}

pub(super) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The commit of the workspace this bench was built from, marked if the
/// tree had uncommitted changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        let root = crate::workspace_root().to_string_lossy();
        let mut all = vec!["-C", &*root];
        all.extend_from_slice(args);
        command_output("git", &all)
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    format!(
        "{}{}",
        commit.unwrap_or_else(|| "unknown".into()),
        if dirty {
            " (with uncommitted changes in the tree)"
        } else {
            ""
        }
    )
}

/// The "Machine" table.
pub(super) fn table(md: &mut String, cpu: &str, load_before: &str, load_after: &str) {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".into());
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| CPU | {cpu} |");
    let _ = writeln!(md, "| nproc | {nproc} |");
    let _ = writeln!(
        md,
        "| kernel | {} |",
        read_trimmed("/proc/sys/kernel/osrelease")
    );
    let _ = writeln!(md, "| rustc | {rustc} |");
    let _ = writeln!(md, "| commit | {} |", commit());
    let _ = writeln!(
        md,
        "| load average before / after | {load_before} / {load_after} |\n"
    );
}

/// UTC date and time, from the system clock (days-to-civil, Howard Hinnant).
pub(super) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}
