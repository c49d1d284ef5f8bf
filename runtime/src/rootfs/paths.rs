//! `linux.maskedPaths` and `linux.readonlyPaths`, applied after pivot_root
//! inside the container's own view. Targets are resolved by fd in the root
//! and masks come from a /dev/null that is checked to be the real device,
//! so neither a symlink nor a fake /dev/null can turn a mask into a hole.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;

use super::resolve;
use crate::syscalls::{self, MountAttr};

/// Why a path could not be masked or made read-only.
#[derive(Debug, thiserror::Error)]
#[error("{field} {path}: {step}: {source}")]
pub struct PathError {
    pub field: &'static str,
    pub path: PathBuf,
    pub step: &'static str,
    pub source: Errno,
}

fn is_dir(fd: &OwnedFd) -> nix::Result<bool> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Opens the container's /dev/null and checks it is the null device (1:3).
fn verified_dev_null(root: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    let fd = resolve::open_with(
        root,
        Path::new("/dev/null"),
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS,
    )?;
    let st = nix::sys::stat::fstat(&fd)?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != nix::sys::stat::makedev(1, 3) {
        return Err(Errno::EPERM);
    }
    Ok(fd)
}

/// Runs `apply` on each path that exists inside the root (the spec lets
/// missing masked and read-only paths pass), with errors naming `field`.
fn for_each_existing(
    root: BorrowedFd<'_>,
    field: &'static str,
    paths: &[String],
    mut apply: impl FnMut(OwnedFd) -> Result<(), (&'static str, Errno)>,
) -> Result<(), PathError> {
    for p in paths {
        let fail = |(step, source): (&'static str, Errno)| PathError {
            field,
            path: PathBuf::from(p),
            step,
            source,
        };
        let target = match resolve::open(root, Path::new(p), OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(fail(("open", e))),
        };
        apply(target).map_err(fail)?;
    }
    Ok(())
}

/// Tags an errno with the step that failed.
fn at(step: &'static str) -> impl FnOnce(Errno) -> (&'static str, Errno) {
    move |e| (step, e)
}

/// Masks each path: directories get an empty read-only tmpfs, files the
/// null device. Missing paths are skipped, as the spec allows.
pub fn mask(root: BorrowedFd<'_>, paths: &[String]) -> Result<(), PathError> {
    let mut dev_null: Option<OwnedFd> = None;
    for_each_existing(root, "linux.maskedPaths", paths, |target| {
        let mask = if is_dir(&target).map_err(at("stat"))? {
            empty_readonly_tmpfs().map_err(at("tmpfs"))?
        } else {
            if dev_null.is_none() {
                dev_null =
                    Some(verified_dev_null(root).map_err(at("/dev/null is not the null device"))?);
            }
            let null = dev_null
                .as_ref()
                .map(AsFd::as_fd)
                .ok_or(("/dev/null", Errno::ENODEV))?;
            let flags = libc::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as libc::c_uint;
            syscalls::open_tree(Some(null), "", flags).map_err(at("clone /dev/null"))?
        };
        syscalls::move_mount_to_fd(mask.as_fd(), target.as_fd()).map_err(at("move_mount"))
    })
}

fn empty_readonly_tmpfs() -> nix::Result<OwnedFd> {
    let fs = syscalls::fsopen(c"tmpfs")?;
    syscalls::fsconfig_set_string(fs.as_fd(), c"source", c"tmpfs")?;
    syscalls::fsconfig_set_string(fs.as_fd(), c"size", c"0")?;
    syscalls::fsconfig_create(fs.as_fd())?;
    syscalls::fsmount(
        fs.as_fd(),
        libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC,
    )
}

/// Makes each path (and everything mounted below it) read-only with a
/// recursive bind of itself. Missing paths are skipped.
pub fn make_readonly(root: BorrowedFd<'_>, paths: &[String]) -> Result<(), PathError> {
    for_each_existing(root, "linux.readonlyPaths", paths, |target| {
        let flags =
            libc::OPEN_TREE_CLONE | (libc::AT_RECURSIVE | libc::AT_EMPTY_PATH) as libc::c_uint;
        let tree = syscalls::open_tree(Some(target.as_fd()), "", flags).map_err(at("clone"))?;
        let ro = MountAttr {
            set: libc::MOUNT_ATTR_RDONLY,
            ..MountAttr::default()
        };
        syscalls::mount_setattr_fd(tree.as_fd(), true, ro).map_err(at("set read-only"))?;
        syscalls::move_mount_to_fd(tree.as_fd(), target.as_fd()).map_err(at("move_mount"))
    })
}
