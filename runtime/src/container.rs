//! Operations on a container that exists: create (state directory, init,
//! state file, pid file, with full rollback), start, kill, delete, and the
//! OCI state. Commands are thin wrappers over these.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::bundle::Bundle;
use crate::cgroups::{self, CgroupError, Manager};
use crate::hooks;
use crate::resctrl;
use crate::rootfs;
use crate::spawn::{self, SpawnError};
use crate::state::{self, OciState, Root, StateError, Status, Stored};
use crate::syscalls;

/// Why an operation on a container failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Rdt(#[from] resctrl::RdtError),
    /// A poststart hook failed: the container has been stopped and removed.
    #[error("{0}; the container was stopped and removed")]
    Poststart(hooks::HookError),
    #[error("cannot start a container that is {0}")]
    NotStartable(Status),
    #[error("container not running")]
    NotRunning,
    #[error("cannot pause a container that is {0}")]
    NotPausable(Status),
    #[error("container not paused")]
    NotPaused,
    #[error("cannot exec in a stopped container")]
    ExecStopped,
    #[error("cannot exec in a paused container (use --ignore-paused to override)")]
    ExecPaused,
    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped { id: String, status: Status },
    #[error("{0}: the container has no cgroup of its own (it was created rootless, and no cgroup is delegated to this user)")]
    NoCgroup(&'static str),
    #[error("{what}: {source}")]
    Sys { what: String, source: Errno },
    #[error("--pidfd-socket: sending the pidfd of the {process}: {source}")]
    PidfdSocket {
        process: &'static str,
        source: Errno,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Sys { what, source }
}

/// Options of `create` and `run`.
pub struct CreateOptions<'a> {
    pub pid_file: Option<&'a Path>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub sigmask: Option<nix::sys::signal::SigSet>,
    /// The socket the init sends its pty master to (`process.terminal`).
    pub console: Option<OwnedFd>,
    /// `--pidfd-socket`: receives a pidfd of the init once it exists.
    pub pidfd_socket: Option<OwnedFd>,
    /// `--rootless`: a cgroup the user may not create means no cgroup
    /// (unless limits were asked for), and device rules are not applied.
    pub rootless: bool,
    /// `--systemd-cgroup`: systemd manages the container's cgroup.
    pub systemd_cgroup: bool,
}

/// Options of `exec`.
pub struct ExecOptions<'a> {
    pub console: Option<BorrowedFd<'a>>,
    /// `--pidfd-socket`: receives a pidfd of the new process.
    pub pidfd_socket: Option<BorrowedFd<'a>>,
    pub preserve_fds: u32,
    pub sigmask: Option<nix::sys::signal::SigSet>,
    pub ignore_paused: bool,
    /// `--cgroup`: sub-cgroups of the container's to start in.
    pub sub_cgroups: &'a [String],
}

/// A container with a state file.
#[derive(Debug)]
pub struct Container {
    pub dir: PathBuf,
    pub stored: Stored,
}

/// Waits until `fd` polls ready for `events` (errors and hang-ups always
/// count); false on timeout.
fn wait_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> Result<bool, Errno> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now()).as_millis();
                PollTimeout::try_from(left.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(fd, events)];
        match nix::poll::poll(&mut fds, ms) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Waits until the process behind `pidfd` has exited; false on timeout.
