//! `linux.rootfsPropagation`, and what pivot_root needs of it.
//!
//! The value is set on `/` of the container's mount namespace before
//! anything is mounted, so the bind mounts cloned afterwards inherit it (as
//! in runc). pivot_root(2) refuses a new root whose parent mount is shared,
//! and a rootfs bound onto a shared mount would carry everything the
//! container mounts on it back to the host. So the mount that holds the
//! rootfs is made private when it is still shared, whatever the value: the
//! rule runc follows, which gives runc's outcome for every value.
//!
//! A shared or unbindable value is then also given to the container's own
//! root once it is in place (crun's outcome, which the runtime-tools
//! validation checks): its peer group is a new one, inside the container,
//! so nothing reaches the host through it. Until then an unbindable value
//! counts as private, or the rootfs could not be bound onto itself.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode};
use oci_spec::runtime::Spec;

use super::RootfsError;
use crate::syscalls::{self, MountAttr};
use crate::validate::Invalid;

/// The propagation flag for a `rootfsPropagation` value, and whether it
/// applies recursively (also the validation of that field).
pub fn flag(value: &str) -> Option<(u64, bool)> {
    Some(match value {
        "shared" => (libc::MS_SHARED, false),
        "rshared" => (libc::MS_SHARED, true),
        "slave" => (libc::MS_SLAVE, false),
        "rslave" => (libc::MS_SLAVE, true),
        "private" => (libc::MS_PRIVATE, false),
        "rprivate" => (libc::MS_PRIVATE, true),
        "unbindable" => (libc::MS_UNBINDABLE, false),
        "runbindable" => (libc::MS_UNBINDABLE, true),
        _ => return None,
    })
}

/// The propagation `/` was given.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    flag: u64,
    recursive: bool,
}

/// The configured propagation, if any (validated earlier).
fn configured(spec: &Spec) -> Option<(u64, bool)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(flag)
}

/// Sets the configured propagation on `/`. The default is rslave: host
/// mounts still reach the container, but nothing the container mounts
/// propagates back to the host.
pub fn apply_to_root(spec: &Spec) -> Result<Applied, RootfsError> {
    let (flag, recursive) = match configured(spec).unwrap_or((libc::MS_SLAVE, true)) {
        (libc::MS_UNBINDABLE, recursive) => (libc::MS_PRIVATE, recursive),
        other => other,
    };
    let attr = MountAttr {
        propagation: flag,
        ..MountAttr::default()
    };
    syscalls::mount_setattr(None, "/", recursive, 0, attr).map_err(RootfsError::Propagation)?;
    Ok(Applied { flag, recursive })
}

/// Gives the container's root (after every mount the runtime makes) a
/// shared or unbindable configured propagation.
pub fn apply_to_container_root(spec: &Spec, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    let Some((flag @ (libc::MS_SHARED | libc::MS_UNBINDABLE), recursive)) = configured(spec) else {
        return Ok(());
    };
    let attr = MountAttr {
        propagation: flag,
        ..MountAttr::default()
    };
    syscalls::mount_setattr_fd(root, recursive, attr).map_err(RootfsError::Propagation)
}

/// The propagation mountinfo shows for one mount.
#[derive(Debug, Default, PartialEq, Eq)]
struct Peering {
    shared: bool,
    unbindable: bool,
}

/// Reads the optional fields (`shared:N`, `master:N`, `unbindable`) of the
/// line of mount `id`; None when there is no such line.
fn peering(mountinfo: &str, id: u64) -> Option<Peering> {
    let id = id.to_string();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').next() == Some(id.as_str()))?;
    let mut peering = Peering::default();
    for field in line.split(' ').skip(6).take_while(|f| *f != "-") {
        peering.shared |= field.starts_with("shared:");
        peering.unbindable |= field == "unbindable";
    }
    Some(peering)
}

