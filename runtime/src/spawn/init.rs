//! The create pipeline, container side: what the init does between clone
//! and execve. It runs in a fork of a single-threaded runtime, so ordinary
//! Rust is safe here, but every failure is sent to the parent as one message
//! instead of unwinding (and a panic aborts, which the parent sees as the
//! channel closing).

use std::convert::Infallible;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::SigSet;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::channel::{Channel, ChannelError, ToChild, ToParent};
use super::phase::{self, ProcessError};
use super::progress::{Progress, Step};
use crate::cgroups::{CgroupError, Manager};
use crate::hooks::{self, HookError};
use crate::namespaces::{self, NamespaceError, Plan};
use crate::process::exec::{self, ExecError};
use crate::procfs::{PrivateProc, ProcError};
use crate::rootfs::{self, MountContext, Prepared, RootfsError};
use crate::security::capabilities::CapMasks;
use crate::state::OciState;
use crate::terminal::{self, TerminalError};

/// Everything the init needs, prepared by the parent before fork.
pub struct Config<'a> {
    pub id: &'a str,
    /// When the container was created (its state's `created`).
    pub created: &'a str,
    /// Where the init is, for the runtime to tell if it dies silently.
    pub progress: &'a Progress,
    pub spec: &'a Spec,
    pub bundle_dir: &'a Path,
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    pub caps: CapMasks,
    pub last_cap: u32,
    pub cgroup: &'a dyn Manager,
    /// The cgroup `cgroup` mounts show: the container's, or the runtime's
    /// when the container has none.
    pub cgroup_view: &'a crate::cgroups::Record,
    /// Bind sources the runtime opened before fork.
    pub prepared: &'a Prepared,
    /// The compiled `linux.seccomp`, if any.
    pub seccomp: Option<&'a skiff_seccomp::Filter>,
    /// `linux.mountLabel`, only when SELinux is enabled.
    pub mount_label: Option<&'a str>,
    /// True when clone3 already placed the init in (part of) its cgroup.
    pub cloned_into_cgroup: bool,
    pub fifo: &'a OwnedFd,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub sigmask: Option<&'a SigSet>,
    pub console: Option<BorrowedFd<'a>>,
    /// True when the init may not hide itself behind PR_SET_DUMPABLE: the
    /// runtime was started by a user, and could no longer reach it. The
    /// /proc files of a process that is not dumpable, and setns through
    /// its pidfd, want ptrace access, which for a process that never
    /// executed in the container's user namespace only root of the host's
    /// has: the id maps could not be written (by the runtime or
    /// newuidmap), nor could `exec` join a created container. Such an init
    /// is, to the container, a process of the container's own user (as
    /// runc's init is), and its exe is the sealed copy nobody can write
    /// (`security::sealed_exe`). Decided before fork: in its new user
    /// namespace the init is root as soon as its maps are written.
    pub stay_dumpable: bool,
}

/// A failure inside the init.
#[derive(Debug, thiserror::Error)]
enum InitError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    #[error("{what}: {source}")]
    Sys { what: String, source: Errno },
    #[error("unexpected message from the runtime: {0:?}")]
    Protocol(ToChild),
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> InitError {
    let what = what.into();
    move |source| InitError::Sys { what, source }
}

/// Runs the init to its execve. Never returns: on failure the error goes
/// to the parent (or, once `create` has returned, to stderr) and the
/// process exits.
pub fn run(cfg: &Config<'_>, channel: &Channel) -> ! {
    let mut created = false;
    let err = match setup_and_exec(cfg, channel, &mut created) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if created {
        // Nobody is listening on the channel any more; the container's
        // stderr is where the manager looks.
        crate::logging::log(crate::logging::Level::Error, &err.to_string());
    } else {
        let _ = channel.send(&ToParent::Failed(err.to_string()));
    }
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to
    // the parent's copy of this process.
    unsafe { libc::_exit(1) }
}

/// Waits for the next message, which must be a Proceed; returns the pid it
/// carries (the init as the runtime sees it).
fn await_proceed(channel: &Channel) -> Result<libc::pid_t, InitError> {
    match channel.recv::<ToChild>()? {
        ToChild::Proceed { pid } => Ok(pid),
        other => Err(InitError::Protocol(other)),
    }
}

