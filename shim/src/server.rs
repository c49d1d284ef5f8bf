//! The shim daemon: one thread serves the Task API on the shim's socket
//! until Shutdown.
//!
//! One thread, because a shim mostly waits: a poll over the listening
//! socket, containerd's connections, a SIGCHLD self-pipe, each task's OOM
//! fd and the terminal relays' fds wakes it to answer a request, reap
//! children (skiff commands, container inits and execs reparented to this
//! subreaper), report an OOM kill or copy terminal input and output. A Wait for a running process is parked and answered when the
//! exit is reaped, on the request's stream. Handlers that run skiff wait
//! for that one child themselves; the other children stay zombies until
//! the loop reaps them, so no exit is lost or taken twice.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::events::Publisher;
use crate::flags::Flags;
use crate::proto::Message;
use crate::service::{Outcome, Service};
use crate::ttrpc::{self, socket_path, Code, Reply, Request, TYPE_REQUEST, TYPE_RESPONSE};

/// containerd 1.6 and 1.7 call the Task service as v2, containerd 2 as
/// v3; the messages are the same.
const SERVICES: [&str; 2] = ["containerd.task.v2.Task", "containerd.task.v3.Task"];
/// Bounds a read of a frame that announced more than it sent, and a
/// reply to a client that does not read.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the listener rests after accept failed (out of fds).
const ACCEPT_PAUSE: Duration = Duration::from_millis(500);

/// Why the daemon could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("TTRPC_ADDRESS is not set (containerd sets it for its shims)")]
    NoTtrpcAddress,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// A client connection (containerd keeps one; tools may add more).
struct Conn {
    token: u64,
    stream: UnixStream,
}

/// A Wait parked until its process exits.
struct Waiter {
    conn: u64,
    stream_id: u32,
    id: String,
    exec_id: String,
}

struct Daemon {
    listener: UnixListener,
    wakeups: std::fs::File,
    conns: Vec<Conn>,
    next_token: u64,
    waiters: Vec<Waiter>,
    service: Service,
    accept_paused_until: Option<Instant>,
}

/// The daemon's process name, which tells it from the short-lived
/// `start` and `delete` runs of the same binary in `ps` and in profiles.
const DAEMON_NAME: &std::ffi::CStr = c"skiff-shimd";

pub fn run(flags: &Flags) -> Result<(), ServeError> {
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, DAEMON_NAME.as_ptr()) };
    let wakeups = install_signal_handlers()?;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) on ourselves.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } < 0 {
        return Err(io("become a subreaper")(std::io::Error::last_os_error()));
    }
    crate::logger::init(flags.debug);
    let path = socket_path(&flags.socket);
    let Some(listener) = bind(path)? else {
        // Another daemon of the pod won the race for the socket.
        release_start();
        return Ok(());
    };
    // Tells `start` that this daemon is the one serving (see release_start).
    let _ = std::io::Write::write_all(&mut std::io::stdout(), SERVING);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").map_err(|_| ServeError::NoTtrpcAddress)?;
    let mut daemon = Daemon {
        listener,
        wakeups,
        conns: Vec::new(),
        next_token: 0,
        waiters: Vec::new(),
        accept_paused_until: None,
        service: Service::new(
            flags.namespace.clone(),
            Publisher::new(&ttrpc_address, &flags.namespace),
        ),
    };
    release_start();
    daemon.serve();
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

/// What the daemon writes to `start` once it serves the socket.
pub const SERVING: &[u8] = b"serving\n";

/// `start` reads our stdout until EOF: point it at stderr (null) so the
/// start action can print the address and return.
fn release_start() {
    // SAFETY: dup2 between standard fds.
    unsafe { libc::dup2(2, 1) };
}

/// What woke the loop.
enum Ready {
    Listener,
    Children,
    Conn(u64),
    Oom(String),
    Relay,
}

impl Daemon {
    fn serve(&mut self) {
        while !self.service.shutdown_requested() {
            let mut relay = false;
            for ready in self.poll() {
                match ready {
                    Ready::Listener => self.accept(),
                    Ready::Children => self.reap(),
                    Ready::Conn(token) => self.read_request(token),
                    Ready::Oom(id) => self.service.oom_signalled(&id),
                    Ready::Relay => relay = true,
                }
            }
            // After the reaping: an exit's last output is pumped before
            // its relay is checked for the end.
            if relay {
                self.service.pump_relays();
            }
            self.service.flush_events();
            self.answer_waiters();
        }
    }

