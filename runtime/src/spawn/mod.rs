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

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::bundle::Bundle;
use crate::cgroups::{self, CgroupError, Manager};
use crate::hooks::{self, HookError};
use crate::namespaces::{self, NamespaceError, Plan};
use crate::rootfs;
use crate::security::capabilities::{self, HostCaps};
use crate::security::lsm::{self, LsmError, Lsms};
use crate::state::{self, OciState};
use crate::syscalls::{self, Forked};
use channel::{ChannelError, ToChild, ToParent};

/// Why a container could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Lsm(#[from] LsmError),
    #[error(transparent)]
    Mount(#[from] rootfs::MountError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Console(#[from] crate::terminal::TerminalError),
    #[error("process.terminal: {0}")]
    Terminal(&'static str),
    #[error("{0}")]
    Seccomp(String),
    #[error("{what}: {source}")]
    Sys { what: &'static str, source: Errno },
    #[error(transparent)]
    Invalid(#[from] crate::validate::Invalid),
    /// The init's own account of what failed.
    #[error("{0}")]
    Init(String),
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
}

/// A created container: its init waits for `start`.
pub struct Spawned {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
    pub start_time: u64,
    pub cgroup: Box<dyn Manager>,
    pub own_pid_ns: bool,
}

/// Creates the container's init. On failure nothing is left: no process,
/// no cgroup (the caller removes the state directory).
pub fn spawn(req: &Request<'_>) -> Result<Spawned, SpawnError> {
    let spec = &req.bundle.spec;
    let process = spec.process().as_ref().ok_or(SpawnError::Sys {
        what: "process",
        source: Errno::EINVAL,
    })?;
    if process.terminal().unwrap_or(false) && req.console.is_none() {
        return Err(SpawnError::Terminal(
            "cannot allocate a tty if skiff will detach without setting --console-socket",
        ));
    }
    // As runc: the caller would wait on that socket for a pty that never
    // comes, and the connection would live on in the init.
    if !process.terminal().unwrap_or(false) && req.console.is_some() {
        return Err(SpawnError::Terminal(
            "cannot use console socket if skiff will not allocate a tty",
        ));
    }
    let plan = Plan::from_spec(spec)?;
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

    let linux = spec.linux().as_ref();
    let filter = match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => {
            let f =
                skiff_seccomp::compile(profile).map_err(|e| SpawnError::Seccomp(e.to_string()))?;
            if !f.unknown.is_empty() {
                crate::warn!(
                    "linux.seccomp: ignoring syscalls unknown to skiff (Linux {} tables): {}",
                    skiff_seccomp::SYSCALLS_KERNEL,
                    f.unknown.join(", ")
                );
            }
            Some(f)
        }
        None => None,
    };
    let mut cgroup =
        cgroups::for_container(linux.and_then(|l| l.cgroups_path().as_deref()), req.id)?;
    cgroup.create()?;
    if let Some(res) = linux.and_then(|l| l.resources().as_ref()) {
        let config_devices = linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default();
        let res = cgroups::devices::with_config_devices(res, config_devices);
        if let Err(e) = cgroup.apply(&res) {
            let _ = cgroup.destroy();
            return Err(e.into());
        }
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

    let mut config = init::Config {
        id: req.id,
        spec,
        bundle_dir: &req.bundle.dir,
        rootfs: &req.bundle.rootfs,
        plan: &plan,
        caps,
        last_cap: host_caps.last_cap,
        cgroup: cgroup.as_ref(),
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
    };
    let mut init = Init {
        pid: 0,
        pidfd: None,
        ours: true,
    };
    let result = clone_and_drive(req, &mut config, cgroup.as_ref(), &plan, &mut init);
    match result {
        Ok(()) => {}
        Err(e) => {
            init.kill();
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

/// The init process as the parent tracks it.
struct Init {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    /// False once the init is a grandchild we cannot wait for directly.
    ours: bool,
}

impl Init {
    /// Kills the init (if any) and waits until it is gone.
    fn kill(&mut self) {
        if let Some(fd) = &self.pidfd {
            let _ = syscalls::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            if self.ours {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
            } else {
                let _ = crate::container::wait_exit(fd.as_fd(), None);
            }
        }
    }
}

/// The state JSON hooks get on stdin.
fn hook_state(req: &Request<'_>, pid: libc::pid_t, status: &str) -> Vec<u8> {
    let empty = std::collections::HashMap::new();
    let annotations = req.bundle.spec.annotations().as_ref().unwrap_or(&empty);
    let created = crate::timestamp::now_nanos();
    let state = OciState {
        version: state::OCI_VERSION,
        id: req.id,
        pid,
        status,
        bundle: &req.bundle.dir,
        rootfs: &req.bundle.rootfs,
        created: &created,
        annotations,
        owner: "",
    };
    serde_json::to_vec(&state).unwrap_or_default()
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
/// must be written before any process enters it). Returns what to restore.
fn enter_parent_namespaces(
    plan: &Plan,
    spec: &Spec,
) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>, SpawnError> {
    let mut restore = Vec::new();
    for typ in [LinuxNamespaceType::Pid, LinuxNamespaceType::Time] {
        if let Some(joined) = plan.joined(typ) {
            restore.push((typ, namespaces::current(typ)?));
            namespaces::join(joined)?;
        }
    }
    if plan.is_new(LinuxNamespaceType::Time) {
        restore.push((
            LinuxNamespaceType::Time,
            namespaces::current(LinuxNamespaceType::Time)?,
        ));
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
    plan: &Plan,
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
    // What the init cannot do itself: id maps, and (in a user namespace,
    // where the host's cgroup files are not its own) cgroup placement.
    let setup = || -> Result<(), SpawnError> {
        if plan.is_new(LinuxNamespaceType::User) {
            let uid = linux
                .and_then(|l| l.uid_mappings().as_deref())
                .unwrap_or_default();
            let gid = linux
                .and_then(|l| l.gid_mappings().as_deref())
                .unwrap_or_default();
            namespaces::write_id_maps(pid, uid, gid)?;
        }
        if plan.has(LinuxNamespaceType::User) {
            cgroup.add(pid, cloned)?;
        }
        parent_end.send(&ToChild::Proceed { pid })?;
        Ok(())
    };
    if single {
        // The init's namespaces exist as soon as clone3 returns: no need to
        // wait for it to say so.
        setup()?;
    }
    let spec_hooks = config.spec.hooks().as_ref();
    loop {
        let (msg, fd) = parent_end.recv_with_fd::<ToParent>()?;
        if let (ToParent::SeccompListener, Some(fd)) = (&msg, fd) {
            let state = hook_state(req, init.pid, "creating");
            hand_listener_to_agent(config.spec, init.pid, &state, fd)?;
            continue;
        }
        match msg {
            ToParent::Ready => setup()?,
            ToParent::InitPid(grandchild) => {
                // The intermediate child exits right after reporting.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(init.pid), None);
                init.pid = grandchild;
                init.ours = false;
                init.pidfd = Some(syscalls::pidfd_open(grandchild).map_err(sys("pidfd_open"))?);
                parent_end.send(&ToChild::Proceed { pid: grandchild })?;
            }
            ToParent::RunHooks => {
                let state = hook_state(req, init.pid, "creating");
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
}
