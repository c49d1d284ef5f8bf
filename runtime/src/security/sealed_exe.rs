//! Every skiff process a container can see runs from a copy of the binary
//! that nothing can write (CVE-2019-5736).
//!
//! A process inside the container that may ptrace (CAP_SYS_PTRACE in the
//! host's user namespace defeats PR_SET_DUMPABLE) can open
//! `/proc/<pid>/exe` of any skiff process in its pid namespace: the init
//! while it waits for `start`, an `exec` child before its execve, the
//! intermediate process of a joined pid namespace. If that file is the
//! host's binary, reopening the fd for writing once skiff has exited
//! overwrites the runtime on the host. A process's exe is fixed at execve
//! and inherited by its children, so the only way to make every one of
//! them safe from birth is for the runtime itself to run from a safe copy
//! before it forks anything: `create`, `run` and `exec` re-execute
//! themselves once, first thing, from
//!
//! 1. a read-only overlayfs of the binary's directory, mounted detached
//!    (never attached anywhere, so nothing changes in any mount table). An
//!    overlay without an upper layer cannot be written through at all, and
//!    unlike a read-only bind mount it has no flag to clear. Its pages are
//!    the binary's own page cache, so it costs a mount, not a copy; or
//! 2. where overlayfs is missing or refuses the directory, a sealed memfd
//!    copy of the binary.
//!
//! Either way `/proc/<pid>/exe` of every later skiff process is that copy,
//! and so is what the container would run through a `/proc/self/exe`
//! symlink as its program.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::syscalls;

/// Set in the environment of the re-executed runtime (and removed from it
/// at once): the copy has been made, do not make another.
const MARKER: &str = "_SKIFF_SEALED_EXE";

/// overlayfs's `f_type`.
const OVERLAYFS_SUPER_MAGIC: libc::c_long = 0x794c_7630;

/// Why the runtime could not move onto a sealed copy of itself.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("protecting the skiff binary (CVE-2019-5736): {what}: {source}")]
    Sys { what: &'static str, source: Errno },
    #[error("protecting the skiff binary (CVE-2019-5736): no sealed copy could be made: read-only overlayfs: {overlay}; sealed memfd: {memfd}")]
    Unavailable { overlay: String, memfd: String },
    #[error("protecting the skiff binary (CVE-2019-5736): re-executed, but /proc/self/exe is still a writable file")]
    NotSealed,
}

impl SealError {
    /// What failed, without the prefix every variant carries.
    fn cause(&self) -> String {
        match self {
            SealError::Sys { what, source } => format!("{what}: {source}"),
            other => other.to_string(),
        }
    }
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> SealError {
    move |source| SealError::Sys { what, source }
}

/// Makes sure this process runs from a sealed copy of its binary:
/// returns at once when it already does, otherwise re-executes itself
/// from one (and does not return).
pub fn ensure() -> Result<(), SealError> {
    let exe = nix::fcntl::open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("opening /proc/self/exe"))?;
    let reexecuted = std::env::var_os(MARKER).is_some();
    if reexecuted {
        // Children (hooks, the container) must not inherit it.
        std::env::remove_var(MARKER);
    }
    // Re-executed, or started from a sealed copy by a caller that keeps
    // one: nothing to do.
    if is_sealed(exe.as_fd()) {
        return Ok(());
    }
    if reexecuted {
        return Err(SealError::NotSealed);
    }
    let copy = match overlay_copy(exe.as_fd()) {
        Ok(fd) => fd,
        Err(overlay) => {
            crate::debug!("{overlay}; copying the binary into a sealed memfd instead");
            memfd_copy(exe.as_fd()).map_err(|memfd| SealError::Unavailable {
                overlay: overlay.cause(),
                memfd: memfd.cause(),
            })?
        }
    };
    Err(reexec(copy.as_fd()))
}