/// Readies the mount that holds the rootfs (`rootfs` is an fd of the rootfs
/// directory, `path` its name for errors) for the rootfs to be bound onto
/// itself and pivoted into: private when it is shared, refused when it is
/// unbindable. `applied` is what `/` was given: after rslave (the default)
/// or rprivate nothing is shared, and mountinfo need not be read.
pub fn prepare_holder(
    rootfs: BorrowedFd<'_>,
    path: &Path,
    applied: Applied,
) -> Result<(), RootfsError> {
    let unbindable = || RootfsError::Unbindable {
        path: path.display().to_string(),
    };
    if let (libc::MS_SLAVE | libc::MS_PRIVATE, true) = (applied.flag, applied.recursive) {
        return Ok(());
    }
    let fail = |step: &'static str| {
        move |source| RootfsError::Holder {
            path: path.display().to_string(),
            step,
            source,
        }
    };
    let id = syscalls::mount_id(rootfs).map_err(fail("mount id"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
        fail("reading /proc/self/mountinfo")(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    })?;
    let Some(peering) = peering(&mountinfo, id) else {
        return Ok(());
    };
    if peering.unbindable {
        return Err(unbindable());
    }
    if peering.shared {
        let top = mount_root(rootfs, id).map_err(fail("finding the root of its mount"))?;
        let private = MountAttr {
            propagation: libc::MS_PRIVATE,
            ..MountAttr::default()
        };
        syscalls::mount_setattr_fd(top.as_fd(), false, private)
            .map_err(fail("making the mount that holds it private"))?;
    }
    Ok(())
}

/// An fd of the root directory of mount `id`, which `dir` is on: the
/// kernel changes propagation only through a mount's root. Walks up with
/// `..` until the next step would leave the mount (or `/` is reached).
fn mount_root(dir: BorrowedFd<'_>, id: u64) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut here = nix::fcntl::openat(dir, ".", flags, Mode::empty())?;
    loop {
        let up = nix::fcntl::openat(&here, "..", flags, Mode::empty())?;
        let (a, b) = (fstat(&here)?, fstat(&up)?);
        if syscalls::mount_id(up.as_fd())? != id || (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
            return Ok(here);
        }
        here = up;
    }
}

/// runc refuses `private` and `rprivate` with `--no-pivot`: without
/// pivot_root the host's mounts stay in the container's namespace beneath
/// its root, and once private they no longer follow the host's unmounts, so
/// they keep the host's filesystems busy.
pub fn check_no_pivot(spec: &Spec, no_pivot: bool) -> Result<(), Invalid> {
    let value = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref());
    match value {
        Some(v @ ("private" | "rprivate")) if no_pivot => Err(Invalid::new(
            "linux.rootfsPropagation",
            format!(
                "{v} is not safe with --no-pivot (the host's mounts would stay pinned in the \
                 container); use slave or rslave"
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
61 22 0:52 / /run/a rw shared:30 master:2 - tmpfs t rw
62 22 0:53 / /run/b rw master:3 - tmpfs t rw
63 22 0:54 / /run/c rw - tmpfs t rw
64 22 0:55 / /run/d rw unbindable - tmpfs t rw
65 22 0:56 / /run/shared:9\\040dir rw - tmpfs shared:9 rw
";

    #[test]
    fn peering_reads_the_optional_fields() {
        let p = |id| peering(MOUNTINFO, id).unwrap();
        assert!(p(22).shared && p(61).shared);
        assert_eq!(p(62), Peering::default());
        assert_eq!(p(63), Peering::default());
        assert!(p(64).unbindable && !p(64).shared);
        // Look-alikes in the mount point or after the separator do not count.
        assert_eq!(p(65), Peering::default());
        assert_eq!(peering(MOUNTINFO, 6), None);
    }

    #[test]
    fn values_and_no_pivot() {
        assert_eq!(flag("rslave"), Some((libc::MS_SLAVE, true)));
        assert_eq!(flag("unbindable"), Some((libc::MS_UNBINDABLE, false)));
        assert_eq!(flag("bogus"), None);
        let spec = |v: &str| -> Spec {
            serde_json::from_value(serde_json::json!({
                "ociVersion": "1.0.2", "root": {"path": "rootfs"},
                "linux": {"rootfsPropagation": v}
            }))
            .unwrap()
        };
        for v in ["private", "rprivate"] {
            let err = check_no_pivot(&spec(v), true).unwrap_err();
            assert_eq!(err.field, "linux.rootfsPropagation");
            assert!(check_no_pivot(&spec(v), false).is_ok());
        }
        for v in ["slave", "rslave", "shared", "rshared", "unbindable"] {
            assert!(check_no_pivot(&spec(v), true).is_ok());
        }
    }
}
