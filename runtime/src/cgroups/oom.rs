//! A pollable fd that becomes readable when the kernel reports memory
//! events for a cgroup, so `events` learns of OOM kills as they happen
//! instead of polling counters. v1: an eventfd registered for
//! `memory.oom_control` through `cgroup.event_control`; v2: inotify on
//! `memory.events`, which the kernel touches on every memory event
//! (the caller compares the `oom_kill` counter to tell OOM kills apart).

use std::io::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// v1: registers an eventfd for OOM notifications of the memory cgroup.
pub fn watch_v1(memory_dir: &Path) -> Result<OwnedFd> {
    // SAFETY: eventfd returns a new fd or -1.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: efd was just created and is owned by nothing else.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    let control = std::fs::File::open(memory_dir.join("memory.oom_control"))?;
    // The registration lives as long as the eventfd; the control file may
    // be closed once written.
    let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    std::fs::write(memory_dir.join("cgroup.event_control"), line)?;
    Ok(efd)
}

/// v2: an inotify fd watching `memory.events` for modification.
pub fn watch_v2(dir: &Path) -> Result<OwnedFd> {
    // SAFETY: inotify_init1 returns a new fd or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::ffi::CString::new(dir.join("memory.events").as_os_str().as_bytes())
        .map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: fd is an inotify fd and path a NUL-terminated string.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(Error::last_os_error());
    }
    Ok(fd)
}

/// Empties a readable watch fd (eventfd counter or queued inotify events).
pub fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    // SAFETY: reads into a local buffer of the given size; non-blocking.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}
