//! The container's filesystem view, built inside its new mount namespace
//! (or one set aside, see pivot.rs): root propagation, the rootfs bound
//! onto itself, every `mounts[]` entry, /dev, then pivot_root, masked and
//! read-only paths and a read-only root.

mod copyup;
pub mod devices;
mod mount;
pub mod options;
mod paths;
mod pivot;
mod propagation;
pub mod resolve;
mod sources;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use crate::syscalls::{self, MountAttr};

pub use devices::DeviceError;
pub use mount::{MountContext, MountError};
pub use options::MountOptions;
pub use paths::PathError;
pub use pivot::{set_aside, Aside, PivotError};
pub use propagation::{check_no_pivot, flag as propagation_flag};
pub use sources::{prepare as prepare_sources, Prepared};

/// Why the rootfs could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("linux.rootfsPropagation: setting propagation of /: {0}")]
    Propagation(Errno),
    #[error("root.path: binding {path} onto itself: {source}")]
    BindRoot { path: String, source: Errno },
    #[error("root.path {path}: {step}: {source}")]
    Holder {
        path: String,
        step: &'static str,
        source: Errno,
    },
    #[error(
        "root.path {path}: the mount that holds it is unbindable (see linux.rootfsPropagation), \
         so it cannot be bound onto itself"
    )]
    Unbindable { path: String },
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
    let applied = propagation::apply_to_root(spec)?;

    let bind_err = |source| RootfsError::BindRoot {
        path: setup.rootfs.display().to_string(),
        source,
    };
    let rootfs = nix::fcntl::open(
        setup.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(bind_err)?;
    propagation::prepare_holder(rootfs.as_fd(), setup.rootfs, applied)?;
    let flags = libc::OPEN_TREE_CLONE | (libc::AT_RECURSIVE | libc::AT_EMPTY_PATH) as libc::c_uint;
    let root = syscalls::open_tree(Some(rootfs.as_fd()), "", flags).map_err(bind_err)?;
    syscalls::move_mount_to_fd(root.as_fd(), rootfs.as_fd()).map_err(bind_err)?;

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

/// Switches to the prepared root.
pub fn enter(root: BorrowedFd<'_>, no_pivot: bool) -> Result<(), RootfsError> {
    if no_pivot {
        pivot::move_root(root)?;
    } else {
        pivot::pivot_root(root)?;
    }
    Ok(())
}

/// After pivot_root: masks, read-only paths, the read-only root, the
/// return from a namespace set aside, and last the root's own propagation
/// (an unbindable root would refuse the masks' binds and the copy). `root`
/// is the container's `/`.
pub fn finalize(
    spec: &Spec,
    root: BorrowedFd<'_>,
    aside: Option<Aside>,
) -> Result<(), RootfsError> {
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
    match aside {
        None => propagation::apply_to_container_root(spec, root),
        Some(aside) => {
            let copy = pivot::return_with_copy(aside)?;
            propagation::apply_to_container_root(spec, copy.as_fd())
        }
    }
}
