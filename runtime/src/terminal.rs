//! Terminals: the init opens a pty in the container's own devpts instance,
//! takes the peer through TIOCGPTPEER (never by path), makes it its
//! controlling terminal and /dev/console, and sends the master end over a
//! unix socket with SCM_RIGHTS, in runc's format (the pty name as data).
//! The socket is either the manager's `--console-socket` or, for a
//! foreground `run`, one end of a socketpair skiff relays from.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use crate::fdpass;
use crate::rootfs::resolve;
use crate::syscalls;

/// Why the terminal could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("process.terminal: {step}: {source}")]
pub struct TerminalError {
    pub step: String,
    pub source: Errno,
}

fn fail(step: impl Into<String>) -> impl FnOnce(Errno) -> TerminalError {
    let step = step.into();
    move |source| TerminalError { step, source }
}

/// Connects to the manager's console socket (in the runtime, before fork:
/// the init cannot reach host paths once it is in its rootfs).
pub fn connect_console_socket(path: &Path) -> Result<OwnedFd, TerminalError> {
    fdpass::connect(path).map_err(fail(format!("--console-socket {}", path.display())))
}

/// Sends `fd` with `name` as the message data (runc's SendFd format).
pub fn send_fd(sock: BorrowedFd<'_>, name: &str, fd: BorrowedFd<'_>) -> nix::Result<()> {
    fdpass::send(sock, name.as_bytes(), Some(fd))
}

/// Receives one fd sent by `send_fd`, with its name.
pub fn recv_fd(sock: BorrowedFd<'_>) -> nix::Result<(String, OwnedFd)> {
    let mut buf = [0u8; 4096];
    let (len, fd) = fdpass::recv(sock, &mut buf)?;
    let fd = fd.ok_or(Errno::EBADMSG)?;
    Ok((String::from_utf8_lossy(&buf[..len]).into_owned(), fd))
}

/// A pty opened inside the container.
pub struct Pty {
    pub master: OwnedFd,
    pub peer: OwnedFd,
    pub name: String,
}

/// Opens a pty in the container's devpts (after pivot_root), sized when the
/// config gives a console size.
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty, TerminalError> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(fail("open /"))?;
    let master = resolve::open(
        root.as_fd(),
        Path::new("/dev/pts/ptmx"),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
    )
    .map_err(fail(
        "open /dev/pts/ptmx (a devpts mount at /dev/pts is needed)",
    ))?;
    let raw = master.as_raw_fd();
    let mut unlock: libc::c_int = 0;
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK/TIOCGPTN take pointers to ints we own.
    unsafe {
        if libc::ioctl(raw, libc::TIOCSPTLCK, &mut unlock) < 0 {
            return Err(fail("unlock pty")(Errno::last()));
        }
        if libc::ioctl(raw, libc::TIOCGPTN, &mut number) < 0 {
            return Err(fail("pty number")(Errno::last()));
        }
    }
    // SAFETY: TIOCGPTPEER returns a new fd for the peer of this master.
    let peer = unsafe {
        libc::ioctl(
            raw,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if peer < 0 {
        return Err(fail("open pty peer")(Errno::last()));
    }
    // SAFETY: fresh fd from the kernel.
    let peer = unsafe { OwnedFd::from_raw_fd(peer) };
    if let Some((rows, cols)) = size {
        set_size(master.as_fd(), rows, cols).map_err(fail("consoleSize"))?;
    }
    Ok(Pty {
        master,
        peer,
        name: format!("/dev/pts/{number}"),
    })
}

/// Sets a terminal's window size.
pub fn set_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// A terminal's window size, if it is one.
pub fn get_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into a winsize we own.
    (unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0)
        .then_some((ws.ws_row, ws.ws_col))
}

/// Opens a pty of `process.consoleSize`, makes it the caller's controlling
/// terminal and stdio (and, for the init, /dev/console), and sends the
/// master to the manager over `console`.
pub fn hand_over(
    process: &oci_spec::runtime::Process,
    console: BorrowedFd<'_>,
    as_dev_console: bool,
) -> Result<(), TerminalError> {
    let size = process
        .console_size()
        .map(|b| (b.height() as u16, b.width() as u16));
    let pty = open_pty(size)?;
    if as_dev_console {
        mount_dev_console(&pty)?;
    }
    attach(&pty)?;
    send_fd(console, &pty.name, pty.master.as_fd())
        .map_err(fail("sending the pty master to the console socket"))
}

/// Mounts the pty peer over /dev/console.
fn mount_dev_console(pty: &Pty) -> Result<(), TerminalError> {
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(fail("open /"))?;
    // Never through a symlink: the pty must not land on whatever the
    // image points /dev/console at.
    let console = resolve::ensure_file_real(root.as_fd(), Path::new("/dev/console"))
        .map_err(|e| fail(e.describe())(e.source))?;
    let tree = syscalls::open_tree(
        Some(pty.peer.as_fd()),
        "",
        libc::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as libc::c_uint,
    )
    .map_err(fail("clone pty for /dev/console"))?;
    syscalls::move_mount_to_fd(tree.as_fd(), console.as_fd()).map_err(fail("mount /dev/console"))
}

/// Makes the pty the caller's controlling terminal and stdio.
fn attach(pty: &Pty) -> Result<(), TerminalError> {
    nix::unistd::setsid().map_err(fail("setsid"))?;
    // SAFETY: TIOCSCTTY with argument 0 on a terminal fd we own.
    if unsafe { libc::ioctl(pty.peer.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(fail("TIOCSCTTY")(Errno::last()));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the stdio numbers; the peer stays open.
        if unsafe { libc::dup2(pty.peer.as_raw_fd(), target) } < 0 {
            return Err(fail("dup2 pty onto stdio")(Errno::last()));
        }
    }
    Ok(())
}

/// Puts a terminal into raw mode and restores it when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    /// Raw mode for `fd` when it is a terminal.
    pub fn enable(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = nix::sys::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the fd is stdin, open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = nix::sys::termios::tcsetattr(fd, nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}
