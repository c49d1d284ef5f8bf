//! `skiff run`: create, start, and (unless detached) supervise until the
//! container exits, exiting with its status (128+N when it was killed by
//! signal N). Signals are blocked before the first fork, so an exit that
//! happens before supervision starts is never lost.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::create::{load_bundle, options};
use crate::cli::RunArgs;
use crate::container::Container;
use crate::error::Error;
use crate::state::Root;
use crate::{signals, supervise, terminal};

pub fn run(
    root: &Root,
    args: &RunArgs,
    rootless: bool,
    systemd_cgroup: bool,
) -> Result<i32, Error> {
    let bundle = load_bundle(&args.create)?;
    let mut opts = options(&args.create, rootless, systemd_cgroup)?;
    if args.detach {
        let (container, _pidfd) = Container::create(root, &args.create.id, &bundle, &opts)?;
        container.start()?;
        return Ok(0);
    }
    let (forwarded, original) = prepare_to_supervise(args.no_subreaper)?;
    opts.sigmask = Some(original);
    // A terminal without a console socket: skiff itself relays the pty.
    let wants_tty = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let mut relay_end = None;
    if wants_tty && opts.console.is_none() {
        let (ours, theirs) = relay_socket()?;
        opts.console = Some(theirs);
        relay_end = Some(ours);
    }
    let (container, _pidfd) = Container::create(root, &args.create.id, &bundle, &opts)?;
    let master = match relay_end {
        Some(sock) => match terminal::recv_fd(sock.as_fd()) {
            Ok((_, master)) => Some(master),
            Err(e) => {
                let _ = container.delete(true);
                return Err(Error::Message(format!("receiving the pty master: {e}")));
            }
        },
        None => None,
    };
    let code = match container.start() {
        Ok(()) => supervise::supervise(container.stored.pid, &forwarded, master)
            .map_err(|e| Error::Message(format!("supervising the container: {e}"))),
        Err(e) => Err(e.into()),
    };
    // A failed poststart hook has removed the container already.
    if !args.keep && container.dir.exists() {
        if let Err(e) = container.delete(true) {
            crate::warn!("deleting container {}: {e}", container.stored.id);
        }
    }
    code
}

/// A socket pair standing in for a console socket when skiff relays the
/// terminal itself: the pty master comes in on the first end.
pub(super) fn relay_socket() -> Result<(OwnedFd, OwnedFd), Error> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::Message(format!("console socketpair: {e}")))
}

/// Blocks the signals a foreground command forwards (before the init
/// exists, so neither its exit nor a signal for it is lost) and, unless
/// told not to, makes this process a subreaper: processes the container
/// leaves behind (and the init, when a new pid namespace needed an extra
/// fork) are reparented to it. Returns the forwarded set and the mask
/// before.
pub(super) fn prepare_to_supervise(no_subreaper: bool) -> Result<(SigSet, SigSet), Error> {
    let forwarded = signals::forwarded_set();
    let mut original = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut original))
        .map_err(|e| Error::Message(format!("blocking signals: {e}")))?;
    if !no_subreaper {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    Ok((forwarded, original))
}