/// Namespaces: joined ones, then (on the slow path) new ones, then the
/// cgroup, the id maps from the parent, the extra fork a new pid namespace
/// needs when it could not be made by clone3, and the cgroup namespace.
/// Returns the init's pid as the runtime sees it.
fn enter_namespaces(cfg: &Config<'_>, channel: &Channel) -> Result<libc::pid_t, InitError> {
    let plan = cfg.plan;
    let single = plan.single_clone();
    if !single {
        for joined in plan.joined_by_child() {
            namespaces::join(joined)?;
        }
        namespaces::unshare(plan.creation_flags())?;
        channel.send(&ToParent::Ready)?;
    }
    if !plan.has(LinuxNamespaceType::User) {
        cfg.progress.set(Step::JoiningCgroup);
        // Outside a user namespace the init places itself: cheaper than the
        // runtime doing it (see Manager::join_current), and in parallel
        // with the runtime's side of the setup.
        cfg.cgroup.join_current(cfg.cloned_into_cgroup)?;
    }
    cfg.progress.set(Step::AwaitingIdMaps);
    let mut pid = await_proceed(channel)?;
    cfg.progress.set(Step::EnteringNamespaces);
    if !single && plan.is_new(LinuxNamespaceType::Pid) {
        // unshare(CLONE_NEWPID) only applies to children: fork the init.
        // SAFETY: single-threaded; the intermediate only reports and exits.
        match unsafe { nix::unistd::fork() }.map_err(sys("fork for the pid namespace"))? {
            nix::unistd::ForkResult::Parent { child } => {
                let _ = channel.send(&ToParent::InitPid(child.as_raw()));
                // SAFETY: see `run`.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Child => pid = await_proceed(channel)?,
        }
    }
    if single {
        for joined in plan.joined_by_child() {
            namespaces::join(joined)?;
        }
    }
    if plan.has(LinuxNamespaceType::User) {
        // Become the namespace's root for the rest of the setup.
        let root = Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root)
            .map_err(sys("setresgid(0) in the user namespace"))?;
        let root = Uid::from_raw(0);
        nix::unistd::setresuid(root, root, root)
            .map_err(sys("setresuid(0) in the user namespace"))?;
    }
    if plan.is_new(LinuxNamespaceType::Cgroup) {
        // Now that the parent placed us, our cgroup becomes the root the
        // container sees.
        namespaces::unshare(CloneFlags::CLONE_NEWCGROUP)?;
    }
    Ok(pid)
}

/// The state JSON for hooks run by the init.
fn hook_state(cfg: &Config<'_>, pid: libc::pid_t, status: &str) -> Vec<u8> {
    let empty = std::collections::HashMap::new();
    let annotations = cfg.spec.annotations().as_ref().unwrap_or(&empty);
    let paths = (cfg.bundle_dir, cfg.rootfs);
    OciState::new(cfg.id, pid, status, paths, cfg.created, annotations).to_json()
}

/// The private procfs, when anything needs /proc writes: sysctls, the OOM
/// score, LSM labels. A fresh instance where the kernel allows one; the
/// container's own /proc (verified) otherwise.
fn private_proc(spec: &Spec) -> Result<Option<PrivateProc>, InitError> {
    let process = spec.process().as_ref();
    let needed = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .is_some_and(|s| !s.is_empty())
        || process.is_some_and(phase::needs_proc);
    if !needed {
        return Ok(None);
    }
    Ok(Some(PrivateProc::open()?))
}

fn apply_sysctls(spec: &Spec, proc: Option<&PrivateProc>) -> Result<(), InitError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let Some(proc) = proc else { return Ok(()) };
    for (key, value) in sysctl {
        let path = format!("sys/{}", key.replace('.', "/"));
        proc.write(&path, value.as_bytes())?;
    }
    Ok(())
}

/// Blocks until `start` writes to the exec fifo.
fn wait_for_start(fifo: &OwnedFd) -> Result<(), InitError> {
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys("waiting for start")(e)),
            Ok(_) => {
                let mut byte = [0u8; 1];
                match nix::unistd::read(fifo.as_fd(), &mut byte) {
                    Ok(_) => return Ok(()),
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
                    Err(e) => return Err(sys("reading the exec fifo")(e)),
                }
            }
        }
    }
}

