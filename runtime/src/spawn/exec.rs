//! `exec`: a new process in a live container. The runtime enters the
//! init's pid and time namespaces for its next child only, and one
//! `clone3` starts that child inside them (and, on cgroup2, inside the
//! container's cgroup), so no intermediate process is needed. The child
//! joins the rest of the init's namespaces with a single `setns` on the
//! init's pidfd, then runs the same process phase as the init and execs.
//! In a container without a mount namespace of its own, whose root is no
//! namespace's root (see rootfs/pivot.rs), the child then enters the
//! init's root.

use std::convert::Infallible;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::channel::{self, Channel, ChannelError, ToParent};
use super::phase::{self, Phase, ProcessError};
use super::progress::{Progress, Step};
use super::{
    hand_listener_to_agent, kill_child, next_message, restore_namespaces, sys, why_gone,
    SpawnError, Watch,
};
use crate::cgroups::{CgroupError, Manager};
use crate::namespaces::{self, NamespaceError};
use crate::procfs::{PrivateProc, ProcError};
use crate::security::capabilities::{self, HostCaps};
use crate::security::lsm::{self, Lsms};
use crate::syscalls::{self, Forked};
use crate::terminal::{self, TerminalError};

/// What to run, and where.
pub struct ExecRequest<'a> {
    /// The container's configuration (namespaces, seccomp, personality).
    pub spec: &'a Spec,
    /// The process to start.
    pub process: &'a Process,
    pub init_pid: libc::pid_t,
    pub init_pidfd: BorrowedFd<'a>,
    /// The container's state JSON, for a seccomp agent.
    pub state: &'a [u8],
    /// Where the pty master goes when `process.terminal` is set.
    pub console: Option<BorrowedFd<'a>>,
    pub preserve_fds: u32,
    pub sigmask: Option<SigSet>,
    /// `--ignore-paused`: the container may be frozen while the process
    /// starts (it runs on resume).
    pub frozen_ok: bool,
}

/// The started process.
pub struct Execd {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
}

/// What the child needs, prepared before the clone.
struct Child<'a> {
    progress: &'a Progress,
    /// Namespaces the child joins itself (pid and time came with clone3).
    join: CloneFlags,
    /// True when the process runs in the container's user namespace (joined
    /// by the child, or already by the runtime).
    in_user_namespace: bool,
    init_pidfd: BorrowedFd<'a>,
    /// The init's root, when joining its mount namespace does not give it.
    init_root: Option<OwnedFd>,
    cgroup: &'a dyn Manager,
    cloned_into_cgroup: bool,
    console: Option<BorrowedFd<'a>>,
    phase: Phase<'a>,
}

