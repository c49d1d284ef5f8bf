//! Making the prepared rootfs the container's `/`: pivot_root with the old
//! root detached (never propagated back to the host), or, with
//! `--no-pivot`, a move of the rootfs mount onto `/` and a chroot.
//!
//! A container without a mount namespace of its own (one joined by path,
//! or the runtime's when the config names none) is given no mount in that
//! namespace: its root is built in a private namespace set aside, then the
//! container returns with a detached copy of that root as its `/`. Other
//! processes in the namespace keep their root and mount table.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MntFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::syscalls::{self, MountAttr};

/// Why the root could not be switched.
#[derive(Debug, thiserror::Error)]
#[error("entering the rootfs: {step}: {source}")]
pub struct PivotError {
    pub step: &'static str,
    pub source: Errno,
}

fn fail(step: &'static str) -> impl FnOnce(Errno) -> PivotError {
    move |source| PivotError { step, source }
}

/// pivot_root(".", ".") trick: the old root ends up stacked on the new one
/// and is detached right away, so no directory is needed to park it in.
pub fn pivot_root(root: BorrowedFd<'_>) -> Result<(), PivotError> {
    let old_root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("open old root"))?;
    nix::unistd::fchdir(root).map_err(fail("fchdir"))?;
    nix::unistd::pivot_root(".", ".").map_err(fail("pivot_root"))?;
    // The old root may be shared with the host: make it a slave first so
    // detaching it cannot unmount anything outside the container. Through
    // its fd, because a path "." here names the new root for mount(2), and
    // a recursive change there would also hit the container's own mounts.
    let slave = MountAttr {
        propagation: libc::MS_SLAVE,
        ..MountAttr::default()
    };
    syscalls::mount_setattr_fd(old_root.as_fd(), true, slave)
        .map_err(fail("make old root a slave"))?;
    drop(old_root);
    // umount2 crosses to the topmost mount at ".": the old root.
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(fail("detach old root"))?;
    nix::unistd::chdir("/").map_err(fail("chdir /"))
}

/// `--no-pivot`: move the rootfs mount over `/` and chroot into it.
pub fn move_root(root: BorrowedFd<'_>) -> Result<(), PivotError> {
    // With a shared `/` (rootfsPropagation shared or rshared on a host whose
    // `/` is shared) the move would propagate the whole container tree onto
    // the host's `/`. A slave still follows the host but sends nothing back.
    let slave = MountAttr {
        propagation: libc::MS_SLAVE,
        ..MountAttr::default()
    };
    syscalls::mount_setattr(None, "/", false, 0, slave).map_err(fail("make / a slave"))?;
    syscalls::move_mount_to_path(root.as_fd(), "/").map_err(fail("move rootfs to /"))?;
    nix::unistd::fchdir(root).map_err(fail("fchdir"))?;
    nix::unistd::chroot(".").map_err(fail("chroot"))?;
    nix::unistd::chdir("/").map_err(fail("chdir /"))
}

/// The mount namespace the container belongs to, left while its root is
/// built in a private copy of it.
#[derive(Debug)]
pub struct Aside {
    outer: OwnedFd,
}

/// Moves the caller into a private copy of its mount namespace.
pub fn set_aside() -> Result<Aside, PivotError> {
    let outer = nix::fcntl::open(
        "/proc/thread-self/ns/mnt",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("open the container's mount namespace"))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(fail("unshare a mount namespace to build the root in"))?;
    Ok(Aside { outer })
}

/// Returns to the namespace set aside with a detached copy of the current
/// `/` (the built root, entered) and every mount under it as the root.
/// The copy is returned: once the container is gone, nothing holds it.
pub fn return_with_copy(aside: Aside) -> Result<OwnedFd, PivotError> {
    let flags =
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint;
    let copy = syscalls::open_tree(None, "/", flags).map_err(fail("copy the root"))?;
    nix::sched::setns(aside.outer, CloneFlags::CLONE_NEWNS)
        .map_err(fail("return to the container's mount namespace"))?;
    nix::unistd::fchdir(&copy).map_err(fail("fchdir"))?;
    nix::unistd::chroot(".").map_err(fail("chroot"))?;
    nix::unistd::chdir("/").map_err(fail("chdir /"))?;
    Ok(copy)
}
