//! Bind-mount sources opened by the runtime, in the host's namespaces,
//! before the init is forked. A container in a user namespace may not be
//! allowed to reach a host path it is given as a bind source; and an
//! id-mapped mount (`idmap`, `ridmap`) must be set up by someone privileged
//! over the source mount. The runtime clones each such source into a
//! detached mount tree (id-mapped where asked); the init only attaches it.
//! A runtime that is not root can clone nothing in the host's mount
//! namespace: its init clones the sources in its own, with the user's
//! access to them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};

use super::mount::MountError;
use super::options::MountOptions;
use crate::namespaces;
use crate::syscalls;

/// Detached trees, by index in `mounts`.
#[derive(Default)]
pub struct Prepared {
    trees: Vec<Option<OwnedFd>>,
}

impl Prepared {
    /// The prepared tree for mount `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<BorrowedFd<'_>> {
        self.trees
            .get(index)
            .and_then(Option::as_ref)
            .map(AsFd::as_fd)
    }
}

/// True when the entry is a bind mount.
pub fn is_bind(m: &Mount, options: &MountOptions) -> bool {
    options.bind.is_some() || m.typ().as_deref() == Some("bind")
}

/// Clones a bind source into a detached tree (`rbind` with its
/// submounts; with `src-nofollow` a symlink itself, not its target).
pub fn clone_source(source: &Path, options: &MountOptions) -> nix::Result<OwnedFd> {
    let mut flags = libc::OPEN_TREE_CLONE;
    if options.bind.unwrap_or(false) {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    if options.src_nofollow {
        flags |= libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
    }
    syscalls::open_tree(None, source, flags)
}

/// Opens every bind source that needs the runtime's privileges: all of
/// them for a container with a user namespace, and every id-mapped one.
pub fn prepare(spec: &Spec, bundle: &Path, userns: bool) -> Result<Prepared, MountError> {
    let mut prepared = Prepared::default();
    let privileged = nix::unistd::geteuid().is_root();
    let linux = spec.linux().as_ref();
    let container_uid = linux
        .and_then(|l| l.uid_mappings().as_deref())
        .unwrap_or_default();
    let container_gid = linux
        .and_then(|l| l.gid_mappings().as_deref())
        .unwrap_or_default();
    for (index, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let options = MountOptions::parse(m.options().as_deref().unwrap_or_default());
        let bind = is_bind(m, &options);
        if !(options.idmap.is_some() || (bind && userns && privileged)) {
            prepared.trees.push(None);
            continue;
        }
        let fail = |step: &str| {
            let step = step.to_string();
            move |source| MountError {
                index,
                kind: "bind".into(),
                destination: m.destination().clone(),
                step,
                source,
                detail: String::new(),
            }
        };
        if !bind {
            return Err(fail("options")(Errno::EINVAL)).map_err(|mut e| {
                e.detail = " (idmap needs a bind mount)".into();
                e
            });
        }
        if !privileged {
            return Err(fail("idmap")(Errno::EPERM)).map_err(|mut e| {
                e.detail = " (an id-mapped mount of a host filesystem needs CAP_SYS_ADMIN in the host's user namespace: run as root)".into();
                e
            });
        }
        let source = bundle.join(m.source().as_deref().unwrap_or(Path::new("")));
        let tree = clone_source(&source, &options)
            .map_err(fail(&format!("source {}", source.display())))?;
        if let Some(recursive) = options.idmap {
            let uid = m
                .uid_mappings()
                .as_deref()
                .filter(|u| !u.is_empty())
                .unwrap_or(container_uid);
            let gid = m
                .gid_mappings()
                .as_deref()
                .filter(|g| !g.is_empty())
                .unwrap_or(container_gid);
            id_map(&tree, uid, gid, recursive).map_err(|(step, source)| {
                let mut e = fail(step)(source);
                if uid.is_empty() || gid.is_empty() {
                    e.detail = " (no uidMappings/gidMappings on the mount or the container)".into();
                }
                e
            })?;
        }
        prepared.trees.push(Some(tree));
    }
    Ok(prepared)
}

fn id_map(
    tree: &OwnedFd,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
    recursive: bool,
) -> Result<(), (&'static str, Errno)> {
    if uid.is_empty() || gid.is_empty() {
        return Err(("idmap", Errno::EINVAL));
    }
    let userns = namespaces::userns_with_maps(uid, gid).map_err(|e| {
        let errno = match e {
            namespaces::NamespaceError::Unshare { source, .. } => source,
            _ => Errno::EINVAL,
        };
        ("user namespace for the id mapping", errno)
    })?;
    syscalls::mount_setattr_idmap(tree.as_fd(), recursive, userns.as_fd()).map_err(|e| ("idmap", e))
}
