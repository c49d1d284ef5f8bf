//! The daemon's log: containerd makes a `log` fifo in the bundle and
//! copies what the shim writes there into its own log, a logfmt line per
//! record (`time=... level=... msg=...`).

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

struct FifoLogger {
    fifo: Mutex<File>,
}

impl log::Log for FifoLogger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = line(
            &skiff::timestamp::now_nanos(),
            record.level(),
            &record.args().to_string(),
        );
        // One write per record, so containerd never reads half of one; a
        // containerd that is restarting (EPIPE) loses the line.
        if let Ok(mut f) = self.fifo.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// A logfmt line; the message is quoted as JSON so that a quote or a
/// newline in it cannot end the record.
fn line(time: &str, level: log::Level, msg: &str) -> String {
    let quoted = serde_json::Value::from(msg).to_string();
    let level = level.as_str().to_ascii_lowercase();
    format!("time=\"{time}\" level={level} msg={quoted}\n")
}

/// Logs to `./log` (the daemon runs in the bundle) at info, or debug with
/// `-debug`; without the fifo (a shim run by hand) logging is off.
pub fn init(debug: bool) {
    let Ok(fifo) = std::fs::OpenOptions::new().write(true).open("log") else {
        return;
    };
    // The logger lives as long as the daemon.
    let logger = Box::leak(Box::new(FifoLogger {
        fifo: Mutex::new(fifo),
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(if debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Info
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_logfmt_with_a_quoted_message() {
        assert_eq!(
            line("T", log::Level::Warn, "task \"a\"\nnext"),
            "time=\"T\" level=warn msg=\"task \\\"a\\\"\\nnext\"\n"
        );
    }
}