fn setup_and_exec(
    cfg: &Config<'_>,
    channel: &Channel,
    created: &mut bool,
) -> Result<Infallible, InitError> {
    if !cfg.stay_dumpable {
        phase::set_undumpable().map_err(sys("prctl(PR_SET_DUMPABLE)"))?;
    }
    let spec = cfg.spec;
    let process = spec.process().as_ref().ok_or(InitError::Sys {
        what: "process".into(),
        source: Errno::EINVAL,
    })?;
    let pid = enter_namespaces(cfg, channel)?;
    // Device nodes must get exactly the mode the config gives.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());

    cfg.progress.set(Step::Mounting);
    // A mount namespace the container does not own is not skiff's to mount
    // in: the root is built in a private one (see rootfs::set_aside).
    let aside = if cfg.plan.is_new(LinuxNamespaceType::Mount) {
        None
    } else {
        Some(rootfs::set_aside().map_err(RootfsError::from)?)
    };
    let root = {
        let setup = rootfs::Setup {
            spec,
            rootfs: cfg.rootfs,
            mount: MountContext {
                bundle: cfg.bundle_dir,
                cgroup: cfg.cgroup_view,
                cgroupns: cfg.plan.has(LinuxNamespaceType::Cgroup),
                userns: cfg.plan.has(LinuxNamespaceType::User),
                prepared: cfg.prepared,
                selinux_label: cfg.mount_label,
            },
        };
        let root = rootfs::prepare(&setup)?;
        // The working directory is created now, while the root is still
        // writable (runc does the same).
        rootfs::resolve::mkdir_all(root.as_fd(), process.cwd())
            .map_err(sys(format!("process.cwd {}", process.cwd().display())))?;
        root
    };

    let spec_hooks = spec.hooks().as_ref();
    if hooks::any(spec_hooks, hooks::Kind::Prestart)
        || hooks::any(spec_hooks, hooks::Kind::CreateRuntime)
    {
        cfg.progress.set(Step::RuntimeHooks);
        channel.send(&ToParent::RunHooks)?;
        match channel.recv::<ToChild>()? {
            ToChild::HooksDone => {}
            other => return Err(InitError::Protocol(other)),
        }
    }
    cfg.progress.set(Step::CreateContainerHooks);
    hooks::run(
        spec_hooks,
        hooks::Kind::CreateContainer,
        &hook_state(cfg, pid, "created"),
    )?;

    cfg.progress.set(Step::EnteringRoot);
    rootfs::enter(root.as_fd(), cfg.no_pivot)?;
    if let (true, Some(console)) = (process.terminal().unwrap_or(false), cfg.console) {
        terminal::hand_over(process, console, true)?;
    } else {
        // A session of its own, as runc gives every init: the caller's job
        // control stays out of the container, and CRIU dumps a container
        // only when the leader of its session is inside it.
        nix::unistd::setsid().map_err(sys("setsid"))?;
    }
    let proc = private_proc(spec)?;
    let slash = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("opening /"))?;
    rootfs::finalize(spec, slash.as_fd(), aside)?;

    if cfg.plan.is_new(LinuxNamespaceType::Network) {
        crate::netdev::loopback_up().map_err(sys("bringing up lo"))?;
    }
    if let Some(name) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(name).map_err(sys("hostname"))?;
    }
    if let Some(name) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        // SAFETY: valid pointer and length.
        if unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } < 0 {
            return Err(sys("domainname")(Errno::last()));
        }
    }
    apply_sysctls(spec, proc.as_ref())?;
    let phase = phase::Phase {
        process,
        personality: spec.linux().as_ref().and_then(|l| l.personality().as_ref()),
        memory_policy: spec
            .linux()
            .as_ref()
            .and_then(|l| l.memory_policy().as_ref()),
        caps: cfg.caps,
        last_cap: cfg.last_cap,
        seccomp: cfg.seccomp,
        keyring: (!cfg.no_new_keyring).then_some(cfg.id),
        preserve_fds: cfg.preserve_fds,
        sigmask: cfg.sigmask,
    };
    cfg.progress.set(Step::ProcessAttributes);
    let ready = phase::prepare(&phase, proc, channel)?;

    cfg.progress.set(Step::AwaitingStart);
    channel.send(&ToParent::Created)?;
    *created = true;
    wait_for_start(cfg.fifo)?;
    cfg.progress.set(Step::StartContainerHooks);
    hooks::run(
        spec_hooks,
        hooks::Kind::StartContainer,
        &hook_state(cfg, pid, "created"),
    )?;
    cfg.progress.set(Step::Executing);
    Ok(exec::exec(&ready)?)
}