    /// Blocks until something is ready (or a retry of events is due).
    fn poll(&self) -> Vec<Ready> {
        let paused = self
            .accept_paused_until
            .map(|t| t.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero());
        let mut what = vec![Ready::Children];
        let mut fds = vec![(self.wakeups.as_raw_fd(), libc::POLLIN)];
        if paused.is_none() {
            what.push(Ready::Listener);
            fds.push((self.listener.as_raw_fd(), libc::POLLIN));
        }
        for c in &self.conns {
            what.push(Ready::Conn(c.token));
            fds.push((c.stream.as_raw_fd(), libc::POLLIN));
        }
        for (id, fd) in self.service.oom_fds() {
            what.push(Ready::Oom(id));
            fds.push((fd, libc::POLLIN));
        }
        for poll in self.service.relay_polls() {
            what.push(Ready::Relay);
            fds.push(poll);
        }
        let mut pollfds: Vec<libc::pollfd> = fds
            .iter()
            .map(|&(fd, events)| libc::pollfd {
                fd,
                events,
                revents: 0,
            })
            .collect();
        // Until something is ready, queued events are due again, or the
        // listener's pause is over.
        let timeout = [self.service.events_retry_in(), paused]
            .into_iter()
            .flatten()
            .min()
            .map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: poll(2) over a vector of pollfds we own.
        let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
        if n <= 0 {
            return Vec::new();
        }
        what.into_iter()
            .zip(pollfds)
            .filter(|(_, p)| p.revents != 0)
            .map(|(w, _)| w)
            .collect()
    }

    fn accept(&mut self) {
        match self.listener.accept() {
            Ok((stream, _)) => {
                // A client that stops reading must not hold the loop.
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                self.next_token += 1;
                self.conns.push(Conn {
                    token: self.next_token,
                    stream,
                });
            }
            Err(e) => {
                // Out of fds: the connection stays queued and the listener
                // stays readable. Stop polling it for a while rather than
                // spin.
                log::warn!("accept: {e}; not accepting for {ACCEPT_PAUSE:?}");
                self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
            }
        }
    }

    fn close(&mut self, token: u64) {
        self.conns.retain(|c| c.token != token);
        self.waiters.retain(|w| w.conn != token);
    }

    fn read_request(&mut self, token: u64) {
        let Some(conn) = self.conns.iter_mut().find(|c| c.token == token) else {
            return;
        };
        let frame = match ttrpc::read_frame(&mut conn.stream) {
            Ok(Some(f)) => f,
            Ok(None) => return self.close(token),
            Err(e) => {
                log::warn!("connection dropped: {e}");
                return self.close(token);
            }
        };
        if frame.kind != TYPE_REQUEST {
            return;
        }
        let outcome = match Request::decode(&frame.payload) {
            Ok(req) if SERVICES.contains(&req.service.as_str()) => {
                log::debug!("{} {}", req.method, req.service);
                self.service.handle(&req.method, &req.payload)
            }
            Ok(req) => Outcome::Reply(Err((
                Code::Unimplemented,
                format!("service {} is not served here", req.service),
            ))),
            Err(e) => Outcome::Reply(Err((Code::InvalidArgument, format!("bad request: {e}")))),
        };
        match outcome {
            Outcome::Reply(reply) => self.respond(token, frame.stream, reply),
            Outcome::Wait { id, exec_id } => self.waiters.push(Waiter {
                conn: token,
                stream_id: frame.stream,
                id,
                exec_id,
            }),
        }
    }

    fn respond(&mut self, token: u64, stream_id: u32, reply: Reply) {
        let Some(conn) = self.conns.iter_mut().find(|c| c.token == token) else {
            return;
        };
        let payload = ttrpc::response(reply);
        if let Err(e) = ttrpc::write_frame(&mut conn.stream, stream_id, TYPE_RESPONSE, &payload) {
            log::warn!("reply dropped: {e}");
            self.close(token);
        }
    }

    /// Answers every parked Wait whose process has exited or is gone. The
    /// answers are gathered first: a failed reply closes its connection,
    /// which drops that connection's waiters from the list.
    fn answer_waiters(&mut self) {
        let mut ready = Vec::new();
        let mut parked = Vec::new();
        for w in std::mem::take(&mut self.waiters) {
            match self.service.wait_result(&w.id, &w.exec_id) {
                Some(reply) => ready.push((w, reply)),
                None => parked.push(w),
            }
        }
        self.waiters = parked;
        for (w, reply) in ready {
            self.respond(w.conn, w.stream_id, reply);
        }
    }

    /// Reaps every exited child and records the exits.
    fn reap(&mut self) {
        let mut buf = [0u8; 64];
        while (&self.wakeups).read(&mut buf).is_ok_and(|n| n > 0) {}
        loop {
            let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) | Err(_) => continue,
            };
            self.service.reaped(pid.as_raw(), code);
        }
    }
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

/// SIGCHLD wakes the loop through a pipe; SIGTERM and SIGINT are caught
/// and dropped (containerd ends a shim with Shutdown). Handlers,
/// not a blocked mask with signalfd: a blocked mask would be inherited by
/// skiff and through it by the container's processes, while caught
/// signals go back to their defaults at exec.
fn install_signal_handlers() -> Result<std::fs::File, ServeError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two new fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io("pipe")(std::io::Error::last_os_error()));
    }
    // SAFETY: both fds are new; the write end lives for the whole process.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), fds[1]) };
    CHILD_PIPE.store(write_end, Ordering::Relaxed);
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
    Ok(std::fs::File::from(read_end))
}
