//! A process's stdio as containerd hands it over: fifo paths (empty for
//! none; outputs may also be `file://` log URIs), or a pty when
//! `terminal` is set.
//!
//! Without a terminal the container gets the fifos themselves: no pipe and
//! no copy loop in the shim, so no thread and no buffer per container. The
//! shim keeps one read-write fd on every fifo while the process lives: a
//! writer never sees EPIPE while containerd (the reader) restarts, and a
//! reader in the container never sees EOF before the client has opened
//! its end. stdin's keep-alive goes at CloseIO, the rest at exit, which is
//! when the client sees EOF.
//!
//! With a terminal, skiff sends the pty master over a console socket and
//! a `Relay`, pumped by the shim's poll loop, copies between it and the
//! fifos.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio as ChildStdio;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ShimError;
use crate::log_binary;

/// The fifo paths of one process, as the request gave them.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the shim holds for a live process's stdio.
#[derive(Default)]
pub struct Held {
    /// Read-write fds keeping the stdout/stderr fifos open.
    outputs: Vec<OwnedFd>,
    /// Read-write fd keeping the stdin fifo open until CloseIO.
    stdin: Option<OwnedFd>,
    /// The pty master, for resizes.
    console: Option<File>,
}

impl Held {
    /// CloseIO: the client is done writing.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The process exited: let the client see EOF.
    pub fn release(&mut self) {
        *self = Held::default();
    }

    /// ResizePty.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), ShimError> {
        let Some(console) = &self.console else {
            return Err(ShimError::Invalid {
                field: "resize".into(),
                detail: "the process has no terminal".into(),
            });
        };
        let size = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer we pass.
        if unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(ShimError::io("resize the pty")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// The three stdio handles of the skiff command, which passes them on to
/// the container process when there is no terminal.
pub struct ChildIo {
    pub stdin: ChildStdio,
    pub stdout: ChildStdio,
    pub stderr: ChildStdio,
}

impl ChildIo {
    /// /dev/null for all three (a terminal process, a plain skiff call).
    pub fn null() -> ChildIo {
        ChildIo {
            stdin: ChildStdio::null(),
            stdout: ChildStdio::null(),
            stderr: ChildStdio::null(),
        }
    }
}

fn open_fifo(path: &str, read: bool, write: bool) -> Result<OwnedFd, ShimError> {
    // O_NONBLOCK so that opening never waits for the other side; cleared
    // again below because the container expects blocking stdio.
    let file = OpenOptions::new()
        .read(read)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(ShimError::io(format!("open fifo {path}")))?;
    let fd = OwnedFd::from(file);
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Ok(fd)
}

/// The stdin fifo: a read-write keep-alive for the shim (until CloseIO)
/// and the read end for the process or the relay.
fn open_stdin(path: &str) -> Result<(OwnedFd, OwnedFd), ShimError> {
    let keep = open_fifo(path, true, true)?;
    Ok((keep, open_fifo(path, true, false)?))
}

/// Where an output goes. containerd gives a fifo path; `ctr run
/// --log-uri file:///PATH` gives a file the shim appends to itself.
enum Output<'a> {
    Fifo(&'a str),
    File(&'a str),
}

fn output(uri: &str) -> Result<Output<'_>, ShimError> {
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(Output::File(path));
    }
    if let Some(path) = uri.strip_prefix("fifo://") {
        return Ok(Output::Fifo(path));
    }
    match uri.split_once("://") {
        Some((scheme, _)) => Err(ShimError::Invalid {
            field: format!("stdio {uri}"),
            detail: format!("{scheme}:// log URIs are not supported (fifo, file and binary are)"),
        }),
        None => Ok(Output::Fifo(uri)),
    }
}

/// An fd to write the output to, and for a fifo the read-write fd that
/// keeps it open.
fn open_output(uri: &str) -> Result<(OwnedFd, Option<OwnedFd>), ShimError> {
    match output(uri)? {
        Output::Fifo(path) => {
            let keep = open_fifo(path, true, true)?;
            Ok((open_fifo(path, false, true)?, Some(keep)))
        }
        Output::File(path) => {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(ShimError::io(format!("open log file {path}")))?;
            Ok((OwnedFd::from(file), None))
        }
    }
}

/// The task a process belongs to, for a logging binary's environment.
pub struct Owner<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
}

