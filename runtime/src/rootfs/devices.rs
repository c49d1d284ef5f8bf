//! Device nodes in the container's /dev: the spec's default devices plus
//! `linux.devices`, the standard /dev symlinks and /dev/ptmx. Nodes are made
//! with mknodat on a directory fd resolved in the root; in a user namespace,
//! where mknod is not allowed, the host's node is bind-mounted instead.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{makedev, Mode, SFlag};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve;
use crate::syscalls;

/// Why a device could not be created.
#[derive(Debug, thiserror::Error)]
#[error("{field} {path}: {step}: {source}")]
pub struct DeviceError {
    pub field: String,
    pub path: PathBuf,
    pub step: String,
    pub source: Errno,
}

impl DeviceError {
    /// A parent directory that is not a real one (nodes and links are
    /// never made through a symlink).
    fn not_real(field: &str, path: &Path, e: resolve::NotReal) -> DeviceError {
        DeviceError {
            field: field.to_string(),
            path: path.to_path_buf(),
            step: e.describe(),
            source: e.source,
        }
    }
}

/// One node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every Linux container gets (runtime-spec "Default Devices").
pub fn default_nodes() -> Vec<Node> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Node {
        path: Path::new("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Converts a `linux.devices` entry.
pub fn node_from_spec(dev: &LinuxDevice) -> Node {
    let kind = match dev.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        // "c", "u" (unbuffered character device) and "a" (only meaningful
        // in cgroup rules) are character devices.
        _ => SFlag::S_IFCHR,
    };
    Node {
        path: dev.path().clone(),
        kind,
        major: dev.major() as u64,
        minor: dev.minor() as u64,
        mode: dev.file_mode().unwrap_or(0o666) & 0o7777,
        uid: dev.uid().unwrap_or(0),
        gid: dev.gid().unwrap_or(0),
    }
}

/// Creates every node. `field` names the spec field for errors.
pub fn create_nodes(
    root: BorrowedFd<'_>,
    nodes: &[(String, Node)],
    userns: bool,
) -> Result<(), DeviceError> {
    for (field, node) in nodes {
        let fail = |step: &'static str| {
            let field = field.clone();
            let path = node.path.clone();
            move |source| DeviceError {
                field,
                path,
                step: step.to_string(),
                source,
            }
        };
        let (parent, name) = resolve::parent_and_name_real(root, &node.path)
            .map_err(|e| DeviceError::not_real(field, &node.path, e))?;
        // A node left by the image (or an earlier entry) is replaced.
        remove_entry(parent.as_fd(), &name).map_err(fail("remove existing"))?;
        let made = if userns {
            Err(Errno::EPERM)
        } else {
            nix::sys::stat::mknodat(
                parent.as_fd(),
                name.as_path(),
                node.kind,
                Mode::from_bits_truncate(node.mode),
                makedev(node.major, node.minor),
            )
        };
        match made {
            Ok(()) => {
                // mknod applied the umask; set the exact mode, then owner.
                nix::sys::stat::fchmodat(
                    parent.as_fd(),
                    name.as_path(),
                    Mode::from_bits_truncate(node.mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(fail("chmod"))?;
                nix::unistd::fchownat(
                    parent.as_fd(),
                    name.as_path(),
                    Some(Uid::from_raw(node.uid)),
                    Some(Gid::from_raw(node.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(fail("chown"))?;
            }
            Err(Errno::EPERM) => bind_host_node(root, node).map_err(fail("bind host device"))?,
            Err(e) => return Err(fail("mknod")(e)),
        }
    }
    Ok(())
}

/// Removes a non-directory entry if it exists.
fn remove_entry(parent: BorrowedFd<'_>, name: &Path) -> nix::Result<()> {
    match nix::unistd::unlinkat(parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where mknod is not permitted, the host's node of the same path is bound
/// over an empty file.
fn bind_host_node(root: BorrowedFd<'_>, node: &Node) -> nix::Result<()> {
    let tree = syscalls::open_tree(None, &node.path, libc::OPEN_TREE_CLONE)?;
    let target = resolve::ensure_file_real(root, &node.path).map_err(|e| e.source)?;
    syscalls::move_mount_to_fd(tree.as_fd(), target.as_fd())
}

/// The symlinks /dev should have: stdio and fd through /proc, ptmx into
/// the devpts instance, and core when the host kernel has /proc/kcore.
pub fn create_symlinks(root: BorrowedFd<'_>) -> Result<(), DeviceError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        symlink(root, target, Path::new(link), false)?;
    }
    symlink(root, "pts/ptmx", Path::new("/dev/ptmx"), true)
}

fn symlink(
    root: BorrowedFd<'_>,
    target: &str,
    link: &Path,
    replace: bool,
) -> Result<(), DeviceError> {
    let field = "/dev symlink";
    let fail = |step: &'static str| {
        move |source| DeviceError {
            field: field.into(),
            path: link.to_path_buf(),
            step: step.to_string(),
            source,
        }
    };
    let (parent, name) = resolve::parent_and_name_real(root, link)
        .map_err(|e| DeviceError::not_real(field, link, e))?;
    if replace {
        remove_entry(parent.as_fd(), &name).map_err(fail("remove existing"))?;
    }
    match nix::unistd::symlinkat(target, parent.as_fd(), name.as_path()) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(fail("symlink")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_spec_list() {
        let paths: Vec<_> = default_nodes()
            .into_iter()
            .map(|n| (n.path, n.major, n.minor))
            .collect();
        assert_eq!(paths[0], (PathBuf::from("/dev/null"), 1, 3));
        assert_eq!(paths[5], (PathBuf::from("/dev/tty"), 5, 0));
        assert_eq!(paths.len(), 6);
    }

    #[test]
    fn spec_device_conversion() {
        let dev: LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o100600, "uid": 5, "gid": 6
        }))
        .unwrap();
        let n = node_from_spec(&dev);
        assert_eq!(n.kind, SFlag::S_IFCHR);
        assert_eq!(
            (n.major, n.minor, n.mode, n.uid, n.gid),
            (10, 229, 0o600, 5, 6)
        );
        let dev: LinuxDevice =
            serde_json::from_value(serde_json::json!({"path": "/dev/p", "type": "p"})).unwrap();
        assert_eq!(node_from_spec(&dev).kind, SFlag::S_IFIFO);
    }
}
