//! Who the container process is and what it may do: user and groups,
//! capabilities, no_new_privs, AppArmor/SELinux.

pub mod capabilities;
pub mod identity;
pub mod lsm;
pub mod sealed_exe;

/// Sets no_new_privs: execve can never grant more privileges (setuid bits,
/// file capabilities) from here on.
pub fn set_no_new_privs() -> nix::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}
