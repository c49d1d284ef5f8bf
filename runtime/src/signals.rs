//! Signal names as runc accepts them (`KILL`, `SIGKILL`, `kill`, `9`,
//! `RTMIN+3`) and the mask `run` uses to forward signals to the container.

use nix::sys::signal::{SigSet, Signal};

/// An unknown signal name or number.
#[derive(Debug, thiserror::Error)]
#[error("unknown signal {0:?}")]
pub struct UnknownSignal(pub String);

const NAMES: [(&str, libc::c_int); 35] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
    ("UNUSED", libc::SIGSYS),
];

fn rt_min() -> libc::c_int {
    libc::SIGRTMIN()
}

fn rt_max() -> libc::c_int {
    libc::SIGRTMAX()
}

/// Parses a signal given on the command line.
pub fn parse(raw: &str) -> Result<libc::c_int, UnknownSignal> {
    let unknown = || UnknownSignal(raw.to_string());
    let valid = |n: libc::c_int| (1..=rt_max()).contains(&n);
    if let Ok(n) = raw.parse::<libc::c_int>() {
        // 0 sends nothing and only asks whether the process is there, as
        // with kill(1) and runc.
        return if n == 0 || valid(n) {
            Ok(n)
        } else {
            Err(unknown())
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(*n);
    }
    let offset = |s: &str| {
        if s.is_empty() {
            Some(0)
        } else {
            s.parse::<libc::c_int>().ok()
        }
    };
    let n = if let Some(rest) = name.strip_prefix("RTMIN") {
        rest.strip_prefix('+')
            .or(Some(rest))
            .and_then(offset)
            .map(|o| rt_min() + o)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        rest.strip_prefix('-')
            .or(Some(rest))
            .and_then(offset)
            .map(|o| rt_max() - o)
    } else {
        None
    };
    n.filter(|n| valid(*n)).ok_or_else(unknown)
}

/// Every signal `run` takes over and forwards: all but those that cannot
/// be caught and the synchronous faults that must stay deliverable.
pub fn forwarded_set() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTRAP,
        Signal::SIGSYS,
    ] {
        set.remove(s);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_case() {
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGKILL").unwrap(), 9);
        assert_eq!(parse("sigterm").unwrap(), 15);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("RTMIN").unwrap(), libc::SIGRTMIN());
        assert_eq!(parse("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        assert_eq!(parse("SIGRTMAX-1").unwrap(), libc::SIGRTMAX() - 1);
    }

    #[test]
    fn unknown() {
        for bad in ["FOO", "SIGFOO", "99", "SIG0", "-1", "RTMIN+99", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("FOO").unwrap_err().to_string(),
            "unknown signal \"FOO\""
        );
    }

    #[test]
    fn forwarded_set_excludes_faults() {
        let s = forwarded_set();
        assert!(s.contains(Signal::SIGTERM) && s.contains(Signal::SIGCHLD));
        assert!(!s.contains(Signal::SIGKILL) && !s.contains(Signal::SIGSEGV));
    }
}
