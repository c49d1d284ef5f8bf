//! The container's filesystem view, built inside its new mount namespace:
//! root propagation, the rootfs bound onto itself, every `mounts[]` entry,
//! /dev, then pivot_root, masked and read-only paths and a read-only root.

mod copyup;
pub mod devices;
mod mount;
pub mod options;
mod paths;
mod pivot;
pub mod resolve;
mod sources;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::Spec;

use crate::syscalls::{self, MountAttr};

pub use devices::DeviceError;
pub use mount::{MountContext, MountError};
pub use options::MountOptions;
pub use paths::PathError;
pub use pivot::PivotError;
pub use sources::{prepare as prepare_sources, Prepared};

/// Why the rootfs could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("linux.rootfsPropagation: setting propagation of /: {0}")]
    Propagation(Errno),
    #[error("root.path: binding {path} onto itself: {source}")]
    BindRoot { path: String, source: Errno },
    #[error("{0}: /dev must be a real directory (skiff fills it)")]
    Dev(String),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Pivot(#[from] PivotError),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("root.readonly: {0}")]
    Readonly(Errno),
}

/// The propagation flag for a `rootfsPropagation` value (also the
/// validation of that field).
pub fn propagation_flag(value: &str) -> Option<(u64, bool)> {
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

/// Everything rootfs preparation needs.
pub struct Setup<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub mount: MountContext<'a>,
}

/// True when skiff populates /dev: always, unless the config bind-mounts a
/// /dev of its own.
fn manages_dev(spec: &Spec) -> bool {
    !spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| {
            let bind = m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|o| o == "bind" || o == "rbind");
            bind && resolve::clean(m.destination()) == Path::new("dev")
        })
}

/// Builds the filesystem view under the rootfs and returns an fd of the
/// rootfs mount. Runs in the container's (new) mount namespace.
pub fn prepare(setup: &Setup<'_>) -> Result<OwnedFd, RootfsError> {
    let spec = setup.spec;
    let linux = spec.linux().as_ref();
    // Default rslave: host mounts still reach the container, but nothing
    // the container mounts propagates back to the host.
    let (flag, recursive) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
        .unwrap_or((libc::MS_SLAVE, true));
    let attr = MountAttr {
        propagation: flag,
        ..MountAttr::default()
    };
    syscalls::mount_setattr(None, "/", recursive, 0, attr).map_err(RootfsError::Propagation)?;
    if flag == libc::MS_SHARED {
        // pivot_root refuses a shared parent mount; the mounts the
        // container makes still propagate through the rootfs mount itself.
        make_parent_private(setup.rootfs)?;
    }

    let flags = libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as libc::c_uint;
    let bind_err = |source| RootfsError::BindRoot {
        path: setup.rootfs.display().to_string(),
        source,
    };
    let root = syscalls::open_tree(None, setup.rootfs, flags).map_err(bind_err)?;
    syscalls::move_mount_to_path(root.as_fd(), setup.rootfs).map_err(bind_err)?;

    let dev_is_ours = manages_dev(spec);
    for (index, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        mount::mount_entry(root.as_fd(), index, m, &setup.mount, dev_is_ours)?;
    }

    if dev_is_ours {
        // The nodes and links below are made by name in /dev, and masks
        // and the console rely on them being there.
        resolve::mkdir_all_real(root.as_fd(), Path::new("/dev"))
            .map_err(|e| RootfsError::Dev(e.describe()))?;
        let mut nodes: Vec<(String, devices::Node)> = devices::default_nodes()
            .into_iter()
            .map(|n| ("default device".to_string(), n))
            .collect();
        for (i, dev) in linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            nodes.push((format!("linux.devices[{i}]"), devices::node_from_spec(dev)));
        }
        devices::create_nodes(root.as_fd(), &nodes, setup.mount.userns)?;
        devices::create_symlinks(root.as_fd())?;
    }
    Ok(root)
}

/// With shared root propagation, the mount holding the rootfs directory
/// must be private for pivot_root; find it in mountinfo (the longest mount
/// point that is a prefix of the rootfs).
fn make_parent_private(rootfs: &Path) -> Result<(), RootfsError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
        RootfsError::Propagation(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    })?;
    let parent = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(Path::new)
        .filter(|mp| rootfs.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
        .unwrap_or(Path::new("/"));
    let attr = MountAttr {
        propagation: libc::MS_PRIVATE,
        ..MountAttr::default()
    };
    syscalls::mount_setattr(None, parent, false, 0, attr).map_err(RootfsError::Propagation)
}

/// Switches to the prepared root.
pub fn enter(root: BorrowedFd<'_>, no_pivot: bool) -> Result<(), RootfsError> {
    if no_pivot {
        pivot::move_root(root)?;
    } else {
        pivot::pivot_root(root)?;
    }
    Ok(())
}

/// After pivot_root: masks, read-only paths and the read-only root. `root`
/// is the container's `/`.
pub fn finalize(spec: &Spec, root: BorrowedFd<'_>) -> Result<(), RootfsError> {
    if let Some(linux) = spec.linux() {
        if let Some(masked) = linux.masked_paths() {
            paths::mask(root, masked)?;
        }
        if let Some(readonly) = linux.readonly_paths() {
            paths::make_readonly(root, readonly)?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let ro = MountAttr {
            set: libc::MOUNT_ATTR_RDONLY,
            ..MountAttr::default()
        };
        syscalls::mount_setattr_fd(root, false, ro).map_err(RootfsError::Readonly)?;
    }
    Ok(())
}
