//! The create pipeline, runtime side. Everything that can be decided
//! before fork is decided here (namespace fds, capability masks, LSM
//! support, the cgroup), then one `clone3` creates the init with its
//! namespaces (and, on cgroup v2, directly in its cgroup). The parent then
//! answers the init's requests on the channel: id maps and cgroup
//! placement, runtime-namespace hooks, until the init reports `Created` or
//! fails; a failure kills the init and removes the cgroup.

pub mod channel;
pub mod exec;
mod init;
mod phase;
pub(crate) mod progress;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::bundle::Bundle;
use crate::cgroups::{self, CgroupError, Manager};
use crate::hooks::{self, HookError};
use crate::idmap::{IdMapError, IdMaps};
use crate::namespaces::{self, NamespaceError, Plan};
use crate::rootfs;
use crate::security::capabilities::{self, HostCaps};
use crate::security::lsm::{self, LsmError, Lsms};
use crate::state::{self, OciState};
use crate::syscalls::{self, Forked};
use channel::{Channel, ChannelError, ToChild, ToParent};
use progress::{Progress, Step};

/// Why a container could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    IdMap(#[from] IdMapError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Lsm(#[from] LsmError),
    #[error(transparent)]
    Mount(#[from] rootfs::MountError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    NetDevice(#[from] crate::netdev::NetDeviceError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Console(#[from] crate::terminal::TerminalError),
    #[error("{0}")]
    Seccomp(String),
    #[error("{what}: {source}")]
    Sys { what: &'static str, source: Errno },
    #[error(transparent)]
    Invalid(#[from] crate::validate::Invalid),
    #[error("linux.namespaces: skiff runs as uid {0}, not root, and without a user namespace it may create no namespace or mount (add a \"user\" namespace with uidMappings and gidMappings, as `skiff spec --rootless` does)")]
    NeedsUserNamespace(u32),
    /// The init's own account of what failed.
    #[error("{0}")]
    Init(String),
    /// A child that went away without a word: how, and where it was.
    #[error("the container {who} {how} while {}", step.describe())]
    Died {
        who: &'static str,
        how: String,
        step: Step,
    },
    /// A child that stopped making progress (a hung mount, say); it has
    /// been killed.
    #[error("the container {who} made no progress for {} s while {}; killed it", STEP_BOUND.as_secs(), step.describe())]
    Stalled { who: &'static str, step: Step },
    /// Someone froze the container's cgroup while the child was setting up.
    #[error("container's cgroup unexpectedly frozen: the container {who} cannot run while {}; killed it", step.describe())]
    Frozen { who: &'static str, step: Step },
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> SpawnError {
    move |source| SpawnError::Sys { what, source }
}

/// What to create.
pub struct Request<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    /// The container's state directory (holds the exec fifo).
    pub dir: &'a Path,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// The signal mask the container process starts with.
    pub sigmask: Option<SigSet>,
    /// Where the init sends its pty master when `process.terminal` is set.
    pub console: Option<BorrowedFd<'a>>,
    /// When the container was created (its state's `created`).
    pub created: &'a str,
    /// `--rootless`: see `CreateOptions::rootless`.
    pub rootless: bool,
}

/// A created container: its init waits for `start`.
pub struct Spawned {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
    pub start_time: u64,
    pub cgroup: Box<dyn Manager>,
    pub own_pid_ns: bool,
}

/// Creates the container's init in `cgroup` (made here). On failure
/// nothing is left: no process, no cgroup (the caller removes the state
/// directory).
pub fn spawn(req: &Request<'_>, mut cgroup: Box<dyn Manager>) -> Result<Spawned, SpawnError> {
    let spec = &req.bundle.spec;
    let process = spec.process().as_ref().ok_or(SpawnError::Sys {
        what: "process",
        source: Errno::EINVAL,
    })?;
    crate::validate::console(process, req.console.is_some())?;
    let plan = Plan::from_spec(spec)?;
    let euid = nix::unistd::geteuid();
    if !euid.is_root() && !plan.has(LinuxNamespaceType::User) {
        return Err(SpawnError::NeedsUserNamespace(euid.as_raw()));
    }
    let linux = spec.linux().as_ref();
    // Checked before anything exists: a user may map only its own ids
    // and its subordinate ones.
    let id_maps = if plan.is_new(LinuxNamespaceType::User) {
        let uid = linux.and_then(|l| l.uid_mappings().as_deref());
        let gid = linux.and_then(|l| l.gid_mappings().as_deref());
        Some(IdMaps::plan(
            uid.unwrap_or_default(),
            gid.unwrap_or_default(),
        )?)
    } else {
        None
    };
    let apparmor = process.apparmor_profile().as_deref();
    let selinux = process.selinux_label().as_deref();
    let mount_label = spec
        .linux()
        .as_ref()
        .and_then(|l| l.mount_label().as_deref());
    let lsms = Lsms::detect(apparmor.is_some() || selinux.is_some() || mount_label.is_some());
    lsm::check(apparmor, selinux, lsms)?;
    let prepared =
        rootfs::prepare_sources(spec, &req.bundle.dir, plan.has(LinuxNamespaceType::User))?;
    let host_caps = HostCaps::detect();
    let caps = capabilities::masks(process.capabilities().as_ref(), host_caps);

    let filter = compile_seccomp(linux.and_then(|l| l.seccomp().as_ref()))?;
    let resources = linux.and_then(|l| l.resources().as_ref());
    if let Err(e) = cgroup.create() {
        if !req.rootless {
            return Err(e.into());
        }
        cgroup = cgroups::without_delegation(e, resources)?;
    }
    let res = cgroups::devices::at_create(resources);
    let applied = if req.rootless {
        apply_rootless(cgroup.as_ref(), res)
    } else {
        cgroup.apply(&res)
    };
    if let Err(e) = applied {
        let _ = cgroup.destroy();
        return Err(e.into());
    }
    let fifo_path = state::fifo_path(req.dir);
    let fifo = nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o600))
        .map_err(sys("creating the exec fifo"))
        .and_then(|()| {
            nix::fcntl::open(
                &fifo_path,
                nix::fcntl::OFlag::O_RDONLY
                    | nix::fcntl::OFlag::O_NONBLOCK
                    | nix::fcntl::OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys("opening the exec fifo"))
        });
    let fifo = match fifo {
        Ok(f) => f,
        Err(e) => {
            let _ = cgroup.destroy();
            return Err(e);
        }
    };

    let progress = match Progress::new() {
        Ok(p) => p,
        Err(e) => {
            let _ = cgroup.destroy();
            return Err(sys("mapping the setup progress page")(e));
        }
    };
    // A container without a cgroup of its own sees the runtime's in a
    // `cgroup` mount.
    let own_cgroup = cgroup.record().dirs.is_empty().then(cgroups::own);
    let mut config = init::Config {
        id: req.id,
        created: req.created,
        progress: &progress,
        spec,
        bundle_dir: &req.bundle.dir,
        rootfs: &req.bundle.rootfs,
        plan: &plan,
        caps,
        last_cap: host_caps.last_cap,
        cgroup: cgroup.as_ref(),
        cgroup_view: own_cgroup.as_ref().unwrap_or(cgroup.record()),
        seccomp: filter.as_ref(),
        prepared: &prepared,
        mount_label: mount_label.filter(|_| lsms.selinux),
        cloned_into_cgroup: false,
        fifo: &fifo,
        no_pivot: req.no_pivot,
        no_new_keyring: req.no_new_keyring,
        preserve_fds: req.preserve_fds,
        sigmask: req.sigmask.as_ref(),
        console: req.console,
        stay_dumpable: !euid.is_root(),
    };
    let mut init = Init {
        pid: 0,
        pidfd: None,
        ours: true,
    };
    let result = clone_and_drive(
        req,
        &mut config,
        cgroup.as_ref(),
        (&plan, id_maps.as_ref()),
        &mut init,
    );
    match result {
        Ok(()) => {}
        Err(e) => {
            init.kill(cgroup.as_ref());
            let _ = cgroup.destroy();
            if init.pid > 0 {
                let state = hook_state(req, init.pid, "stopped");
                hooks::run_warn(spec.hooks().as_ref(), hooks::Kind::Poststop, &state);
            }
            return Err(e);
        }
    }
    let start_time = crate::procfs::stat(init.pid)
        .map(|s| s.start_time)
        .unwrap_or(0);
    let pidfd = init.pidfd.take().ok_or(SpawnError::Sys {
        what: "pidfd",
        source: Errno::EBADF,
    })?;
    Ok(Spawned {
        pid: init.pid,
        pidfd,
        start_time,
        cgroup,
        own_pid_ns: plan.has(LinuxNamespaceType::Pid),
    })
}

/// `--rootless`: the limits, then the device rules where they can go. The
/// device cgroup is root's to program (devices.allow, a BPF program), and
/// without root no device can be made or opened beyond what the user may
/// open anyway: a refusal there is no error, as with runc.
fn apply_rootless(
    cgroup: &dyn Manager,
    mut res: oci_spec::runtime::LinuxResources,
) -> Result<(), CgroupError> {
    let devices = res.devices().clone();
    res.set_devices(None);
    cgroup.apply(&res)?;
    if cgroup.record().dirs.is_empty() {
        return Ok(());
    }
    let mut rules = oci_spec::runtime::LinuxResources::default();
    rules.set_devices(devices);
    if let Err(e) = cgroup.apply(&rules) {
        crate::debug!("{e}: device rules not applied (rootless)");
    }
    Ok(())
}

/// Compiles `linux.seccomp` for the init or an exec process, and checks
/// what the runtime itself needs from it: the filter goes on right before
/// execve, so execve is the one syscall the profile must let through.
pub(crate) fn compile_seccomp(
    profile: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> Result<Option<skiff_seccomp::Filter>, SpawnError> {
    let Some(profile) = profile else {
        return Ok(None);
    };
    let mut filter =
        skiff_seccomp::compile(profile).map_err(|e| SpawnError::Seccomp(e.to_string()))?;
    if !filter.unknown.is_empty() {
        crate::warn!(
            "linux.seccomp: ignoring syscalls unknown to skiff (Linux {} tables): {}",
            skiff_seccomp::SYSCALLS_KERNEL,
            filter.unknown.join(", ")
        );
    }
    if !filter.lets_through(libc::SYS_execve as u32) {
        return Err(SpawnError::Seccomp(
            "linux.seccomp: the profile does not allow execve, which starts the container process"
                .into(),
        ));
    }
    let dropped = filter.drop_unsupported_flags();
    if dropped != 0 {
        crate::debug!(
            "linux.seccomp.flags: this kernel does not support flags {dropped:#x}; installing without them"
        );
    }
    Ok(Some(filter))
}

/// How long a child may stay in one setup step before the runtime gives up
/// on it. Hooks are not bounded here: they have their own timeouts.
const STEP_BOUND: std::time::Duration = std::time::Duration::from_secs(120);

/// What the runtime watches while it waits for a child.
pub(crate) struct Watch<'a> {
    pub progress: &'a Progress,
    pub cgroup: &'a dyn Manager,
    /// `exec --ignore-paused`: a frozen cgroup is expected, and time spent
    /// frozen does not count.
    pub frozen_ok: bool,
    pub who: &'static str,
}

/// The child's next message. Every wait is bounded: a child that dies
/// closes the channel, one whose cgroup is frozen cannot go on, and one
/// that stays in a step longer than `STEP_BOUND` (hooks excepted) is
/// reported as stalled.
fn next_message(
    channel: &Channel,
    watch: &Watch<'_>,
) -> Result<(ToParent, Option<OwnedFd>), SpawnError> {
    let tick = std::time::Duration::from_secs(1);
    let mut step = watch.progress.get();
    let mut since = std::time::Instant::now();
    loop {
        if let Some(message) = channel.recv_with_fd_within::<ToParent>(tick)? {
            return Ok(message);
        }
        let now = watch.progress.get();
        let frozen = watch.cgroup.frozen();
        if frozen && !watch.frozen_ok {
            return Err(SpawnError::Frozen {
                who: watch.who,
                step: now,
            });
        }
        if now != step || frozen {
            (step, since) = (now, std::time::Instant::now());
        } else if !step.runs_hooks() && since.elapsed() >= STEP_BOUND {
            return Err(SpawnError::Stalled {
                who: watch.who,
                step,
            });
        }
    }
}

/// Why a child that closed the channel (or refused a message) is gone: its
/// last words if it left any in the channel, otherwise how it ended (when
/// it is our child and its status can be read) and the step it had reached.
fn why_gone(
    channel: &Channel,
    pidfd: Option<&OwnedFd>,
    ours: bool,
    progress: &Progress,
    who: &'static str,
) -> SpawnError {
    if let Ok(Some((ToParent::Failed(msg), _))) =
        channel.recv_with_fd_within::<ToParent>(std::time::Duration::ZERO)
    {
        return SpawnError::Init(msg);
    }
    let step = progress.get();
    let how = match pidfd {
        Some(fd) if ours => exit_description(fd.as_fd()),
        _ => None,
    };
    SpawnError::Died {
        who,
        how: how.unwrap_or_else(|| "exited without reporting an error".into()),
        step,
    }
}

/// "was killed by SIGKILL" or "exited with status 1, without reporting an
/// error", once the process has ended (waiting a few seconds for that).
fn exit_description(pidfd: BorrowedFd<'_>) -> Option<String> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    crate::container::wait_exit(pidfd, Some(std::time::Duration::from_secs(5))).ok()?;
    match waitid(
        Id::PIDFd(pidfd),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
    )
    .ok()?
    {
        WaitStatus::Exited(_, code) => Some(format!(
            "exited with status {code}, without reporting an error,"
        )),
        WaitStatus::Signaled(_, signal, _) => Some(format!("was killed by {signal}")),
        _ => None,
    }
}

/// The init process as the parent tracks it.
struct Init {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    /// False once the init is a grandchild we cannot wait for directly.
    ours: bool,
}

impl Init {
    /// Kills the init (if any) and waits until it is gone.
    fn kill(&mut self, cgroup: &dyn Manager) {
        if let Some(fd) = &self.pidfd {
            kill_child(fd.as_fd(), self.ours.then_some(self.pid), cgroup);
        }
    }
}

/// Kills a child of the runtime (`pid` when we can reap it) and waits,
/// bounded, until it is gone. A frozen cgroup holds back even SIGKILL on
/// cgroup v1, so it is thawed first.
fn kill_child(pidfd: BorrowedFd<'_>, pid: Option<libc::pid_t>, cgroup: &dyn Manager) {
    let _ = syscalls::pidfd_send_signal(pidfd, libc::SIGKILL);
    if cgroup.frozen() {
        let _ = cgroup.freeze(false);
    }
    let _ = crate::container::wait_exit(pidfd, Some(std::time::Duration::from_secs(10)));
    if let Some(pid) = pid {
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}

/// The state JSON hooks get on stdin.
fn hook_state(req: &Request<'_>, pid: libc::pid_t, status: &str) -> Vec<u8> {
    let empty = std::collections::HashMap::new();
    let annotations = req.bundle.spec.annotations().as_ref().unwrap_or(&empty);
    let paths = (req.bundle.dir.as_path(), req.bundle.rootfs.as_path());
    OciState::new(req.id, pid, status, paths, req.created, annotations).to_json()
}

/// Sends the seccomp user-notification fd to the agent at
/// `linux.seccomp.listenerPath`, with the container process state the
/// spec defines as the message.
fn hand_listener_to_agent(
    spec: &Spec,
    pid: libc::pid_t,
    state: &[u8],
    fd: OwnedFd,
) -> Result<(), SpawnError> {
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let path = seccomp
        .and_then(|s| s.listener_path().clone())
        .unwrap_or_default();
    let metadata = seccomp
        .and_then(|s| s.listener_metadata().clone())
        .unwrap_or_default();
    let state: serde_json::Value = serde_json::from_slice(state).unwrap_or_default();
    let message = serde_json::json!({
        "ociVersion": state::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata,
        "state": state,
    });
    let sock = crate::terminal::connect_console_socket(&path).map_err(|e| {
        SpawnError::Seccomp(format!(
            "linux.seccomp.listenerPath {}: {}",
            path.display(),
            e.source
        ))
    })?;
    let bytes = serde_json::to_vec(&message).unwrap_or_default();
    crate::fdpass::send(sock.as_fd(), &bytes, Some(fd.as_fd())).map_err(|e| {
        SpawnError::Seccomp(format!(
            "linux.seccomp.listenerPath {}: sending the listener: {e}",
            path.display()
        ))
    })
}

/// Namespace changes the parent makes for its next child only: joining a
/// pid or time namespace, or creating a time namespace with offsets (which
/// must be written before any process enters it). Returns what to restore:
/// nothing where the runtime may not come back (see
/// `namespaces::may_return`), and then its later children (hooks) start
/// in those namespaces too.
fn enter_parent_namespaces(
    plan: &Plan,
    spec: &Spec,
) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>, SpawnError> {
    let mut restore = Vec::new();
    let mut save = |typ| -> Result<(), SpawnError> {
        if namespaces::may_return(typ) {
            restore.push((typ, namespaces::current(typ)?));
        }
        Ok(())
    };
    for typ in [LinuxNamespaceType::Pid, LinuxNamespaceType::Time] {
        if let Some(joined) = plan.joined(typ) {
            save(typ)?;
            namespaces::join(joined)?;
        }
    }
    if plan.is_new(LinuxNamespaceType::Time) {
        save(LinuxNamespaceType::Time)?;
        namespaces::unshare(namespaces::clone_flag(LinuxNamespaceType::Time))?;
        if let Some(offsets) = spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().as_ref())
        {
            namespaces::write_time_offsets(offsets)?;
        }
    }
    Ok(restore)
}

/// Puts the parent back into the namespaces it started in.
fn restore_namespaces(restore: &[(LinuxNamespaceType, OwnedFd)]) -> Result<(), SpawnError> {
    for (typ, fd) in restore {
        nix::sched::setns(fd.as_fd(), namespaces::clone_flag(*typ)).map_err(|source| {
            NamespaceError::Join {
                kind: namespaces::type_name(*typ),
                source,
            }
        })?;
    }
    Ok(())
}

fn clone_and_drive(
    req: &Request<'_>,
    config: &mut init::Config<'_>,
    cgroup: &dyn Manager,
    (plan, id_maps): (&Plan, Option<&IdMaps>),
    init: &mut Init,
) -> Result<(), SpawnError> {
    let (parent_end, child_end) = channel::pair()?;
    let restore = enter_parent_namespaces(plan, config.spec)?;
    let single = plan.single_clone();
    let flags = if single {
        plan.creation_flags().bits() as u64
    } else {
        0
    };
    let target = cgroup.clone_target();
    config.cloned_into_cgroup = target.is_some();
    // SAFETY: the runtime is single-threaded; the child only runs init::run,
    // which execs or _exits.
    let mut forked = unsafe { syscalls::clone3(flags, target) };
    if forked.is_err() && target.is_some() {
        // CLONE_INTO_CGROUP can be refused (e.g. a threaded cgroup); fall
        // back to moving the child after the fact.
        config.cloned_into_cgroup = false;
        // SAFETY: as above.
        forked = unsafe { syscalls::clone3(flags, None) };
    }
    if !matches!(forked, Ok(Forked::Child)) {
        restore_namespaces(&restore)?;
    }
    let (pid, pidfd) = match forked.map_err(sys("clone3"))? {
        Forked::Child => {
            drop(parent_end);
            init::run(config, &child_end)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_end);
    init.pid = pid;
    init.pidfd = Some(pidfd);
    let cloned = config.cloned_into_cgroup;
    let linux = config.spec.linux().as_ref();
    // What the init cannot do itself: id maps, (in a user namespace, where
    // the host's cgroup files are not its own) cgroup placement, and moving
    // network devices in.
    let setup = || -> Result<(), SpawnError> {
        if let Some(maps) = id_maps {
            maps.write(pid)?;
        }
        if plan.has(LinuxNamespaceType::User) {
            cgroup.add(pid, cloned)?;
        }
        if let Some(devices) = linux
            .and_then(|l| l.net_devices().as_ref())
            .filter(|d| !d.is_empty())
        {
            // The init is our unreaped child: its pid names it still.
            let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
                .map_err(sys("opening the container's network namespace"))?;
            crate::netdev::move_all(devices, netns.as_fd())?;
        }
        parent_end.send(&ToChild::Proceed { pid })?;
        Ok(())
    };
    let spec_hooks = config.spec.hooks().as_ref();
    let watch = Watch {
        progress: config.progress,
        cgroup,
        frozen_ok: false,
        who: "init",
    };
    // The init the cgroup manager adopts is the one that runs the
    // container: after the extra fork a new pid namespace may need, the
    // forked one.
    let extra_fork = !single && plan.is_new(LinuxNamespaceType::Pid);
    let mut drive = || -> Result<(), SpawnError> {
        if single {
            // The init's namespaces exist as soon as clone3 returns: no
            // need to wait for it to say so.
            setup()?;
            cgroup.adopt(init.pid)?;
        }
        loop {
            let (msg, fd) = next_message(&parent_end, &watch)?;
            if let (ToParent::SeccompListener, Some(fd)) = (&msg, fd) {
                let state = hook_state(req, init.pid, "creating");
                hand_listener_to_agent(config.spec, init.pid, &state, fd)?;
                continue;
            }
            match msg {
                ToParent::Ready => {
                    setup()?;
                    if !extra_fork {
                        cgroup.adopt(init.pid)?;
                    }
                }
                ToParent::InitPid(grandchild) => {
                    // The intermediate child exits right after reporting.
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(init.pid), None);
                    init.pid = grandchild;
                    init.ours = false;
                    init.pidfd = Some(syscalls::pidfd_open(grandchild).map_err(sys("pidfd_open"))?);
                    parent_end.send(&ToChild::Proceed { pid: grandchild })?;
                    cgroup.adopt(grandchild)?;
                }
                ToParent::RunHooks => {
                    // The environment exists: runtime.md's lifecycle puts the
                    // create hooks after step 2, which its states call created.
                    let state = hook_state(req, init.pid, "created");
                    hooks::run(spec_hooks, hooks::Kind::Prestart, &state)?;
                    hooks::run(spec_hooks, hooks::Kind::CreateRuntime, &state)?;
                    parent_end.send(&ToChild::HooksDone)?;
                }
                ToParent::SeccompListener => {
                    return Err(SpawnError::Sys {
                        what: "seccomp listener message without an fd",
                        source: Errno::EBADMSG,
                    })
                }
                ToParent::Created => return Ok(()),
                ToParent::Failed(msg) => return Err(SpawnError::Init(msg)),
            }
        }
    };
    match drive() {
        Err(SpawnError::Channel(ChannelError::Send(_) | ChannelError::Closed)) => Err(why_gone(
            &parent_end,
            init.pidfd.as_ref(),
            init.ours,
            config.progress,
            "init",
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forks a child that runs `child` on its end of a channel, then exits
    /// with `code`; returns the parent's end and the child's pidfd once the
    /// child has exited.
    fn dead_child(child: impl FnOnce(&Channel), code: i32) -> (Channel, OwnedFd) {
        let (parent_end, child_end) = channel::pair().unwrap();
        // SAFETY: the test is single-threaded between fork and the child's
        // _exit; the child only sends a message.
        match unsafe { syscalls::clone3(0, None) }.unwrap() {
            Forked::Child => {
                child(&child_end);
                // SAFETY: leaving the forked child without unwinding.
                unsafe { libc::_exit(code) }
            }
            Forked::Parent { pidfd, .. } => {
                drop(child_end);
                crate::container::wait_exit(pidfd.as_fd(), None).unwrap();
                (parent_end, pidfd)
            }
        }
    }

    #[test]
    fn a_message_left_in_the_channel_beats_the_send_error() {
        let (channel, pidfd) = dead_child(
            |c| c.send(&ToParent::Failed("mounts[0]: boom".into())).unwrap(),
            1,
        );
        // What the runtime saw: its next message could not be sent.
        assert!(matches!(
            channel.send(&ToChild::HooksDone),
            Err(ChannelError::Send(_))
        ));
        let progress = Progress::new().unwrap();
        let err = why_gone(&channel, Some(&pidfd), true, &progress, "init");
        assert_eq!(err.to_string(), "mounts[0]: boom");
    }

    #[test]
    fn a_silent_exit_is_named_with_its_status_and_step() {
        let progress = Progress::new().unwrap();
        let (channel, pidfd) = dead_child(|_| progress.set(Step::Mounting), 3);
        let err = why_gone(&channel, Some(&pidfd), true, &progress, "init");
        assert_eq!(
            err.to_string(),
            "the container init exited with status 3, without reporting an error, while mounting the rootfs"
        );
    }
}
