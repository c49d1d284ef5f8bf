//! What lies outside the container's own state and must be named to CRIU:
//! bind mounts from the host, namespaces joined by path, and the stdio the
//! container got from whoever created it.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::CriuError;
use crate::cgroups;

/// The key CRIU files a joined namespace under, by type (the names runc
/// uses, so images move between the two).
fn ns_key(kind: LinuxNamespaceType) -> Option<(&'static str, &'static str)> {
    match kind {
        LinuxNamespaceType::Network => Some(("net", "extRootNetNS")),
        LinuxNamespaceType::Pid => Some(("pid", "extRootPidNS")),
        _ => None,
    }
}

/// The namespaces the container joined that CRIU can leave external:
/// `(type, path)`.
pub fn joined_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, PathBuf)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .filter(|ns| ns_key(ns.typ()).is_some())
        .filter_map(|ns| ns.path().as_ref().map(|p| (ns.typ(), p.clone())))
        .collect()
}

/// Whether the container gets a new namespace of type `kind` (listed
/// without a path).
pub fn creates_namespace(spec: &Spec, kind: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|list| list.iter().any(|n| n.typ() == kind && n.path().is_none()))
}

/// `(destination, source)` of every bind mount in the spec, the source
/// resolved against the bundle.
pub fn bind_mounts(spec: &Spec, bundle: &Path) -> Vec<(String, PathBuf)> {
    spec.mounts()
        .as_ref()
        .into_iter()
        .flatten()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
        })
        .filter_map(|m| {
            let source = m.source().as_ref()?;
            Some((
                m.destination().to_string_lossy().into_owned(),
                bundle.join(source),
            ))
        })
        .collect()
}

/// Makes the destination of every mount in the rootfs, where CRIU mounts
/// them back: a file for a bind mount of a file, a directory otherwise.
/// A fresh rootfs (another machine, Podman's `--import`) lacks those the
/// runtime made at create, such as /etc/hostname. Destinations inside a
/// tmpfs are left out: CRIU restores the tmpfs with its content.
pub fn make_mountpoints(spec: &Spec, bundle: &Path, rootfs: &Path) -> Result<(), CriuError> {
    use crate::rootfs::resolve;
    use nix::fcntl::OFlag;
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(super::sys(format!(
        "opening the rootfs {}",
        rootfs.display()
    )))?;
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    let tmpfs: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| resolve::clean(m.destination()))
        .collect();
    let files: Vec<String> = bind_mounts(spec, bundle)
        .into_iter()
        .filter(|(_, source)| source.metadata().is_ok_and(|m| !m.is_dir()))
        .map(|(dest, _)| dest)
        .collect();
    for m in mounts {
        let dest = resolve::clean(m.destination());
        if tmpfs.iter().any(|t| dest != *t && dest.starts_with(t)) {
            continue;
        }
        let made = if files.iter().any(|f| Path::new(f) == m.destination()) {
            resolve::ensure_file(root.as_fd(), &dest)
        } else {
            resolve::mkdir_all(root.as_fd(), &dest)
        };
        made.map_err(super::sys(format!(
            "making the mount point {} in the rootfs",
            m.destination().display()
        )))?;
    }
    Ok(())
}

/// The cookie a container's cgroup mount in one hierarchy is dumped
/// under. Without a cgroup namespace each is a bind of the container's
/// own cgroup directory, which CRIU cannot rebuild; on restore the cookie
/// maps to the new container's directory in that hierarchy (another
/// cgroupsPath, another id).
fn cgroup_cookie(subsystems: &str) -> String {
    if subsystems.is_empty() {
        "skiff-cgroup2".into()
    } else {
        format!("skiff-cgroup-{subsystems}")
    }
}

/// `(mount point, hierarchy's subsystems)` of each cgroup mount of `pid`
/// that belongs to one of the container's hierarchies in `record`.
fn cgroup_mounts(pid: libc::pid_t, record: &cgroups::Record) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (head, tail) = l.split_once(" - ")?;
            let mut tail = tail.split(' ');
            let fstype = tail.next()?;
            let options: Vec<&str> = tail.nth(1)?.split(',').collect();
            let dir = match fstype {
                "cgroup2" => record.dirs.iter().find(|d| d.subsystems.is_empty()),
                "cgroup" => record.dirs.iter().find(|d| {
                    !d.subsystems.is_empty()
                        && d.subsystems.split(',').all(|c| options.contains(&c))
                }),
                _ => None,
            }?;
            Some((head.split(' ').nth(4)?.to_string(), dir.subsystems.clone()))
        })
        .collect()
}

