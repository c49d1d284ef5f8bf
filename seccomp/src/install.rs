//! Installing a compiled filter on the calling thread.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::compile::Filter;

/// Why the filter could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("installing the seccomp filter: {0}")]
pub struct InstallError(pub std::io::Error);

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

fn seccomp(flags: u32, prog: &libc::sock_fprog) -> libc::c_long {
    // SAFETY: prog points at a valid program that outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            prog as *const libc::sock_fprog,
        )
    }
}

/// Installs the filter: one seccomp(2) call, so that it can be the last
/// thing before execve. Needs no_new_privs or CAP_SYS_ADMIN; flags the
/// kernel does not accept must have been dropped before
/// (`Filter::drop_unsupported_flags`). Returns the user-notification
/// listener when the filter has one.
pub fn install(filter: &Filter) -> Result<Option<OwnedFd>, InstallError> {
    let prog = libc::sock_fprog {
        len: filter.program.len() as libc::c_ushort,
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    let ret = seccomp(filter.flags, &prog);
    if ret < 0 {
        return Err(InstallError(std::io::Error::last_os_error()));
    }
    if filter.has_listener() {
        // SAFETY: with NEW_LISTENER the kernel returns a fresh fd.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }))
    } else {
        Ok(None)
    }
}
