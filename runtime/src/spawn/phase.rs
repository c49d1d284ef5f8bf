//! The process's own setup, shared by the container init and `exec`: once
//! namespaces, cgroup and filesystem are in place, everything about the
//! process itself (OOM score, rlimits, scheduling, LSM label, working
//! directory, environment, seccomp, capabilities, user, no_new_privs) up
//! to a prepared execve.

use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::SigSet;
use oci_spec::runtime::{LinuxMemoryPolicy, LinuxPersonality, Process};

use super::channel::{Channel, ChannelError, ToParent};
use crate::process::attributes::{self, AttributeError};
use crate::process::exec::{self, ExecError, Handover, Prepared};
use crate::process::rlimits::{self, RlimitError};
use crate::procfs::{PrivateProc, ProcError};
use crate::rootfs;
use crate::security::capabilities::{self, CapMasks};
use crate::security::lsm::{self, LsmError};
use crate::security::{identity, set_no_new_privs};

/// A failure in the process phase.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Rlimit(#[from] RlimitError),
    #[error(transparent)]
    Attribute(#[from] AttributeError),
    #[error(transparent)]
    Lsm(#[from] LsmError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("linux.seccomp: {0}")]
    Seccomp(String),
    #[error("{what}: {source}")]
    Sys { what: String, source: Errno },
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Sys { what, source }
}

/// What the phase applies, prepared by the runtime before fork.
pub struct Phase<'a> {
    pub process: &'a Process,
    pub personality: Option<&'a LinuxPersonality>,
    /// `linux.memoryPolicy`: the container's processes, execs included,
    /// allocate under it.
    pub memory_policy: Option<&'a LinuxMemoryPolicy>,
    pub caps: CapMasks,
    pub last_cap: u32,
    pub seccomp: Option<&'a skiff_seccomp::Filter>,
    /// Join a new session keyring named after this container id.
    pub keyring: Option<&'a str>,
    pub preserve_fds: u32,
    pub sigmask: Option<&'a SigSet>,
}

/// Until execve, /proc/<pid>/exe is skiff itself: keep it unreachable for
/// anything in the container (CVE-2019-5736).
pub fn set_undumpable() -> nix::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// True when the phase writes to procfs (so the caller opens a private one).
pub fn needs_proc(process: &Process) -> bool {
    let set = |v: Option<&String>| v.is_some_and(|s| !s.is_empty());
    process.oom_score_adj().is_some()
        || set(process.apparmor_profile().as_ref())
        || set(process.selinux_label().as_ref())
}

/// Changes into `process.cwd`, creating it if needed, resolved inside the
/// root without magic links, and checks the result is inside the root
/// (CVE-2024-21626: a leaked fd must never become the working directory).
fn enter_cwd(cwd: &Path) -> Result<(), ProcessError> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("opening /"))?;
    let dir = rootfs::resolve::mkdir_all(root.as_fd(), cwd)
        .map_err(sys(format!("process.cwd {}", cwd.display())))?;
    nix::unistd::fchdir(dir.as_fd()).map_err(sys(format!("process.cwd {}", cwd.display())))?;
    let now =
        nix::unistd::getcwd().map_err(sys(format!("process.cwd {}: getcwd", cwd.display())))?;
    if !now.is_absolute() {
        return Err(sys(format!(
            "process.cwd {}: outside the container",
            cwd.display()
        ))(Errno::EPERM));
    }
    Ok(())
}

/// Installs a filter with a user-notification listener now and hands the
/// listener to the runtime, which passes it to the agent while `create`
/// still runs. Such a profile therefore also applies to the runtime's last
/// steps (reporting, waiting for `start`, startContainer hooks), as in
/// runc; every other filter goes on right before execve.
fn install_with_listener(
    filter: &skiff_seccomp::Filter,
    channel: &Channel,
) -> Result<(), ProcessError> {
    let listener =
        skiff_seccomp::install(filter).map_err(|e| ProcessError::Seccomp(e.to_string()))?;
    if let Some(fd) = listener {
        channel.send_with_fd(&ToParent::SeccompListener, fd.as_fd())?;
    }
    Ok(())
}

/// Runs the phase. `proc` is dropped before the process changes identity.
pub fn prepare<'a>(
    phase: &Phase<'a>,
    proc: Option<PrivateProc>,
    channel: &Channel,
) -> Result<Prepared<'a>, ProcessError> {
    let process = phase.process;
    if let (Some(score), Some(proc)) = (process.oom_score_adj(), proc.as_ref()) {
        // The private procfs is of our own pid namespace, so getpid() names
        // us there (and `self` is a symlink the verified open refuses).
        let path = format!("{}/oom_score_adj", nix::unistd::getpid());
        proc.write(&path, score.to_string().as_bytes())?;
    }
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default())?;
    if let Some(id) = phase.keyring {
        attributes::join_session_keyring(id)?;
    }
    if let Some(p) = phase.personality {
        attributes::set_personality(p)?;
    }
    if let Some(policy) = phase.memory_policy {
        attributes::set_memory_policy(policy)?;
    }
    if let Some(prio) = process.io_priority() {
        attributes::set_io_priority(prio.class(), prio.priority())?;
    }
    if let Some(sched) = process.scheduler() {
        attributes::set_scheduler(sched)?;
    }
    if let Some(affinity) = process.exec_cpu_affinity() {
        let list = affinity
            .cpu_affinity_final()
            .as_deref()
            .or(affinity.initial().as_deref());
        if let Some(list) = list.filter(|l| !l.is_empty()) {
            attributes::set_cpu_affinity(list)?;
        }
    }
    if let Some(proc) = proc.as_ref() {
        lsm::apply_on_exec(
            proc,
            process.apparmor_profile().as_deref(),
            process.selinux_label().as_deref(),
        )?;
    }
    drop(proc);
    enter_cwd(process.cwd())?;
    let mut env = process.env().clone().unwrap_or_default();
    identity::ensure_home(&mut env, process.user().uid());

    let nnp = process.no_new_privileges().unwrap_or(false);
    capabilities::apply_bounding(phase.caps.bounding, phase.last_cap)
        .map_err(sys("process.capabilities.bounding"))?;
    identity::switch_user(process.user()).map_err(|(what, e)| sys(what)(e))?;
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, and
    // it goes on last: keep CAP_SYS_ADMIN effective until then. The
    // execve that follows computes the process's sets from bounding,
    // inheritable and ambient only, so the program never has it.
    let caps = match phase.seccomp {
        Some(_) if !nnp => phase
            .caps
            .keeping(caps::Capability::CAP_SYS_ADMIN.index().into()),
        _ => phase.caps,
    };
    capabilities::apply_sets(&caps).map_err(sys("process.capabilities"))?;
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    if nnp {
        set_no_new_privs().map_err(sys("process.noNewPrivileges"))?;
    }
    let args = process.args().as_deref().unwrap_or_default();
    let program = exec::find_program(&args[0], &env)?;
    let handover = Handover {
        preserve_fds: phase.preserve_fds,
        sigmask: phase.sigmask,
    };
    let with_listener = phase.seccomp.filter(|f| f.has_listener());
    let at_exec = phase.seccomp.filter(|f| !f.has_listener());
    let ready = exec::prepare(&program, args, &env, &handover, at_exec)?;
    if let Some(filter) = with_listener {
        install_with_listener(filter, channel)?;
    }
    Ok(ready)
}
