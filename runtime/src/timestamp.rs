//! RFC 3339 timestamps in UTC, formatted the way runc (Go) prints them,
//! without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Civil date (year, month, day) from days since 1970-01-01, after Howard
/// Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats `secs.nanos` since the epoch. With `nanos`, the fraction is
/// printed like Go's RFC3339Nano: trailing zeros trimmed, none when zero.
pub fn format(secs: i64, subsec_nanos: u32, nanos: bool) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos && subsec_nanos != 0 {
        let frac = format!("{subsec_nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Formats a `SystemTime`.
pub fn format_system_time(time: SystemTime, nanos: bool) -> String {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => format(d.as_secs() as i64, d.subsec_nanos(), nanos),
        Err(e) => format(-(e.duration().as_secs() as i64), 0, nanos),
    }
}

/// The current time, seconds precision (runc's log lines).
pub fn now_seconds() -> String {
    format_system_time(SystemTime::now(), false)
}

/// The current time with nanoseconds (runc's `created` field).
pub fn now_nanos() -> String {
    format_system_time(SystemTime::now(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch() {
        assert_eq!(format(0, 0, true), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn known_dates() {
        // 2024-02-29T12:34:56Z, a leap day.
        assert_eq!(format(1_709_210_096, 0, false), "2024-02-29T12:34:56Z");
        // 2000-03-01T00:00:00Z, after a century leap day.
        assert_eq!(format(951_868_800, 0, false), "2000-03-01T00:00:00Z");
    }

    #[test]
    fn nanos_are_trimmed_like_go() {
        assert_eq!(
            format(0, 112_342_688, true),
            "1970-01-01T00:00:00.112342688Z"
        );
        assert_eq!(format(0, 500_000_000, true), "1970-01-01T00:00:00.5Z");
        assert_eq!(format(0, 500_000_000, false), "1970-01-01T00:00:00Z");
    }
}
