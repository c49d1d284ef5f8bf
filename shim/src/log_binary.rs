//! containerd's logging-binary protocol, for `binary:///PATH?KEY=VALUE...`
//! stdio URIs (nerdctl's default for detached containers). The shim starts
//! PATH with each query pair as two arguments and CONTAINER_ID /
//! CONTAINER_NAMESPACE in its environment, hands it the read ends of the
//! stdout and stderr pipes as fds 3 and 4 and a pipe's write end as fd 5,
//! and waits until the binary closes fd 5 (ready) before the container
//! runs. The container writes to the pipes; the binary sees EOF when the
//! last writer is gone.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::error::ShimError;

/// How long a logging binary may take to get ready.
const READY_TIMEOUT_MS: u16 = 10_000;

/// PATH and the arguments from a URI without its `binary://` prefix.
fn parse(uri: &str) -> Result<(String, Vec<String>), ShimError> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let path = decode(path)?;
    if !path.starts_with('/') {
        return Err(ShimError::Invalid {
            field: format!("binary://{uri}"),
            detail: "the logging binary must be an absolute path".into(),
        });
    }
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(decode(k)?);
        if !v.is_empty() {
            args.push(decode(v)?);
        }
    }
    Ok((path, args))
}

/// Percent-decoding (`+` is a space in a query, as Go's url package reads it).
fn decode(s: &str) -> Result<String, ShimError> {
    let bad = || ShimError::Invalid {
        field: "binary:// log URI".into(),
        detail: format!("bad percent-encoding in {s:?}"),
    };
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ShimError::io("pipe")(std::io::Error::from_raw_os_error(e as i32)))
}

/// Starts the logging binary; returns the write ends for the container's
/// stdout and stderr.
pub fn start(uri: &str, id: &str, namespace: &str) -> Result<(OwnedFd, OwnedFd), ShimError> {
    start_within(uri, id, namespace, READY_TIMEOUT_MS)
}

fn start_within(
    uri: &str,
    id: &str,
    namespace: &str,
    timeout_ms: u16,
) -> Result<(OwnedFd, OwnedFd), ShimError> {
    let (path, args) = parse(uri)?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = Command::new(&path);
    cmd.args(&args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only dup2 and fcntl, which are
    // async-signal-safe; the source fds are distinct from 3..=5 or get
    // their close-on-exec flag cleared by dup2.
    unsafe {
        cmd.pre_exec(move || {
            // Move all three above 5 first, so no dup2 overwrites a source.
            let mut high = [0; 3];
            for (i, fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // The binary is reaped by the shim's reaper like any other child.
    let mut child = cmd
        .spawn()
        .map_err(ShimError::io(format!("start the logging binary {path}")))?;
    drop((out_r, err_r, ready_w));
    // Ready when the binary closes fd 5 (EOF here). Bounded: the shim
    // serves all its tasks on one thread, and a logger that never gets
    // ready must not stop it.
    let timeout = std::time::Duration::from_millis(timeout_ms.into());
    if !crate::stdio::wait_readable(ready_r.as_fd(), timeout) {
        let _ = child.kill();
        return Err(ShimError::Invalid {
            field: format!("binary://{uri}"),
            detail: format!(
                "the logging binary did not close fd 5 (ready) within {} ms",
                timeout_ms
            ),
        });
    }
    let mut byte = [0u8; 1];
    let _ = std::fs::File::from(ready_r).read(&mut byte);
    Ok((out_w, err_w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_becomes_path_and_arguments() {
        let (path, args) =
            parse("/usr/local/bin/nerdctl?_NERDCTL_INTERNAL_LOGGING=%2Fvar%2Flib%2Fnerdctl%2Fx")
                .unwrap();
        assert_eq!(path, "/usr/local/bin/nerdctl");
        assert_eq!(args, ["_NERDCTL_INTERNAL_LOGGING", "/var/lib/nerdctl/x"]);
        let (_, args) = parse("/bin/logger?a=1&flag&b=two+words").unwrap();
        assert_eq!(args, ["a", "1", "flag", "b", "two words"]);
        assert!(parse("relative/logger").is_err());
        assert!(parse("/bin/x?a=%zz").is_err());
    }

    #[test]
    fn a_logger_that_never_gets_ready_is_refused() {
        let e = match start_within("/bin/sleep?30", "c", "ns", 200) {
            Ok(_) => panic!("a logger that is not ready was taken"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("did not close fd 5 (ready) within 200 ms"),
            "{e}"
        );
        // One that closes fd 5 at once is ready.
        let (out, err) = start_within("/bin/true", "c", "ns", 5000).unwrap();
        drop((out, err));
    }
}
