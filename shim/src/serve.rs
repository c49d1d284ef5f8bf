//! The shim daemon: serves the Task API on its socket until Shutdown.
//!
//! This replaces the shim crate's own serving loop for one reason: the
//! crate registers the Task service only as `containerd.task.v3.Task`
//! (containerd 2), and containerd 1.6/1.7 call `containerd.task.v2.Task`.
//! The messages are the same, so the one service is registered under both
//! names. The rest is what any shim daemon does: reap children as a
//! subreaper and hand their exits to the monitor, log to containerd's log
//! fifo, publish events, and tell `start` it is up by closing stdout.

use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use containerd_shim::protos::shim::shim_ttrpc::create_task;
use containerd_shim::protos::ttrpc::Server;
use containerd_shim::synchronous::monitor::monitor_notify_by_pid;
use containerd_shim::util::write_address;
use containerd_shim::{Flags, Shim as _};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::events::Publisher;
use crate::lifecycle::Shim;

/// Why the daemon could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Shim(#[from] containerd_shim::Error),
    #[error("ttrpc: {0}")]
    Ttrpc(#[from] containerd_shim::protos::ttrpc::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

pub fn run(runtime_id: &str, flags: &Flags) -> Result<(), ServeError> {
    // One malloc arena for every thread: the shim allocates little, and a
    // per-thread arena would cost each of its threads resident pages.
    // SAFETY: mallopt before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let wakeups = install_signal_handlers()?;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) on ourselves.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } < 0 {
        return Err(io("become a subreaper")(std::io::Error::last_os_error()));
    }
    let mut config = containerd_shim::Config::default();
    let mut shim = Shim::new(runtime_id, flags, &mut config);
    containerd_shim::logger::init(
        flags.debug,
        &config.default_log_level,
        &flags.namespace,
        &flags.id,
    )?;

    let path = flags
        .socket
        .strip_prefix("unix://")
        .unwrap_or(&flags.socket);
    let listener = match bind(path)? {
        Some(l) => l,
        None => {
            // The pod's shim already serves this socket (grouping).
            write_address(&flags.socket)?;
            release_start();
            return Ok(());
        }
    };
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|e| io("TTRPC_ADDRESS")(std::io::Error::other(e)))?;
    let publisher = Publisher::connect(&ttrpc_address, &flags.namespace)?;
    let task: Arc<dyn containerd_shim::Task + Send + Sync> = Arc::new(shim.service(publisher));
    let mut methods = create_task(task.clone());
    let v2: Vec<_> = create_task(task)
        .into_iter()
        .map(|(name, handler)| {
            (
                name.replace("/containerd.task.v3.", "/containerd.task.v2."),
                handler,
            )
        })
        .collect();
    methods.extend(v2);
    // Two idle workers per connection instead of three: containerd keeps
    // one connection, a Wait parks one worker for the task's lifetime, and
    // one more serves everything else (the pool grows when none is idle).
    let mut server = Server::new()
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(3)
        .add_listener(listener.into_raw_fd())?
        .register_service(methods);
    server.start()?;
    release_start();
    std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || reap(wakeups))
        .map_err(io("spawn the reaper"))?;
    shim.wait();
    server.shutdown();
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Binds the socket; None when a live shim already listens on it.
fn bind(path: &str) -> Result<Option<UnixListener>, ServeError> {
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("mkdir {}", dir.display())))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(None);
            }
            // A stale socket of a dead shim.
            let _ = std::fs::remove_file(path);
            UnixListener::bind(path)
                .map(Some)
                .map_err(io(format!("bind {path}")))
        }
        Err(e) => Err(io(format!("bind {path}"))(e)),
    }
}

/// `start` reads our stdout until EOF: point it at stderr (containerd's
/// null) so the start action can print the address and return.
fn release_start() {
    // SAFETY: dup2 between standard fds.
    unsafe { libc::dup2(2, 1) };
}

/// The write end of the SIGCHLD self-pipe.
static CHILD_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = CHILD_PIPE.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; a full pipe already means a
    // wakeup is pending.
    unsafe { libc::write(fd, [0u8].as_ptr().cast(), 1) };
}

extern "C" fn ignore(_: libc::c_int) {}

/// SIGCHLD wakes the reaper through a pipe; SIGTERM and SIGINT are caught
/// and dropped (containerd ends a shim with Shutdown). Handlers, not a
/// blocked mask with sigwait: a blocked mask would be inherited by skiff
/// and through it by the container's processes, while caught signals go
/// back to their defaults at exec.
fn install_signal_handlers() -> Result<std::fs::File, ServeError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io("pipe")(std::io::Error::last_os_error()));
    }
    // SAFETY: both fds are new; the write end lives for the whole process.
    let read_end = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    CHILD_PIPE.store(fds[1], Ordering::Relaxed);
    for (signal, handler) in [
        (libc::SIGCHLD, on_sigchld as extern "C" fn(libc::c_int)),
        (libc::SIGTERM, ignore),
        (libc::SIGINT, ignore),
    ] {
        // SAFETY: a zeroed sigaction with a handler that only calls
        // async-signal-safe functions.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as usize;
            action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc < 0 {
            return Err(io("sigaction")(std::io::Error::last_os_error()));
        }
    }
    Ok(read_end)
}

/// Reaps every child (skiff commands, container inits and execs that were
/// reparented to us) and reports exits to the monitor.
fn reap(wakeups: std::fs::File) {
    let mut buf = [0u8; 64];
    loop {
        let mut fds = [PollFd::new(wakeups.as_fd(), PollFlags::POLLIN)];
        if let Err(e) = nix::poll::poll(&mut fds, PollTimeout::NONE) {
            if e != nix::errno::Errno::EINTR {
                log::error!("reaper: {e}");
                return;
            }
        }
        while (&wakeups).read(&mut buf).is_ok_and(|n| n > 0) {}
        loop {
            let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) | Err(_) => continue,
            };
            if let Err(e) = monitor_notify_by_pid(pid.as_raw(), code) {
                log::warn!("exit of {pid}: {e}");
            }
        }
    }
}