/// Opens the fifos (or log files, or a logging binary) for a process
/// without a terminal.
pub fn open_direct(paths: &Paths, owner: &Owner<'_>) -> Result<(ChildIo, Held), ShimError> {
    let mut held = Held::default();
    let stdin = if paths.stdin.is_empty() {
        ChildStdio::null()
    } else {
        let (keep, input) = open_stdin(&paths.stdin)?;
        held.stdin = Some(keep);
        ChildStdio::from(input)
    };
    let mut output = |uri: &str| -> Result<ChildStdio, ShimError> {
        if uri.is_empty() {
            return Ok(ChildStdio::null());
        }
        let (fd, keep) = open_output(uri)?;
        held.outputs.extend(keep);
        Ok(ChildStdio::from(fd))
    };
    let (stdout, stderr) = match paths.stdout.strip_prefix("binary://") {
        Some(uri) => {
            let (out, err) = log_binary::start(uri, owner.id, owner.namespace)?;
            (ChildStdio::from(out), ChildStdio::from(err))
        }
        None => (output(&paths.stdout)?, output(&paths.stderr)?),
    };
    Ok((
        ChildIo {
            stdin,
            stdout,
            stderr,
        },
        held,
    ))
}

/// A listening console socket, removed when dropped.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

static SOCKETS: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    /// Binds a fresh socket in the runtime directory (bundle paths can be
    /// longer than a socket address allows).
    pub fn bind(dir: &Path) -> Result<ConsoleSocket, ShimError> {
        std::fs::create_dir_all(dir).map_err(ShimError::io(format!("mkdir {}", dir.display())))?;
        let n = SOCKETS.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("console-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(ShimError::io(format!("bind {}", path.display())))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master the runtime sent before its command returned.
    /// Waiting is bounded, because the shim holds its task lock here:
    /// skiff refuses a console socket without `process.terminal`, but a
    /// runtime that connects and never sends must not hang the shim.
    pub fn receive(&self) -> Result<File, ShimError> {
        if !wait_readable(self.listener.as_fd(), std::time::Duration::from_secs(5)) {
            return Err(ShimError::Invalid {
                field: "terminal".into(),
                detail: "skiff sent no pty master (does process.terminal match the request?)"
                    .into(),
            });
        }
        let (stream, _) = self
            .listener
            .accept()
            .map_err(ShimError::io("accept on the console socket"))?;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut buf = [0u8; 256];
        let (_, fd) = skiff::fdpass::recv(stream.as_fd(), &mut buf).map_err(|e| {
            ShimError::io("receive the pty master")(std::io::Error::from_raw_os_error(e as i32))
        })?;
        fd.map(File::from).ok_or_else(|| ShimError::Invalid {
            field: "console socket".into(),
            detail: "no pty master came with the message".into(),
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits until `fd` is readable (or at its end), for at most `timeout`.
/// SIGCHLD interrupts poll(2) whenever a child exits, and poll is never
/// restarted: an interruption waits again for the time that is left.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, ms) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) if !left.is_zero() => continue,
            Err(_) => return false,
        }
    }
}

/// Sets an fd non-blocking: the relay never waits on one of them.
fn nonblocking(fd: &impl AsRawFd) {
    // SAFETY: F_GETFL/F_SETFL on an open fd.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Output read off the pty but not yet taken by the fifo's reader. Past
/// this the relay stops reading the pty, so a slow client slows the
/// container's writes (as a pipe would), never the shim.
const MAX_PENDING: usize = 64 << 10;

/// Copies between a terminal process's pty master and the client's fifos,
/// driven by the shim's poll loop: every fd is non-blocking and what a
/// side cannot take yet waits in a buffer. It outlives the process: the
/// output is closed (the client sees EOF) only once the pty reports that
/// every slave fd is closed and all output is through.
pub struct Relay {
    master: File,
    input: Option<File>,
    output: Option<File>,
    /// The output fifo's keep-alive, closed with the output.
    output_keep: Option<OwnedFd>,
    to_output: Vec<u8>,
    to_master: Vec<u8>,
    /// The pty read EIO or EOF: nothing more will come.
    master_done: bool,
}

/// What happened to one read or write.
enum Io {
    Done(usize),
    Wait,
    End,
}

fn io_result(r: std::io::Result<usize>) -> Io {
    match r {
        Ok(0) => Io::End,
        Ok(n) => Io::Done(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Io::Wait,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Io::Done(0),
        // EIO from the master (no slave left), EPIPE from a fifo with no
        // reader: that side is finished.
        Err(_) => Io::End,
    }
}

impl Relay {
    /// The fds to poll and for what.
    pub fn polls(&self) -> Vec<(RawFd, i16)> {
        let mut polls = Vec::new();
        let mut master = 0;
        if !self.master_done && self.to_output.len() < MAX_PENDING {
            master |= libc::POLLIN;
        }
        if !self.to_master.is_empty() {
            master |= libc::POLLOUT;
        }
        if master != 0 {
            polls.push((self.master.as_raw_fd(), master));
        }
        if let Some(out) = self.output.as_ref().filter(|_| !self.to_output.is_empty()) {
            polls.push((out.as_raw_fd(), libc::POLLOUT));
        }
        if let Some(input) = self.input.as_ref().filter(|_| self.to_master.is_empty()) {
            polls.push((input.as_raw_fd(), libc::POLLIN));
        }
        polls
    }

    /// Moves whatever can move now, without waiting.
    pub fn pump(&mut self) {
        let mut buf = [0u8; 8192];
        // pty -> output
        loop {
            if self.output.is_some() && !self.to_output.is_empty() {
                let out = self.output.as_mut().expect("checked");
                match io_result(out.write(&self.to_output)) {
                    Io::Done(n) => {
                        self.to_output.drain(..n);
                        continue;
                    }
                    Io::Wait => {}
                    Io::End => {
                        self.output = None;
                        self.to_output.clear();
                    }
                }
            }
            if self.master_done || self.to_output.len() >= MAX_PENDING {
                break;
            }
            match io_result(self.master.read(&mut buf)) {
                Io::Done(n) => {
                    if self.output.is_some() {
                        self.to_output.extend_from_slice(&buf[..n]);
                    }
                }
                Io::Wait => break,
                Io::End => self.master_done = true,
            }
        }
        // input -> pty
        loop {
            if !self.to_master.is_empty() {
                match io_result(self.master.write(&self.to_master)) {
                    Io::Done(n) => {
                        self.to_master.drain(..n);
                        continue;
                    }
                    Io::Wait => break,
                    Io::End => {
                        self.to_master.clear();
                        self.input = None;
                    }
                }
            }
            let Some(input) = self.input.as_mut() else {
                break;
            };
            match io_result(input.read(&mut buf)) {
                Io::Done(n) => self.to_master.extend_from_slice(&buf[..n]),
                Io::Wait => break,
                Io::End => self.input = None,
            }
        }
        if self.master_done && self.to_output.is_empty() {
            self.output = None;
            self.output_keep = None;
        }
    }

    /// All output is through and the process's pty is gone.
    pub fn finished(&self) -> bool {
        self.master_done && self.output.is_none()
    }
}

/// Sets up the relay between the pty master and the fifos; returns what
/// the shim holds for the process and the relay for its poll loop.
pub fn relay_terminal(
    paths: &Paths,
    owner: &Owner<'_>,
    master: File,
) -> Result<(Held, Relay), ShimError> {
    let mut held = Held::default();
    let input = if paths.stdin.is_empty() {
        None
    } else {
        let (keep, input) = open_stdin(&paths.stdin)?;
        held.stdin = Some(keep);
        Some(File::from(input))
    };
    let (output, output_keep) = if paths.stdout.is_empty() {
        (None, None)
    } else {
        let (fd, keep) = match paths.stdout.strip_prefix("binary://") {
            Some(uri) => (log_binary::start(uri, owner.id, owner.namespace)?.0, None),
            None => open_output(&paths.stdout)?,
        };
        (Some(File::from(fd)), keep)
    };
    for f in [Some(&master), input.as_ref(), output.as_ref()]
        .into_iter()
        .flatten()
    {
        nonblocking(f);
    }
    held.console = Some(
        master
            .try_clone()
            .map_err(ShimError::io("dup the pty master"))?,
    );
    let relay = Relay {
        master,
        input,
        output,
        output_keep,
        to_output: Vec::new(),
        to_master: Vec::new(),
        master_done: false,
    };
    Ok((held, relay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(dir: &Path, name: &str) -> String {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn output_uris() {
        assert!(matches!(
            output("/run/x/stdout"),
            Ok(Output::Fifo("/run/x/stdout"))
        ));
        assert!(matches!(
            output("fifo:///run/x/o"),
            Ok(Output::Fifo("/run/x/o"))
        ));
        assert!(matches!(
            output("file:///var/log/c.log"),
            Ok(Output::File("/var/log/c.log"))
        ));
        let err = output("binary:///usr/bin/logger?x=1")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("binary:// log URIs are not supported"),
            "{err}"
        );
    }

    #[test]
    fn relay_copies_both_ways_and_ends_after_the_last_output() {
        let dir = std::env::temp_dir().join(format!("skiff-shim-relay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (input, out) = (fifo(&dir, "in"), fifo(&dir, "out"));
        // The client's output end, opened before the task as containerd
        // does (its input end below, once the shim's keeps the fifo open).
        let mut reader = File::from(open_fifo(&out, true, false).unwrap());
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut slave = File::from(pty.slave);
        // Raw mode: no echo or line editing between the two sides.
        let mut t = nix::sys::termios::tcgetattr(&slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        let paths = Paths {
            stdin: input.clone(),
            stdout: out.clone(),
            terminal: true,
            ..Paths::default()
        };
        let owner = Owner {
            id: "c",
            namespace: "ns",
        };
        let (held, mut relay) = relay_terminal(&paths, &owner, File::from(pty.master)).unwrap();
        let mut writer = File::from(open_fifo(&input, false, true).unwrap());
        slave.write_all(b"hello").unwrap();
        writer.write_all(b"typed").unwrap();
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        let mut typed = Vec::new();
        for _ in 0..100 {
            relay.pump();
            let mut fds = [
                nix::poll::PollFd::new(reader.as_fd(), nix::poll::PollFlags::POLLIN),
                nix::poll::PollFd::new(slave.as_fd(), nix::poll::PollFlags::POLLIN),
            ];
            nix::poll::poll(&mut fds, 20u16).unwrap();
            let ready = [fds[0].any() == Some(true), fds[1].any() == Some(true)];
            if ready[0] {
                let n = reader.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            if ready[1] {
                let n = slave.read(&mut buf).unwrap();
                typed.extend_from_slice(&buf[..n]);
            }
            if got == b"hello" && typed == b"typed" {
                break;
            }
        }
        assert_eq!((&got[..], &typed[..]), (&b"hello"[..], &b"typed"[..]));
        // The process ends: its last output still arrives, then EOF.
        slave.write_all(b"bye").unwrap();
        drop(slave);
        drop(held);
        for _ in 0..100 {
            relay.pump();
            if relay.finished() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(relay.finished());
        drop(relay);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    extern "C" fn interrupted(_: libc::c_int) {}

    #[test]
    fn a_signal_does_not_cut_a_wait_short() {
        // SAFETY: a handler that does nothing, without SA_RESTART (as no
        // handler restarts poll).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = interrupted as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut());
        }
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        // SAFETY: pthread_self of this thread, signalled below while alive.
        let me = unsafe { libc::pthread_self() } as usize;
        let helper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            // SAFETY: the test thread is blocked in wait_readable.
            unsafe { libc::pthread_kill(me as libc::pthread_t, libc::SIGUSR2) };
            std::thread::sleep(std::time::Duration::from_millis(100));
            nix::unistd::write(&write_end, b"x").unwrap();
        });
        let ready = wait_readable(read_end.as_fd(), std::time::Duration::from_secs(5));
        helper.join().unwrap();
        assert!(ready, "the wait ended at the signal, before the data");
        assert!(!wait_readable(
            nix::unistd::pipe().unwrap().0.as_fd(),
            std::time::Duration::from_millis(20)
        ));
    }

    #[test]
    fn reader_sees_eof_only_after_release() {
        let dir = std::env::temp_dir().join(format!("skiff-shim-stdio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = fifo(&dir, "out");
        // The client's end, opened before the task as containerd does.
        let mut reader = File::from(open_fifo(&out, true, false).unwrap());
        let paths = Paths {
            stdout: out.clone(),
            ..Paths::default()
        };
        let owner = Owner {
            id: "c",
            namespace: "ns",
        };
        let (child, mut held) = open_direct(&paths, &owner).unwrap();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "echo hello"])
            .stdin(child.stdin)
            .stdout(child.stdout)
            .stderr(child.stderr);
        assert!(cmd.status().unwrap().success());
        drop(cmd);
        let mut buf = [0u8; 64];
        let n = reader.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello\n");
        // Still held: a read would block, so check with poll.
        let mut fds = [nix::poll::PollFd::new(
            reader.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        assert_eq!(nix::poll::poll(&mut fds, 50u16).unwrap(), 0);
        held.release();
        assert_eq!(reader.read(&mut buf).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
