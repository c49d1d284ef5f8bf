//! Log lines in runc's formats. Without `--log`, lines go to stderr as
//! logrus text; with `--log FILE`, to the file as text or JSON (one object a
//! line: containerd reads the last error from it).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

/// Log line format, `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    file: Option<File>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging once, at startup.
pub fn init(path: Option<&Path>, format: Format, debug: bool) -> std::io::Result<()> {
    let file = match path {
        Some(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
    Ok(())
}

/// True when log lines go to stderr (no `--log` file).
pub fn to_stderr() -> bool {
    LOGGER.get().is_none_or(|l| l.file.is_none())
}

/// True when debug lines are written.
pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.debug)
}

/// Writes one line at `level`.
pub fn log(level: Level, msg: &str) {
    let default = Logger {
        file: None,
        format: Format::Text,
        debug: false,
    };
    let logger = LOGGER.get().unwrap_or(&default);
    if level == Level::Debug && !logger.debug {
        return;
    }
    let line = render(logger.format, level, &crate::timestamp::now_seconds(), msg);
    // A log write that fails has nowhere better to go; never fail the
    // operation because of it.
    match &logger.file {
        Some(f) => {
            let _ = (&*f).write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// One log line, newline included.
fn render(format: Format, level: Level, time: &str, msg: &str) -> String {
    match format {
        Format::Json => {
            let mut line = String::with_capacity(msg.len() + 64);
            line.push_str("{\"level\":\"");
            line.push_str(level.as_str());
            line.push_str("\",\"msg\":");
            line.push_str(&serde_json::to_string(msg).unwrap_or_else(|_| "\"\"".into()));
            line.push_str(",\"time\":\"");
            line.push_str(time);
            line.push_str("\"}\n");
            line
        }
        Format::Text => {
            let mut line = String::with_capacity(msg.len() + 64);
            let _ = write!(line, "time=\"{time}\" level={} msg=", level.as_str());
            line.push_str(&quote(msg));
            line.push('\n');
            line
        }
    }
}

/// Quotes a message the way logrus' text formatter does: bare when it is a
/// plain word, otherwise a double-quoted string with escapes.
fn quote(msg: &str) -> String {
    let plain = !msg.is_empty()
        && msg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if plain {
        return msg.to_string();
    }
    serde_json::to_string(msg).unwrap_or_else(|_| "\"\"".into())
}

/// Logs a debug line (only with `--debug`).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::logging::debug_enabled() {
            $crate::logging::log($crate::logging::Level::Debug, &format!($($arg)*))
        }
    };
}

/// Logs a warning.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::logging::log($crate::logging::Level::Warn, &format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_what_containerd_parses() {
        let line = render(
            Format::Json,
            Level::Error,
            "2026-01-01T00:00:00Z",
            "bad \"x\"",
        );
        assert_eq!(
            line,
            "{\"level\":\"error\",\"msg\":\"bad \\\"x\\\"\",\"time\":\"2026-01-01T00:00:00Z\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "bad \"x\"");
    }

    #[test]
    fn text_line_quotes_like_logrus() {
        assert_eq!(
            render(Format::Text, Level::Error, "T", "container not running"),
            "time=\"T\" level=error msg=\"container not running\"\n"
        );
        assert_eq!(
            render(Format::Text, Level::Warn, "T", "plain"),
            "time=\"T\" level=warning msg=plain\n"
        );
    }
}
