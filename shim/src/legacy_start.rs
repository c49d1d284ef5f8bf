//! The reply of the `start` action in the form the running containerd
//! reads. The shim crate answers a legacy (flag and environment) start
//! with a JSON object `{"version":3,"address":...,"protocol":"ttrpc"}`,
//! which containerd 1.7 and later parse; containerd 1.6 takes the whole
//! output as the socket address and fails to dial it. A plain address is
//! what every containerd release understands, so a JSON reply is turned
//! into its address; anything else (the protobuf bootstrap reply of newer
//! containerd) passes through unchanged.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Runs `start` with its stdout captured, then writes the translated reply
/// to the real stdout.
pub fn translate_reply(start: impl FnOnce()) {
    let Some((saved, read_end)) = capture_stdout() else {
        // Cannot capture: let the crate answer directly.
        start();
        return;
    };
    start();
    let _ = std::io::stdout().flush();
    // SAFETY: restores fd 1 from our saved duplicate; this also closes the
    // pipe's last write end, so the read below ends at EOF.
    unsafe { libc::dup2(saved.as_raw_fd(), 1) };
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a local buffer of the given size.
        let n = unsafe { libc::read(read_end.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n as usize]);
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&plain_address(&reply));
    let _ = out.flush();
}

/// Points fd 1 at a new pipe; returns the saved stdout and the read end.
fn capture_stdout() -> Option<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds; close-on-exec keeps them out of the
    // shim daemon the start action spawns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return None;
    }
    // SAFETY: the fds were just created and are owned by nothing else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: duplicates fd 1 close-on-exec.
    let saved = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if saved < 0 {
        return None;
    }
    // SAFETY: `saved` is a new fd we own.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    // SAFETY: replaces fd 1 with the pipe's write end.
    if unsafe { libc::dup2(write_end.as_raw_fd(), 1) } < 0 {
        return None;
    }
    Some((saved, read_end))
}

/// The address out of a JSON start reply; other replies unchanged.
fn plain_address(reply: &[u8]) -> Vec<u8> {
    serde_json::from_slice::<serde_json::Value>(reply)
        .ok()
        .and_then(|v| v.get("address")?.as_str().map(|a| a.as_bytes().to_vec()))
        .unwrap_or_else(|| reply.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reply_becomes_the_address() {
        let json = br#"{"version":3,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}"#;
        assert_eq!(plain_address(json), b"unix:///run/containerd/s/abc");
        let proto = [0x08u8, 0x03, 0x12, 0x04, b'u', b'n', b'i', b'x'];
        assert_eq!(plain_address(&proto), proto);
    }
}