/// A failure in the exec child.
#[derive(Debug, thiserror::Error)]
enum ChildError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Exec(#[from] crate::process::exec::ExecError),
    #[error("{what}: {source}")]
    Sys { what: &'static str, source: Errno },
}

/// Starts `req.process` in the container whose cgroup is `cgroup`.
pub fn exec(req: &ExecRequest<'_>, cgroup: &mut dyn Manager) -> Result<Execd, SpawnError> {
    let process = req.process;
    crate::validate::process_fields(process)?;
    crate::validate::console(process, req.console.is_some())?;
    let apparmor = process.apparmor_profile().as_deref();
    let selinux = process.selinux_label().as_deref();
    lsm::check(
        apparmor,
        selinux,
        Lsms::detect(apparmor.is_some() || selinux.is_some()),
    )?;
    let host_caps = HostCaps::detect();
    let linux = req.spec.linux().as_ref();
    let filter = super::compile_seccomp(linux.and_then(|l| l.seccomp().as_ref()))?;
    let namespaces = namespaces::not_shared_with(req.init_pid)?;
    let init_root = if namespaces::owns_mount_namespace(req.spec) {
        None
    } else {
        let path = format!("/proc/{}/root", req.init_pid);
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        Some(
            nix::fcntl::open(path.as_str(), flags, Mode::empty())
                .map_err(sys("opening the init's root"))?,
        )
    };
    cgroup.attach()?;

    // The pid and time namespaces only apply to children: enter them for
    // the clone, then come back.
    let mut for_children =
        namespaces & (CloneFlags::CLONE_NEWPID | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    let mut restore = Vec::new();
    for typ in [LinuxNamespaceType::Pid, LinuxNamespaceType::Time] {
        if !for_children.contains(namespaces::clone_flag(typ)) {
            continue;
        }
        if namespaces::may_return(typ) {
            restore.push((typ, namespaces::current(typ)?));
        } else if namespaces.contains(CloneFlags::CLONE_NEWUSER) {
            // Without root, the container's pid (or time) namespace can
            // only be entered from inside its user namespace (setns wants
            // CAP_SYS_ADMIN in the caller's own user namespace too). The
            // runtime joins it for good: holding no privilege outside it,
            // it gives nothing up, and it never comes back for a restore.
            for_children |= CloneFlags::CLONE_NEWUSER;
        }
    }
    namespaces::join_process(req.init_pidfd, for_children)?;

    let (parent_end, child_end) = channel::pair()?;
    let progress = Progress::new().map_err(sys("mapping the setup progress page"))?;
    let target = cgroup.clone_target();
    let mut child = Child {
        progress: &progress,
        join: namespaces - for_children,
        in_user_namespace: namespaces.contains(CloneFlags::CLONE_NEWUSER),
        init_pidfd: req.init_pidfd,
        init_root,
        cgroup: &*cgroup,
        cloned_into_cgroup: target.is_some(),
        console: req.console,
        phase: Phase {
            process,
            personality: linux.and_then(|l| l.personality().as_ref()),
            memory_policy: linux.and_then(|l| l.memory_policy().as_ref()),
            caps: capabilities::masks(process.capabilities().as_ref(), host_caps),
            last_cap: host_caps.last_cap,
            seccomp: filter.as_ref(),
            keyring: None,
            preserve_fds: req.preserve_fds,
            sigmask: req.sigmask.as_ref(),
        },
    };
    // SAFETY: the runtime is single-threaded; the child only runs `run`,
    // which execs or _exits.
    let mut forked = unsafe { syscalls::clone3(0, target) };
    if forked.is_err() && target.is_some() {
        child.cloned_into_cgroup = false;
        // SAFETY: as above.
        forked = unsafe { syscalls::clone3(0, None) };
    }
    if !matches!(forked, Ok(Forked::Child)) {
        restore_namespaces(&restore)?;
    }
    let (pid, pidfd) = match forked.map_err(sys("clone3"))? {
        Forked::Child => {
            drop(parent_end);
            run(&child, &child_end)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_end);
    let watch = Watch {
        progress: &progress,
        cgroup: &*cgroup,
        frozen_ok: req.frozen_ok,
        who: "exec process",
    };
    let driven =
        match drive(req, pid, &parent_end, &watch) {
            Err(SpawnError::Channel(ChannelError::Send(_) | ChannelError::Closed)) => Err(
                why_gone(&parent_end, Some(&pidfd), true, &progress, "exec process"),
            ),
            other => other,
        };
    match driven {
        Ok(()) => Ok(Execd { pid, pidfd }),
        Err(e) => {
            kill_child(pidfd.as_fd(), Some(pid), &*cgroup);
            Err(e)
        }
    }
}

/// Follows the child to its execve: `Created` comes right before it, and
/// a successful exec closes the channel (it is close-on-exec).
fn drive(
    req: &ExecRequest<'_>,
    pid: libc::pid_t,
    channel: &Channel,
    watch: &Watch<'_>,
) -> Result<(), SpawnError> {
    let mut execing = false;
    loop {
        let (msg, fd) = match next_message(channel, watch) {
            Ok(m) => m,
            Err(SpawnError::Channel(ChannelError::Closed)) if execing => return Ok(()),
            Err(e) => return Err(e),
        };
        match (msg, fd) {
            (ToParent::SeccompListener, Some(fd)) => {
                hand_listener_to_agent(req.spec, pid, req.state, fd)?
            }
            (ToParent::Created, _) => execing = true,
            (ToParent::Failed(msg), _) => return Err(SpawnError::Init(msg)),
            (other, _) => {
                return Err(SpawnError::Init(format!(
                    "unexpected message from the exec process: {other:?}"
                )))
            }
        }
    }
}

/// The child: never returns.
fn run(child: &Child<'_>, channel: &Channel) -> ! {
    let err = match setup_and_exec(child, channel) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = channel.send(&ToParent::Failed(err.to_string()));
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to
    // the parent's copy of this process.
    unsafe { libc::_exit(1) }
}

fn setup_and_exec(child: &Child<'_>, channel: &Channel) -> Result<Infallible, ChildError> {
    child.progress.set(Step::JoiningCgroup);
    phase::set_undumpable().map_err(|source| ChildError::Sys {
        what: "prctl(PR_SET_DUMPABLE)",
        source,
    })?;
    // Host cgroup files first: after joining a user namespace they are no
    // longer ours to write.
    child.cgroup.join_current(child.cloned_into_cgroup)?;
    child.progress.set(Step::EnteringNamespaces);
    namespaces::join_process(child.init_pidfd, child.join)?;
    if let Some(root) = &child.init_root {
        let fail = |what| move |source| ChildError::Sys { what, source };
        nix::unistd::fchdir(root).map_err(fail("fchdir to the init's root"))?;
        nix::unistd::chroot(".").map_err(fail("chroot to the init's root"))?;
    }
    if child.in_user_namespace {
        // Host root is unmapped in the container's user namespace; become
        // its root until the process's own user is set.
        let root = Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root).map_err(|source| ChildError::Sys {
            what: "setresgid(0) in the user namespace",
            source,
        })?;
        let root = Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root).map_err(|source| ChildError::Sys {
            what: "setresuid(0) in the user namespace",
            source,
        })?;
    }
    let process = child.phase.process;
    if let (true, Some(console)) = (process.terminal().unwrap_or(false), child.console) {
        terminal::hand_over(process, console, false)?;
    }
    let proc = if phase::needs_proc(process) {
        Some(PrivateProc::open()?)
    } else {
        None
    };
    child.progress.set(Step::ProcessAttributes);
    let ready = phase::prepare(&child.phase, proc, channel)?;
    channel.send(&ToParent::Created)?;
    child.progress.set(Step::Executing);
    Ok(crate::process::exec::exec(&ready)?)
}
