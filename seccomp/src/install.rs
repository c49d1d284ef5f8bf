//! Installing a compiled filter on the calling thread.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::compile::{flag, Filter};

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

/// Installs the filter. Needs no_new_privs or CAP_SYS_ADMIN. Flags this
/// kernel does not know (LOG, SPEC_ALLOW, WAIT_KILLABLE_RECV on older
/// kernels) are dropped rather than failing the container, and reported.
/// Returns the user-notification listener when the filter has one.
pub fn install(filter: &Filter) -> Result<(Option<OwnedFd>, u32), InstallError> {
    let prog = libc::sock_fprog {
        len: filter.program.len() as libc::c_ushort,
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    let optional = flag::LOG | flag::SPEC_ALLOW | flag::WAIT_KILLABLE_RECV;
    let mut flags = filter.flags;
    let mut ret = seccomp(flags, &prog);
    let mut dropped = 0;
    if ret < 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
        && flags & optional != 0
    {
        dropped = flags & optional;
        flags &= !optional;
        ret = seccomp(flags, &prog);
    }
    if ret < 0 {
        return Err(InstallError(std::io::Error::last_os_error()));
    }
    let listener = if flags & flag::NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER the kernel returns a fresh fd.
        Some(unsafe { OwnedFd::from_raw_fd(ret as i32) })
    } else {
        None
    };
    Ok((listener, dropped))
}
