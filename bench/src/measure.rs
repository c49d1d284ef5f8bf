//! Timing helpers shared by the engine-level benchmarks.

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

/// Median and 90th percentile (sorts `v`).
pub fn median_p90(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
    (at(0.5), at(0.9))
}