/// True when `exe` is a file nobody can write: on a read-only overlayfs
/// (the one `overlay_copy` makes) or a memfd sealed against writes.
fn is_sealed(exe: BorrowedFd<'_>) -> bool {
    if let Ok(fs) = nix::sys::statfs::fstatfs(exe) {
        let read_only = fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
        if fs.filesystem_type().0 as libc::c_long == OVERLAYFS_SUPER_MAGIC && read_only {
            return true;
        }
    }
    // SAFETY: F_GET_SEALS only reads; it fails with EINVAL on other files.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// A detached, read-only overlayfs whose top layer is the binary's
/// directory; returns an O_PATH fd of the binary inside it.
fn overlay_copy(exe: BorrowedFd<'_>) -> Result<OwnedFd, SealError> {
    let link = std::fs::read_link("/proc/self/exe").map_err(|e| SealError::Sys {
        what: "reading /proc/self/exe",
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let (Some(bin_dir), Some(name)) = (link.parent(), link.file_name()) else {
        return Err(sys("the binary's path")(Errno::ENOENT));
    };
    let dir = nix::fcntl::open(
        bin_dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("opening the binary's directory"))?;
    // Without an upper layer overlayfs needs two lower ones, and they must
    // not overlap. The second is only there to be a second: a directory
    // that exists on every host, outside the binary's path (nothing can
    // reach the overlay's directories anyway: a process's exe is a file).
    // Kernels before 6.5 refuse a layer on a detached mount, so this is a
    // real path; a detached empty tmpfs only where none fits.
    let second = ["/dev", "/run", "/tmp"]
        .into_iter()
        .map(Path::new)
        .find(|d| !bin_dir.starts_with(d) && !d.starts_with(bin_dir) && d.is_dir());
    let empty;
    let second = match second {
        Some(d) => d.to_string_lossy().into_owned(),
        None => {
            empty = empty_tmpfs()?;
            format!("/proc/self/fd/{}", empty.as_raw_fd())
        }
    };
    // The binary's directory by fd (resolved through /proc/self/fd), so its
    // path needs no escaping for overlayfs's ':' and ',' separators.
    let lower = format!("/proc/self/fd/{}:{second}", dir.as_raw_fd());
    let lower = CString::new(lower).map_err(|_| sys("lowerdir")(Errno::EINVAL))?;
    let fs = syscalls::fsopen(c"overlay").map_err(sys("fsopen(overlay)"))?;
    syscalls::fsconfig_set_string(fs.as_fd(), c"lowerdir", &lower)
        .map_err(sys("fsconfig(overlay lowerdir)"))?;
    syscalls::fsconfig_create(fs.as_fd()).map_err(sys("creating the overlay"))?;
    let attrs = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID;
    let mnt = syscalls::fsmount(fs.as_fd(), attrs).map_err(sys("fsmount(overlay)"))?;
    let copy = nix::fcntl::openat(
        mnt.as_fd(),
        Path::new(name),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("opening the binary in the overlay"))?;
    // The file the overlay shows must be the one we run (the path may have
    // been replaced since execve).
    let same = |fd: BorrowedFd<'_>| nix::sys::stat::fstat(fd).map(|s| (s.st_ino, s.st_size));
    if same(copy.as_fd()).map_err(sys("fstat(overlay copy)"))?
        != same(exe).map_err(sys("fstat(/proc/self/exe)"))?
    {
        return Err(sys("the binary's path no longer names it")(Errno::ESTALE));
    }
    Ok(copy)
}

/// A detached, read-only, empty tmpfs.
fn empty_tmpfs() -> Result<OwnedFd, SealError> {
    let fs = syscalls::fsopen(c"tmpfs").map_err(sys("fsopen(tmpfs)"))?;
    syscalls::fsconfig_set_string(fs.as_fd(), c"size", c"4k").map_err(sys("fsconfig(tmpfs)"))?;
    syscalls::fsconfig_create(fs.as_fd()).map_err(sys("creating the empty tmpfs"))?;
    syscalls::fsmount(fs.as_fd(), libc::MOUNT_ATTR_RDONLY).map_err(sys("fsmount(tmpfs)"))
}

/// A memfd holding a copy of the binary, sealed against every change.
fn memfd_copy(exe: BorrowedFd<'_>) -> Result<OwnedFd, SealError> {
    let fd = syscalls::memfd_create_exec(c"skiff", libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        .map_err(sys("memfd_create"))?;
    let size = nix::sys::stat::fstat(exe)
        .map_err(sys("fstat(/proc/self/exe)"))?
        .st_size as usize;
    let mut offset: libc::off_t = 0;
    while (offset as usize) < size {
        // SAFETY: two valid fds and an offset we own.
        let n = unsafe {
            libc::sendfile(
                fd.as_raw_fd(),
                exe.as_raw_fd(),
                &mut offset,
                size - offset as usize,
            )
        };
        match n {
            0 => return Err(sys("copying the binary")(Errno::EIO)),
            n if n > 0 => {}
            _ if Errno::last() == Errno::EINTR => {}
            _ => return Err(sys("copying the binary")(Errno::last())),
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on a memfd we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(sys("sealing the copy")(Errno::last()));
    }
    Ok(fd)
}

/// Re-executes this process (same argv and environment, plus the marker)
/// from `image`. Returns only on failure.
fn reexec(image: BorrowedFd<'_>) -> SealError {
    let argv: Vec<CString> = std::env::args_os().filter_map(cstring).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstring(kv)
        })
        .collect();
    env.push(CString::new(format!("{MARKER}=1")).unwrap_or_default());
    match syscalls::execveat_empty_path(image, &argv, &env) {
        Ok(never) => match never {},
        Err(e) => sys("re-executing from the sealed copy")(e),
    }
}

fn cstring(s: OsString) -> Option<CString> {
    CString::new(s.into_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test binary runs from the host file: not sealed. A sealed
    /// memfd copy of it is.
    #[test]
    fn sealed_copies_are_recognised() {
        let exe = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(!is_sealed(exe.as_fd()));
        let copy = memfd_copy(exe.as_fd()).unwrap();
        assert!(is_sealed(copy.as_fd()));
        assert_eq!(nix::unistd::write(&copy, b"x"), Err(Errno::EPERM));
    }

    #[test]
    fn overlay_copy_is_read_only() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var_os("SKIFF_REQUIRE_ALL").is_none(),
                "needs root"
            );
            eprintln!("SKIPPED overlay_copy_is_read_only: needs root");
            return;
        }
        let exe = std::fs::File::open("/proc/self/exe").unwrap();
        let copy = overlay_copy(exe.as_fd()).unwrap();
        let reopened = format!("/proc/self/fd/{}", copy.as_raw_fd());
        assert!(is_sealed(std::fs::File::open(&reopened).unwrap().as_fd()));
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&reopened)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    }
}
