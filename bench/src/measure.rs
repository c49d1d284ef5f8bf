//! Timing and memory helpers shared by the engine-level benchmarks.

use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs `cmd` to success; returns its wall time in milliseconds.
pub fn timed(cmd: &mut Command) -> f64 {
    try_timed(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cmd`; its wall time in milliseconds, or what it said on stderr
/// when it failed.
pub fn try_timed(cmd: &mut Command) -> Result<f64, String> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(ms)
}

/// The value at fraction `p` (0..=1) of sorted samples, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Median and 90th percentile (sorts `v`).
pub fn median_p90(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(v, 0.5), percentile(v, 0.9))
}

/// Rss and Pss of process `pid` in KiB, from smaps_rollup (0 when it is
/// gone). Rss counts the binary's shared pages in every process; Pss
/// splits them among the processes sharing them.
pub fn smaps_kib(pid: u32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return (0, 0);
    };
    let field = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// The processes whose command line contains both `name` and `address`
/// (this run's containerd, so that shims of other containerds on the host
/// are left out).
pub fn pids_of(name: &str, address: &str) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-f", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|pid| pid.trim().parse().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(address))
        })
        .collect()
}

/// Sums of Rss and Pss (KiB) over the processes `pids_of` finds.
pub fn memory_kib(name: &str, address: &str) -> (u64, u64) {
    pids_of(name, address)
        .into_iter()
        .map(smaps_kib)
        .fold((0, 0), |(rss, pss), (r, p)| (rss + r, pss + p))
}