/// The `external` entries of a dump: bind mounts by destination, cgroup
/// mounts by hierarchy, joined namespaces by inode.
pub fn for_dump(
    spec: &Spec,
    pid: libc::pid_t,
    cgroup: &cgroups::Record,
) -> Result<Vec<String>, CriuError> {
    let mut out: Vec<String> = bind_mounts(spec, Path::new("/"))
        .into_iter()
        .map(|(dest, _)| format!("mnt[{dest}]:{dest}"))
        .collect();
    out.extend(
        cgroup_mounts(pid, cgroup)
            .into_iter()
            .map(|(mp, subsystems)| format!("mnt[{mp}]:{}", cgroup_cookie(&subsystems))),
    );
    for (kind, _) in joined_namespaces(spec) {
        let Some((name, key)) = ns_key(kind) else {
            continue;
        };
        let path = format!("/proc/{pid}/ns/{name}");
        let ino = std::fs::metadata(&path)
            .map_err(|e| CriuError::Sys {
                what: path.clone(),
                source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?
            .ino();
        out.push(format!("{name}[{ino}]:{key}"));
    }
    Ok(out)
}

/// The `external` entries of a restore: each bind mount's destination
/// mapped back to its source on this host, each hierarchy's cgroup mount
/// to the new container's directory there.
pub fn for_restore(spec: &Spec, bundle: &Path, cgroup: &cgroups::Record) -> Vec<String> {
    let mut out: Vec<String> = bind_mounts(spec, bundle)
        .into_iter()
        .map(|(dest, source)| format!("mnt[{dest}]:{}", source.display()))
        .collect();
    out.extend(
        cgroup
            .dirs
            .iter()
            .map(|d| format!("mnt[{}]:{}", cgroup_cookie(&d.subsystems), d.path.display())),
    );
    out
}

/// The inherit_fd key of each joined namespace, with its path.
pub fn namespace_keys(spec: &Spec) -> Vec<(&'static str, PathBuf)> {
    joined_namespaces(spec)
        .into_iter()
        .filter_map(|(kind, path)| ns_key(kind).map(|(_, key)| (key, path)))
        .collect()
}

/// Mount ids of the container's mount namespace.
fn mount_ids(pid: libc::pid_t) -> Vec<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

/// The mount id of the file behind fd `fd` of `pid`.
fn fd_mount_id(pid: libc::pid_t, fd: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))?
        .trim()
        .parse()
        .ok()
}

/// The init's stdio as the image records it.
pub struct Stdio {
    /// `descriptors.json`, runc's format: pipes and sockets by their
    /// `pipe:[N]` names, a file on a host mount the container cannot see
    /// as `file[MNT:INO]`; what lies inside the container keeps its path.
    pub names: Vec<String>,
    /// The `file[...]` keys, external to the dump.
    pub external: Vec<String>,
    /// The kind of each host file (None for the rest), which restore's
    /// own stdio must match: CRIU reopens it and checks its mode.
    pub kinds: Vec<Option<&'static str>>,
}

/// Describes the init's stdio for the image. On restore, the pipes and
/// host files become the stdio of `restore` itself, as pipes do with
/// runc.
pub fn describe_stdio(pid: libc::pid_t) -> Stdio {
    let inside = mount_ids(pid);
    let mut names = Vec::with_capacity(3);
    let mut external = Vec::new();
    let mut kinds = Vec::with_capacity(3);
    for fd in 0..3 {
        let link = format!("/proc/{pid}/fd/{fd}");
        let target = std::fs::read_link(&link)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        let foreign =
            target.starts_with('/') && fd_mount_id(pid, fd).is_some_and(|m| !inside.contains(&m));
        match (foreign, std::fs::metadata(&link)) {
            (true, Ok(meta)) => {
                let mnt = fd_mount_id(pid, fd).unwrap_or_default();
                let key = format!("file[{mnt:x}:{:x}]", meta.ino());
                external.push(key.clone());
                names.push(key);
                kinds.push(Some(file_kind(&meta)));
            }
            _ => {
                names.push(target);
                kinds.push(None);
            }
        }
    }
    Stdio {
        names,
        external,
        kinds,
    }
}

/// The kind of file `meta` describes, in words.
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        "null device"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_dir() {
        "directory"
    } else {
        "regular file"
    }
}

/// Whether a stdio name from `describe_stdio` is handed to the restoring
/// process's own fd.
pub fn inherited(name: &str) -> bool {
    name.starts_with("pipe:") || name.starts_with("file[")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn bind_mounts_map_back_to_their_sources() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.2.1",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind"]},
                {"destination": "/rel", "source": "here", "options": ["bind", "ro"]}
            ],
            "linux": {"namespaces": [
                {"type": "network", "path": "/run/netns/x"},
                {"type": "ipc", "path": "/proc/1/ns/ipc"},
                {"type": "mount"}
            ]}
        }));
        let dir = |sub: &str, path: &str| cgroups::Dir {
            path: path.into(),
            mount: "/cg".into(),
            subsystems: sub.into(),
            created: vec![],
        };
        let record = cgroups::Record {
            path: "/skiff/c".into(),
            unified: false,
            unit: None,
            dirs: vec![
                dir("cpu,cpuacct", "/cg/cpu,cpuacct/skiff/c"),
                dir("", "/cg/unified/skiff/c"),
            ],
        };
        assert_eq!(
            for_restore(&s, Path::new("/b"), &record),
            [
                "mnt[/data]:/srv/data",
                "mnt[/rel]:/b/here",
                "mnt[skiff-cgroup-cpu,cpuacct]:/cg/cpu,cpuacct/skiff/c",
                "mnt[skiff-cgroup2]:/cg/unified/skiff/c"
            ]
        );
        assert_eq!(
            namespace_keys(&s),
            [("extRootNetNS", PathBuf::from("/run/netns/x"))]
        );
        assert!(inherited("pipe:[12]") && inherited("file[1f:2a]") && !inherited("/dev/null"));
    }
}
