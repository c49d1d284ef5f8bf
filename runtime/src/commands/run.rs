//! `skiff run`: create, start, and (unless detached) wait, forwarding
//! signals to the container and exiting with its status (128+N when it was
//! killed by signal N). Signals are blocked before the first fork, so an
//! exit that happens before we start waiting is never lost.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::{load_bundle, options};
use crate::cli::RunArgs;
use crate::container::Container;
use crate::error::Error;
use crate::signals;
use crate::state::Root;

/// Exit code for a wait status, the shell's way.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

pub fn run(root: &Root, args: &RunArgs) -> Result<i32, Error> {
    let bundle = load_bundle(&args.create)?;
    let mut opts = options(&args.create)?;
    if args.detach {
        let (container, _pidfd) = Container::create(root, &args.create.id, &bundle, &opts)?;
        container.start()?;
        return Ok(0);
    }
    let forwarded = signals::forwarded_set();
    let mut original = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut original))
        .map_err(|e| Error::Message(format!("blocking signals: {e}")))?;
    if !args.no_subreaper {
        // Processes the container leaves behind (and the init, when a new
        // pid namespace needed an extra fork) are reparented to us.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    opts.sigmask = Some(original);
    let (container, _pidfd) = Container::create(root, &args.create.id, &bundle, &opts)?;
    let started = container.start();
    let code = match started {
        Ok(()) => wait_forwarding(container.stored.pid, &forwarded),
        Err(e) => Err(e.into()),
    };
    if !args.keep {
        if let Err(e) = container.delete(true) {
            crate::warn!("deleting container {}: {e}", container.stored.id);
        }
    }
    code
}

/// Waits for the init to exit, forwarding every other signal to it.
fn wait_forwarding(init: libc::pid_t, set: &SigSet) -> Result<i32, Error> {
    let init = Pid::from_raw(init);
    loop {
        // Reap first: the init may already be gone.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if status.pid() == Some(init) {
                        if let Some(code) = exit_code(status) {
                            return Ok(code);
                        }
                    }
                }
            }
        }
        let sig = match set.wait() {
            Ok(s) => s,
            Err(e) => return Err(Error::Message(format!("waiting for signals: {e}"))),
        };
        if sig == Signal::SIGCHLD {
            continue;
        }
        let _ = nix::sys::signal::kill(init, sig);
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