pub fn wait_exit(pidfd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool, Errno> {
    wait_ready(pidfd, PollFlags::POLLIN, timeout)
}

/// Sends a duplicate of `pidfd` to the `--pidfd-socket` connection, if
/// any, with `name` as the data: runc's names, "standard" for an init and
/// "setns" for an exec'd process, so a manager written for runc reads it.
fn send_pidfd(
    socket: Option<&impl AsFd>,
    pidfd: &OwnedFd,
    name: &str,
    process: &'static str,
) -> Result<(), ContainerError> {
    let Some(socket) = socket else {
        return Ok(());
    };
    crate::fdpass::send(socket.as_fd(), name.as_bytes(), Some(pidfd.as_fd()))
        .map_err(|source| ContainerError::PidfdSocket { process, source })
}

/// How long `start` waits for the released init to execute the container's
/// process: bounded, as every wait on the init is (a cgroup frozen after
/// the status check would hold it), and generous for loaded hosts.
const EXECVE_PATIENCE: Duration = Duration::from_secs(10);

/// Waits until the init has executed the container's process: it holds
/// the exec fifo's read end (close-on-exec) until its execve, or until it
/// dies, and a fifo with no reader left reports POLLERR to its writer.
/// False when it has not within `EXECVE_PATIENCE`.
fn wait_for_execve(fifo: BorrowedFd<'_>) -> Result<bool, ContainerError> {
    wait_ready(fifo, PollFlags::empty(), Some(EXECVE_PATIENCE))
        .map_err(sys("waiting for the container's process"))
}

impl Container {
    /// Creates a container from a bundle: claims the id, spawns the init,
    /// writes state and pid file. On any failure everything is undone.
    pub fn create(
        root: &Root,
        id: &str,
        bundle: &Bundle,
        opts: &CreateOptions<'_>,
    ) -> Result<(Container, OwnedFd), ContainerError> {
        let dir = root.claim(id)?;
        match Self::create_in(&dir, id, bundle, opts) {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn create_in(
        dir: &Path,
        id: &str,
        bundle: &Bundle,
        opts: &CreateOptions<'_>,
    ) -> Result<(Container, OwnedFd), ContainerError> {
        rootfs::check_no_pivot(&bundle.spec, opts.no_pivot).map_err(SpawnError::from)?;
        let created = crate::timestamp::now_nanos();
        let request = spawn::Request {
            id,
            bundle,
            dir,
            created: &created,
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
            preserve_fds: opts.preserve_fds,
            sigmask: opts.sigmask,
            console: opts.console.as_ref().map(AsFd::as_fd),
            rootless: opts.rootless,
        };
        let linux = bundle.spec.linux().as_ref();
        let cgroup = Self::plan_cgroup(bundle, id, opts.systemd_cgroup, opts.rootless)?;
        // Checked before anything exists: a bad value, or no resctrl here.
        let rdt = match linux.and_then(|l| l.intel_rdt().as_ref()) {
            Some(rdt) => {
                let plan = resctrl::plan(rdt, id).map_err(resctrl::RdtError::from)?;
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                let root = resctrl::mount_point(&mountinfo).ok_or(resctrl::RdtError::NotMounted)?;
                Some((root, plan))
            }
            None => None,
        };
        // Written before anything exists outside this directory: if skiff
        // is killed from here on, `delete` finds the cgroup (and the init
        // in it) to remove. A pid of 0 reads as stopped.
        let mut stored =
            Self::initial_record(id, bundle, &created, cgroup.as_ref(), opts.no_new_keyring);
        state::save(dir, &stored)?;
        let spawned = spawn::spawn(&request, cgroup)?;
        if let Some((root, plan)) = &rdt {
            match resctrl::apply(root, plan, id, spawned.pid) {
                Ok(record) => stored.rdt = Some(record),
                Err(e) => {
                    let _ = syscalls::pidfd_send_signal(spawned.pidfd.as_fd(), libc::SIGKILL);
                    let _ = wait_exit(spawned.pidfd.as_fd(), Some(Duration::from_secs(5)));
                    let _ = spawned.cgroup.destroy();
                    return Err(e.into());
                }
            }
        }
        stored.pid = spawned.pid;
        stored.start_time = spawned.start_time;
        stored.cgroup = spawned.cgroup.record().clone();
        stored.own_pid_ns = spawned.own_pid_ns;
        let container = Container {
            dir: dir.to_path_buf(),
            stored,
        };
        let written = state::save_config(dir, &bundle.config)
            .and_then(|()| state::save(dir, &container.stored))
            .and_then(|()| match opts.pid_file {
                Some(p) => state::write_pid_file(p, spawned.pid),
                None => Ok(()),
            })
            .map_err(ContainerError::from)
            .and_then(|()| {
                send_pidfd(
                    opts.pidfd_socket.as_ref(),
                    &spawned.pidfd,
                    "standard",
                    "init",
                )
            });
        if let Err(e) = written {
            let _ = syscalls::pidfd_send_signal(spawned.pidfd.as_fd(), libc::SIGKILL);
            let _ = wait_exit(spawned.pidfd.as_fd(), Some(Duration::from_secs(5)));
            let _ = spawned.cgroup.destroy();
            if let Some(record) = &container.stored.rdt {
                let _ = record.remove();
            }
            return Err(e);
        }
        Ok((container, spawned.pidfd))
    }

    /// The state of a container whose init does not exist yet: its
    /// cgroup as it will be once created, the hooks later commands run.
    pub fn initial_record(
        id: &str,
        bundle: &Bundle,
        created: &str,
        cgroup: &dyn Manager,
        no_new_keyring: bool,
    ) -> Stored {
        let kept_hooks = bundle.spec.hooks().as_ref().map(|h| {
            let mut kept = oci_spec::runtime::Hooks::default();
            kept.set_poststart(h.poststart().clone());
            kept.set_poststop(h.poststop().clone());
            kept
        });
        Stored {
            id: id.to_string(),
            pid: 0,
            start_time: 0,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: created.to_string(),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            cgroup: cgroups::to_be_created(cgroup.record()),
            own_pid_ns: false,
            hooks: kept_hooks,
            rdt: None,
            no_new_keyring,
        }
    }

    /// Plans the container's cgroup with the driver the global flags chose
    /// (`--systemd-cgroup`, `--rootless`); nothing is created yet.
    pub fn plan_cgroup(
        bundle: &Bundle,
        id: &str,
        systemd: bool,
        rootless: bool,
    ) -> Result<Box<dyn Manager>, CgroupError> {
        let no_annotations = std::collections::HashMap::new();
        let driver = if systemd {
            cgroups::Driver::Systemd {
                annotations: bundle
                    .spec
                    .annotations()
                    .as_ref()
                    .unwrap_or(&no_annotations),
            }
        } else {
            cgroups::Driver::Cgroupfs
        };
        let path = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_deref());
        cgroups::for_container(path, id, driver, rootless)
    }

    /// Loads container `id`.
    pub fn load(root: &Root, id: &str) -> Result<Container, ContainerError> {
        state::validate_id(id)?;
        let dir = root.dir(id);
        let stored = state::load(&dir)?;
        Ok(Container { dir, stored })
    }

    /// The derived status.
    pub fn status(&self) -> Status {
        state::status(&self.dir, &self.stored)
    }

    /// The OCI state JSON.
    pub fn state_json(&self, status: Status, owner: &str, pretty: bool) -> String {
        let pid = if status == Status::Stopped {
            0
        } else {
            self.stored.pid
        };
        let state = OciState {
            owner,
            systemd_scope: self.stored.cgroup.unit.as_deref(),
            ..OciState::new(
                &self.stored.id,
                pid,
                status.as_str(),
                (&self.stored.bundle, &self.stored.rootfs),
                &self.stored.created,
                &self.stored.annotations,
            )
        };
        let json = if pretty {
            serde_json::to_string_pretty(&state)
        } else {
            serde_json::to_string(&state)
        };
        json.unwrap_or_default()
    }

    fn hook_state(&self, status: Status) -> Vec<u8> {
        self.state_json(status, "", false).into_bytes()
    }

    /// Starts `process` in the container (`exec`). Checks the status as
    /// runc does: never in a stopped container, in a paused one only when
    /// asked to.
    pub fn exec(
        &self,
        process: &oci_spec::runtime::Process,
        opts: &ExecOptions<'_>,
    ) -> Result<spawn::exec::Execd, ContainerError> {
        match self.status() {
            Status::Stopped => return Err(ContainerError::ExecStopped),
            Status::Paused if !opts.ignore_paused => return Err(ContainerError::ExecPaused),
            _ => {}
        }
        let spec = state::load_spec(&self.dir)?;
        let pidfd = self.init_pidfd().ok_or(ContainerError::NotRunning)?;
        let state = self.state_json(self.status(), "", false);
        let req = spawn::exec::ExecRequest {
            spec: &spec,
            process,
            init_pid: self.stored.pid,
            init_pidfd: pidfd.as_fd(),
            state: state.as_bytes(),
            console: opts.console,
            preserve_fds: opts.preserve_fds,
            sigmask: opts.sigmask,
            frozen_ok: opts.ignore_paused,
            keyring: (!self.stored.no_new_keyring).then_some(self.stored.id.as_str()),
        };
        let record = if opts.sub_cgroups.is_empty() {
            self.stored.cgroup.clone()
        } else {
            cgroups::sub_cgroup(&self.stored.cgroup, opts.sub_cgroups)?
        };
        let execd = spawn::exec::exec(&req, cgroups::from_record(record).as_mut())?;
        let placed = match &self.stored.rdt {
            Some(rdt) => rdt.add(execd.pid).map_err(ContainerError::from),
            None => Ok(()),
        };
        if let Err(e) = placed
            .and_then(|()| send_pidfd(opts.pidfd_socket.as_ref(), &execd.pidfd, "setns", "process"))
        {
            let _ = syscalls::pidfd_send_signal(execd.pidfd.as_fd(), libc::SIGKILL);
            return Err(e);
        }
        Ok(execd)
    }

    /// A pidfd for the init, if it is still the process we started.
    fn init_pidfd(&self) -> Option<OwnedFd> {
        let fd = syscalls::pidfd_open(self.stored.pid).ok()?;
        // Checked after opening: the fd pins the process, so a pid recycled
        // between the two checks is caught.
        crate::procfs::is_alive(self.stored.pid, self.stored.start_time).then_some(fd)
    }

    /// Releases the init waiting in `created`, then runs poststart hooks
    /// once the container's process has started. A failing poststart hook
    /// fails `start` and the container is stopped and destroyed, poststop
    /// hooks included (runtime-spec 1.3, lifecycle steps 9 and 12-13).
    pub fn start(&self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Created {
            return Err(ContainerError::NotStartable(status));
        }
        let fifo = state::fifo_path(&self.dir);
        let fd = nix::fcntl::open(
            &fifo,
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        );
        let fd = match fd {
            Ok(fd) => fd,
            // No reader: the init is gone.
            Err(Errno::ENXIO) | Err(Errno::ENOENT) => return Err(ContainerError::NotRunning),
            Err(e) => return Err(sys(format!("opening {}", fifo.display()))(e)),
        };
        nix::unistd::write(&fd, b"0").map_err(sys("signalling the init"))?;
        std::fs::remove_file(&fifo).map_err(|e| {
            sys(format!("removing {}", fifo.display()))(Errno::from_raw(
                e.raw_os_error().unwrap_or(libc::EIO),
            ))
        })?;
        // runtime-spec, runtime.md "start" and "state": once `start` has
        // completed the status is `running`, which means the process has
        // executed the user's program. Returning as soon as the init is
        // released (as runc and crun do) leaves a window in which the
        // init is still the runtime's, and a signal sent then to a PID 1
        // with no handler yet is lost.
        if !wait_for_execve(fd.as_fd())? {
            crate::warn!(
                "container {}: its process has not executed the user's program after {} s; start returns without waiting longer",
                self.stored.id,
                EXECVE_PATIENCE.as_secs()
            );
        }
        let ran = hooks::run(
            self.stored.hooks.as_ref(),
            hooks::Kind::Poststart,
            &self.hook_state(Status::Running),
        );
        if let Err(e) = ran {
            if let Err(d) = self.delete(true) {
                crate::warn!("removing container {}: {d}", self.stored.id);
            }
            return Err(ContainerError::Poststart(e));
        }
        Ok(())
    }

    /// The container's cgroup backend.
    pub fn cgroup(&self) -> Box<dyn Manager> {
        cgroups::from_record(self.stored.cgroup.clone())
    }

    /// The container's cgroup backend, for an operation (`what`) that
    /// needs a cgroup: a container created rootless may have none.
    pub fn own_cgroup(&self, what: &'static str) -> Result<Box<dyn Manager>, ContainerError> {
        if self.stored.cgroup.dirs.is_empty() {
            return Err(ContainerError::NoCgroup(what));
        }
        Ok(self.cgroup())
    }

    /// Sends `signal` to the init, or with `all` to every process in the
    /// container's cgroup (with no process escaping by forking meanwhile).
    pub fn kill(&self, signal: libc::c_int, all: bool) -> Result<(), ContainerError> {
        let status = self.status();
        // Without a cgroup the init is all there is to signal (and in its
        // own pid namespace, SIGKILL to it ends every process there).
        if all && !self.stored.cgroup.dirs.is_empty() {
            let cgroup = self.cgroup();
            // A stopped init may have left processes behind (no pid
            // namespace); runc signals those too, and succeeds when none.
            if status == Status::Stopped && cgroup.procs().map_or(true, |p| p.is_empty()) {
                return Ok(());
            }
            return Ok(cgroup.signal_all(signal)?);
        }
        if status == Status::Stopped {
            return if all {
                Ok(())
            } else {
                Err(ContainerError::NotRunning)
            };
        }
        let fd = self.init_pidfd().ok_or(ContainerError::NotRunning)?;
        syscalls::pidfd_send_signal(fd.as_fd(), signal).map_err(sys("unable to signal init"))
    }

    /// Freezes every process of a created or running container.
    pub fn pause(&self) -> Result<(), ContainerError> {
        match self.status() {
            Status::Created | Status::Running => Ok(self.own_cgroup("pause")?.freeze(true)?),
            other => Err(ContainerError::NotPausable(other)),
        }
    }

    /// Thaws a paused container.
    pub fn resume(&self) -> Result<(), ContainerError> {
        if self.status() != Status::Paused {
            return Err(ContainerError::NotPaused);
        }
        Ok(self.own_cgroup("resume")?.freeze(false)?)
    }

    /// Kills whatever is left and waits until it is gone.
    fn kill_all_and_wait(&self) -> Result<(), ContainerError> {
        let cgroup = self.cgroup();
        let init = self.init_pidfd();
        if let Some(fd) = &init {
            let _ = syscalls::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
        // A frozen process acts on SIGKILL only once thawed.
        if cgroup.frozen() {
            cgroup.freeze(false)?;
        }
        if let Some(fd) = &init {
            wait_exit(fd.as_fd(), Some(Duration::from_secs(10)))
                .map_err(sys("waiting for the init"))?;
        }
        if self.stored.own_pid_ns {
            return Ok(());
        }
        // Without a pid namespace, children of the init survive it (and a
        // create killed before it recorded the init left the init unnamed,
        // with `own_pid_ns` still false).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = cgroup.procs().unwrap_or_default();
            if pids.is_empty() || Instant::now() > deadline {
                return Ok(());
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Deletes the container. A `created` container is deleted without
    /// `--force` (runc does, and containerd depends on it); a running one
    /// needs it.
    pub fn delete(&self, force: bool) -> Result<(), ContainerError> {
        let status = self.status();
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(ContainerError::NotStopped {
                id: self.stored.id.clone(),
                status,
            });
        }
        self.kill_all_and_wait()?;
        self.cgroup().destroy()?;
        if let Some(rdt) = &self.stored.rdt {
            rdt.remove()?;
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| {
            sys(format!("removing {}", self.dir.display()))(Errno::from_raw(
                e.raw_os_error().unwrap_or(libc::EIO),
            ))
        })?;
        hooks::run_warn(
            self.stored.hooks.as_ref(),
            hooks::Kind::Poststop,
            &self.hook_state(Status::Stopped),
        );
        Ok(())
    }
}
