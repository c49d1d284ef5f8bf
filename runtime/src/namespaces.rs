//! Which namespaces a container gets, and how: created by `clone3`, created
//! by `unshare` in the child, or joined by path. Paths are opened and their
//! type verified before anything forks.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, Spec};

/// Why the namespace configuration cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("linux.namespaces[{index}].path: {path}: {source}")]
    Open {
        index: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("linux.namespaces[{index}].path: {path} is not a {expected} namespace")]
    WrongType {
        index: usize,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("joining the {kind} namespace: {source}")]
    Join { kind: &'static str, source: Errno },
    #[error("{path}: {source}")]
    Inspect {
        path: String,
        source: std::io::Error,
    },
    #[error("joining the container's namespaces ({flags:?}): {source}")]
    JoinProcess { flags: CloneFlags, source: Errno },
    #[error("creating namespaces ({flags:?}): {source}")]
    Unshare { flags: CloneFlags, source: Errno },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    IdMap(#[from] crate::idmap::IdMapError),
}

/// The spec's `linux.namespaces` (empty when absent).
pub fn of_spec(spec: &Spec) -> &[LinuxNamespace] {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or_default()
}

/// True when the container gets a new mount namespace, not one joined by
/// path nor the runtime's own.
pub fn owns_mount_namespace(spec: &Spec) -> bool {
    of_spec(spec)
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Mount && n.path().is_none())
}

/// Every namespace type skiff creates and joins.
pub const ALL: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// The clone flag for a namespace type.
pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The spec's name for a namespace type, for messages.
pub fn type_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// The namespace's file in `/proc/<pid>/ns`.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Mount => "mnt",
        other => type_name(other),
    }
}

/// A namespace to join, already opened and verified.
#[derive(Debug)]
pub struct Joined {
    pub typ: LinuxNamespaceType,
    pub fd: OwnedFd,
}

/// How the container's namespaces will be set up.
#[derive(Debug, Default)]
pub struct Plan {
    /// Types created new for the container.
    pub new: Vec<LinuxNamespaceType>,
    /// Types joined by path, in spec order (user is always joined last).
    pub joined: Vec<Joined>,
}

impl Plan {
    /// Opens and verifies every `path`, for the spec's namespaces.
    pub fn from_spec(spec: &Spec) -> Result<Plan, NamespaceError> {
        let mut plan = Plan::default();
        for (index, ns) in of_spec(spec).iter().enumerate() {
            match ns.path() {
                None => plan.new.push(ns.typ()),
                Some(path) => plan.joined.push(Joined {
                    typ: ns.typ(),
                    fd: open_verified(index, path, ns.typ())?,
                }),
            }
        }
        // A joined user namespace goes last: joining it first would drop
        // the privileges needed to join namespaces the host owns.
        plan.joined
            .sort_by_key(|j| j.typ == LinuxNamespaceType::User);
        Ok(plan)
    }

    /// True when the container gets a namespace of this type, new or joined.
    pub fn has(&self, typ: LinuxNamespaceType) -> bool {
        self.is_new(typ) || self.joined(typ).is_some()
    }

    /// True when a namespace of this type is created for the container.
    pub fn is_new(&self, typ: LinuxNamespaceType) -> bool {
        self.new.contains(&typ)
    }

    /// The joined namespace of this type, if any.
    pub fn joined(&self, typ: LinuxNamespaceType) -> Option<&Joined> {
        self.joined.iter().find(|j| j.typ == typ)
    }

    /// Namespaces the child joins itself (pid and time are joined by the
    /// parent: both apply to children only).
    pub fn joined_by_child(&self) -> impl Iterator<Item = &Joined> {
        self.joined
            .iter()
            .filter(|j| !matches!(j.typ, LinuxNamespaceType::Pid | LinuxNamespaceType::Time))
    }

    /// True when every namespace can be created by the one `clone3`: the
    /// common case. Otherwise the child must join namespaces before it
    /// creates a user namespace (or must enter a joined user namespace), and
    /// a new pid namespace then costs one extra fork.
    pub fn single_clone(&self) -> bool {
        if self.joined(LinuxNamespaceType::User).is_some() {
            return false;
        }
        !(self.is_new(LinuxNamespaceType::User) && self.joined_by_child().next().is_some())
    }

