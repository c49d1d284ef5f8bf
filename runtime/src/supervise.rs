//! A foreground container's supervisor (`run` without `--detach`): reaps
//! children, forwards signals to the init, and with a terminal relays
//! between skiff's stdio and the pty master (raw mode, window size and
//! SIGWINCH). Everything waits in one poll on a signalfd and the streams.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::terminal::{self, RawMode};

/// Exit code for a wait status, the shell's way.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Reaps every exited child; returns the init's exit code once it is gone.
fn reap(init: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(status) if status.pid() == Some(init) => code = exit_code(status).or(code),
            Ok(_) => {}
        }
    }
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

fn stdout() -> BorrowedFd<'static> {
    // SAFETY: fd 1 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(1) }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies what is readable from `from` to `to`; false at end of stream.
fn pump(from: BorrowedFd<'_>, to: BorrowedFd<'_>, buf: &mut [u8]) -> bool {
    match nix::unistd::read(from, buf) {
        Ok(0) => false,
        Ok(n) => write_all(to, &buf[..n]).is_ok(),
        Err(Errno::EINTR) | Err(Errno::EAGAIN) => true,
        // EIO: every peer of the pty is closed.
        Err(_) => false,
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) {
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags));
    }
}

/// Supervises the init until it exits; returns its exit code. `signals`
/// must already be blocked.
pub fn supervise(
    init: libc::pid_t,
    signals: &SigSet,
    master: Option<OwnedFd>,
) -> Result<i32, Errno> {
    let init = Pid::from_raw(init);
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let _raw = master.as_ref().and_then(|_| RawMode::enable(stdin()));
    if let Some(m) = &master {
        set_nonblocking(m.as_fd());
        if let Some((rows, cols)) = terminal::get_size(stdin()) {
            let _ = terminal::set_size(m.as_fd(), rows, cols);
        }
    }
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Some(code) = reap(init) {
            // Output the process wrote just before exiting is still in the pty.
            if let Some(m) = master.as_ref().filter(|_| master_open) {
                while pump(m.as_fd(), stdout(), &mut buf) {
                    let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
                    if nix::poll::poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) == 0 {
                        break;
                    }
                }
            }
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let master_fd = master.as_ref().map(AsFd::as_fd);
        if let (true, Some(m)) = (master_open, master_fd) {
            fds.push(PollFd::new(m, PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (
            ready(0),
            master_open && ready(1),
            stdin_open && ready(fds.len() - 1),
        );
        drop(fds);
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match (sig, master_fd) {
                    (Signal::SIGCHLD, _) => {}
                    (Signal::SIGWINCH, Some(m)) => {
                        if let Some((rows, cols)) = terminal::get_size(stdin()) {
                            let _ = terminal::set_size(m, rows, cols);
                        }
                    }
                    _ => {
                        let _ = nix::sys::signal::kill(init, sig);
                    }
                }
            }
        }
        if let (true, Some(m)) = (master_ready, master_fd) {
            master_open = pump(m, stdout(), &mut buf);
        }
        if let (true, Some(m)) = (stdin_ready, master_fd) {
            stdin_open = pump(stdin(), m, &mut buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let p = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