    /// Flags for the namespaces created by the child with `unshare` (the slow
    /// path), or by `clone3` (the fast path). The cgroup namespace is never
    /// among them: it must be created after the child is in its cgroup, and
    /// the time namespace is made by the parent.
    pub fn creation_flags(&self) -> CloneFlags {
        self.new
            .iter()
            .filter(|t| !matches!(t, LinuxNamespaceType::Cgroup | LinuxNamespaceType::Time))
            .fold(CloneFlags::empty(), |acc, t| acc | clone_flag(*t))
    }
}

/// Opens a namespace path and checks it is a namespace of `typ`.
fn open_verified(
    index: usize,
    path: &Path,
    typ: LinuxNamespaceType,
) -> Result<OwnedFd, NamespaceError> {
    let file = File::open(path).map_err(|source| NamespaceError::Open {
        index,
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
    let actual = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if actual < 0 || actual != clone_flag(typ).bits() {
        return Err(NamespaceError::WrongType {
            index,
            path: path.to_path_buf(),
            expected: type_name(typ),
        });
    }
    Ok(file.into())
}

/// Joins one namespace.
pub fn join(joined: &Joined) -> Result<(), NamespaceError> {
    nix::sched::setns(joined.fd.as_fd(), clone_flag(joined.typ)).map_err(|source| {
        NamespaceError::Join {
            kind: type_name(joined.typ),
            source,
        }
    })
}

/// The namespaces process `pid` does not share with the caller, as clone
/// flags: what a process entering the container (`exec`) has to join.
/// A type the kernel lacks is skipped.
pub fn not_shared_with(pid: libc::pid_t) -> Result<CloneFlags, NamespaceError> {
    use std::os::unix::fs::MetadataExt;
    let mut flags = CloneFlags::empty();
    for typ in ALL {
        let name = proc_name(typ);
        let Ok(ours) = std::fs::metadata(format!("/proc/self/ns/{name}")) else {
            continue;
        };
        let path = format!("/proc/{pid}/ns/{name}");
        let theirs =
            std::fs::metadata(&path).map_err(|source| NamespaceError::Inspect { path, source })?;
        if (ours.dev(), ours.ino()) != (theirs.dev(), theirs.ino()) {
            flags |= clone_flag(typ);
        }
    }
    Ok(flags)
}

/// Joins the namespaces in `flags` of the process behind `pidfd`, all in
/// one `setns` (the kernel orders them, user namespace first).
pub fn join_process(pidfd: BorrowedFd<'_>, flags: CloneFlags) -> Result<(), NamespaceError> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::setns(pidfd, flags).map_err(|source| NamespaceError::JoinProcess { flags, source })
}

/// Creates the namespaces in `flags` for the calling process.
pub fn unshare(flags: CloneFlags) -> Result<(), NamespaceError> {
    nix::sched::unshare(flags).map_err(|source| NamespaceError::Unshare { flags, source })
}

/// A user namespace with these id maps, for id-mapped mounts: a child is
/// forked into a new user namespace, the maps are written, the namespace is
/// kept by fd and the child is released.
pub fn userns_with_maps(
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<OwnedFd, NamespaceError> {
    let fail = |source: Errno| NamespaceError::Unshare {
        flags: CloneFlags::CLONE_NEWUSER,
        source,
    };
    let (hold, release) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fail)?;
    // SAFETY: single-threaded caller; the child only blocks on a read and
    // _exits.
    let forked = unsafe { crate::syscalls::clone3(CloneFlags::CLONE_NEWUSER.bits() as u64, None) }
        .map_err(fail)?;
    let (pid, _pidfd) = match forked {
        crate::syscalls::Forked::Child => {
            drop(release);
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(hold.as_fd(), &mut byte);
            // SAFETY: leaving the forked child without running the parent's
            // destructors.
            unsafe { libc::_exit(0) }
        }
        crate::syscalls::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(hold);
    let result = crate::idmap::IdMaps::direct(uid, gid)
        .write(pid)
        .map_err(NamespaceError::from)
        .and_then(|()| {
            let path = format!("/proc/{pid}/ns/user");
            File::open(&path)
                .map(OwnedFd::from)
                .map_err(|source| NamespaceError::Write { path, source })
        });
    drop(release);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    result
}

/// True when the caller may come back to its own namespace of `typ` after
/// a temporary `setns`: it is root in the user namespace that owns it.
/// Not so for a runtime started by a user, nor for one that an engine
/// started as root of the engine's own user namespace while the pid
/// namespace around it is the host's (rootless Podman).
pub fn may_return(typ: LinuxNamespaceType) -> bool {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    let Ok(ns) = File::open(format!("/proc/self/ns/{}", proc_name(typ))) else {
        return false;
    };
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd.
    let owner = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_USERNS) };
    if owner < 0 {
        // EPERM: the owner is an ancestor of our user namespace.
        return false;
    }
    // SAFETY: the ioctl returned a new fd that nothing else owns.
    let owner = File::from(unsafe { OwnedFd::from_raw_fd(owner) });
    match (owner.metadata(), std::fs::metadata("/proc/self/ns/user")) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Saves the caller's namespace of `typ` so it can be restored after a
/// temporary `setns`/`unshare` that only matters for the next child.
pub fn current(typ: LinuxNamespaceType) -> Result<OwnedFd, NamespaceError> {
    let path = format!("/proc/self/ns/{}", proc_name(typ));
    File::open(&path)
        .map(OwnedFd::from)
        .map_err(|source| NamespaceError::Write { path, source })
}

/// Writes the clock offsets of a time namespace the caller just created (and
/// that no process has entered yet).
pub fn write_time_offsets(
    offsets: &std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset>,
) -> Result<(), NamespaceError> {
    let mut text = String::new();
    for (clock, offset) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            offset.secs().unwrap_or(0),
            offset.nanosecs().unwrap_or(0)
        ));
    }
    let path = "/proc/self/timens_offsets".to_string();
    std::fs::write(&path, text).map_err(|source| NamespaceError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: serde_json::Value) -> Plan {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2", "linux": {"namespaces": json}
        }))
        .unwrap();
        Plan::from_spec(&spec).unwrap()
    }

    #[test]
    fn all_new_is_one_clone() {
        let p = plan(
            serde_json::json!([{"type": "pid"}, {"type": "user"}, {"type": "mount"}, {"type": "cgroup"}]),
        );
        assert!(p.single_clone());
        let flags = p.creation_flags();
        assert!(flags.contains(
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS
        ));
        assert!(!flags.contains(CloneFlags::CLONE_NEWCGROUP));
    }

    #[test]
    fn joining_with_a_new_user_namespace_needs_the_slow_path() {
        let p = plan(
            serde_json::json!([{"type": "user"}, {"type": "mount"}, {"type": "network", "path": "/proc/self/ns/net"}]),
        );
        assert!(!p.single_clone());
        let p = plan(
            serde_json::json!([{"type": "mount"}, {"type": "network", "path": "/proc/self/ns/net"}]),
        );
        assert!(p.single_clone());
    }

    #[test]
    fn joined_user_goes_last() {
        let p = plan(
            serde_json::json!([{"type": "user", "path": "/proc/self/ns/user"}, {"type": "ipc", "path": "/proc/self/ns/ipc"}]),
        );
        assert_eq!(p.joined.last().unwrap().typ, LinuxNamespaceType::User);
        assert!(!p.single_clone());
    }

    #[test]
    fn wrong_type_is_named() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "network", "path": "/proc/self/ns/ipc"}]}
        }))
        .unwrap();
        let err = Plan::from_spec(&spec).unwrap_err().to_string();
        assert_eq!(
            err,
            "linux.namespaces[0].path: /proc/self/ns/ipc is not a network namespace"
        );
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "network", "path": "/etc/hostname"}]}
        }))
        .unwrap();
        let err = Plan::from_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("is not a network namespace"), "{err}");
    }
}
