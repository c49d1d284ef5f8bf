//! Cgroup placement. One `Manager` trait, a v2 backend for the unified
//! hierarchy and a v1 backend for hosts that mount v1 controllers (including
//! hybrid hosts, where it also places the process in the cgroup2 mount).
//! The backend is chosen by detecting the host; callers never branch on the
//! version. What was created is recorded in the container state, so delete
//! removes exactly those directories and never a cgroup it did not create.

mod bpf;
pub mod devices;
pub mod hierarchy;
pub mod oom;
pub mod resources;
pub mod stats;
pub mod systemd;
mod v1;
mod v2;

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use hierarchy::Hierarchy;

/// Why a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading the host's cgroup mounts: {0}")]
    Detect(std::io::Error),
    #[error("no cgroup hierarchy is mounted on this host")]
    NoHierarchy,
    #[error("creating cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("moving pid {pid} into cgroup {path}: {source}")]
    Join {
        path: PathBuf,
        pid: libc::pid_t,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("removing cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Resource(#[from] resources::ResourceError),
    #[error("{field}: writing {value:?} to {path}: {source}")]
    Apply {
        field: String,
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("{field}: the {controller} controller is not available on this host")]
    NoController { field: String, controller: String },
    #[error(transparent)]
    DeviceRule(#[from] devices::DeviceRuleError),
    #[error("linux.resources.devices: {0}")]
    DeviceFilter(std::io::Error),
    #[error("signalling pid {pid}: {source}")]
    Signal {
        pid: libc::pid_t,
        source: std::io::Error,
    },
    #[error("{path}: timed out waiting for the freezer")]
    Timeout { path: PathBuf },
    #[error("container's cgroup is unexpectedly frozen: {path} is {state}")]
    Frozen { path: PathBuf, state: String },
    #[error("{field}: cgroup limits need a cgroup this user may write, and none is delegated to it here ({cause})")]
    NotDelegated {
        field: &'static str,
        cause: Box<CgroupError>,
    },
    #[error(transparent)]
    Systemd(#[from] systemd::SystemdError),
}

impl CgroupError {
    /// True when the kernel refused for want of permission, not because
    /// something is wrong with the cgroup.
    fn is_permission(&self) -> bool {
        let source = match self {
            CgroupError::Create { source, .. }
            | CgroupError::Join { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Apply { source, .. } => source,
            _ => return false,
        };
        matches!(
            source.raw_os_error(),
            Some(libc::EACCES | libc::EPERM | libc::EROFS)
        )
    }
}

/// One directory of the container's cgroup, in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dir {
    /// The container's cgroup directory.
    pub path: PathBuf,
    /// The hierarchy's mount point on the host.
    pub mount: PathBuf,
    /// v1 subsystems (`memory`, `name=systemd`); empty for cgroup2.
    pub subsystems: String,
    /// Directories skiff created for it, outermost first; only these are
    /// removed on delete.
    #[serde(default)]
    pub created: Vec<PathBuf>,
}

/// The container's cgroup, as stored in its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The cgroup path within each hierarchy (`linux.cgroupsPath`, resolved).
    pub path: PathBuf,
    /// True on a pure cgroup v2 host.
    pub unified: bool,
    /// One directory per hierarchy.
    pub dirs: Vec<Dir>,
    /// The systemd unit that owns the cgroup (`--systemd-cgroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// What every cgroup backend does for a container.
pub trait Manager {
    /// The record to store in the container state.
    fn record(&self) -> &Record;
    /// Creates the directories.
    fn create(&mut self) -> Result<(), CgroupError>;
    /// Opens what `clone_target` hands out, for a cgroup that exists
    /// already (`exec` starting a process in a live container).
    fn attach(&mut self) -> Result<(), CgroupError>;
    /// A cgroup2 directory fd for `clone3(CLONE_INTO_CGROUP)`, when the
    /// backend can start the child directly in (part of) its cgroup.
    fn clone_target(&self) -> Option<BorrowedFd<'_>>;
    /// Runtime side: moves `pid` into every directory that `clone3` did not
    /// already place it in (`cloned`: CLONE_INTO_CGROUP was used).
    fn add(&self, pid: libc::pid_t, cloned: bool) -> Result<(), CgroupError>;
    /// Init side, while still single-threaded and before it changes its
    /// mounts: moves the calling process itself. On v1 this writes "0" to
    /// `tasks`: migrating the calling thread alone needs no global lock,
    /// where writing a pid to `cgroup.procs` can wait for a whole RCU grace
    /// period (milliseconds) on a quiet machine.
    fn join_current(&self, cloned: bool) -> Result<(), CgroupError>;
    /// Runtime side, once the init exists and has been told to go on:
    /// hands it to a manager that owns the cgroup (systemd starts its
    /// unit with it here). Nothing for the cgroupfs backends.
    fn adopt(&self, _pid: libc::pid_t) -> Result<(), CgroupError> {
        Ok(())
    }
    /// Runtime side: waits until what `adopt` asked for is done (systemd's
    /// unit exists, with the init in it and the resources applied). Called
    /// where the container's cgroup must be in place: before the init
    /// goes on when it was not cloned into it, before hooks, before
    /// `create` returns. Nothing for the cgroupfs backends.
    fn settle(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    /// The pids in the cgroup.
    fn procs(&self) -> Result<Vec<libc::pid_t>, CgroupError>;
    /// Removes the directories skiff created.
    fn destroy(&self) -> Result<(), CgroupError>;
    /// Applies `linux.resources` (at create and for `update`).
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Freezes or thaws every process, and waits until that is done.
    fn freeze(&self, frozen: bool) -> Result<(), CgroupError>;
    /// True when the cgroup is frozen.
    fn frozen(&self) -> bool;
    /// Resource usage, in `runc events` form.
    fn stats(&self) -> stats::Stats;
    /// How many processes the OOM killer has killed in the cgroup so far.
    fn oom_kills(&self) -> u64;
    /// An fd that polls readable on memory events (see `oom`), when the
    /// memory controller is there.
    fn oom_watch(&self) -> Option<OwnedFd>;
    /// Sends `signal` to every process, with no process escaping by
    /// forking meanwhile (v2 `cgroup.kill` for SIGKILL, otherwise signals
    /// sent while the cgroup is frozen).
    fn signal_all(&self, signal: libc::c_int) -> Result<(), CgroupError>;
}

/// Writes one value to a cgroup file, naming the spec field on failure.
fn write_value(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), CgroupError> {
    std::fs::write(dir.join(file), value).map_err(|source| CgroupError::Apply {
        field: field.to_string(),
        path: dir.join(file),
        value: value.to_string(),
        source,
    })
}

/// The record of a sub-cgroup of `record` (`exec --cgroup`): each entry is
/// `PATH` (every hierarchy) or `CONTROLLER[,CONTROLLER...]:PATH` (the v1
/// hierarchies holding those controllers; on cgroup2 the controllers are
/// ignored). PATH is relative to the container's cgroup and must exist.
pub fn sub_cgroup(record: &Record, entries: &[String]) -> Result<Record, CgroupError> {
    let mut out = record.clone();
    for entry in entries {
        let (controllers, path) = match entry.split_once(':') {
            Some((c, p)) => (Some(c.split(',').collect::<Vec<_>>()), p),
            None => (None, entry.as_str()),
        };
        let rel = Path::new(path.trim_start_matches('/'));
        let bad = |reason: &str| {
            CgroupError::Resource(resources::ResourceError {
                field: "--cgroup",
                reason: format!("{entry:?}: {reason}"),
            })
        };
        if rel.as_os_str().is_empty()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(bad("the path must name a cgroup below the container's"));
        }
        let mut matched = false;
        for (i, dir) in out.dirs.iter_mut().enumerate() {
            let subsystems: Vec<&str> = dir.subsystems.split(',').collect();
            // The cgroup2 directory of a hybrid host only follows a path
            // given without controllers; on pure v2 it always does.
            let wanted = if dir.subsystems.is_empty() {
                record.unified || controllers.is_none()
            } else {
                controllers
                    .as_ref()
                    .is_none_or(|c| c.iter().any(|c| subsystems.contains(c)))
            };
            if !wanted {
                continue;
            }
            let target = record.dirs[i].path.join(rel);
            if !target.is_dir() {
                return Err(bad(&format!("{} does not exist", target.display())));
            }
            dir.path = target;
            matched = true;
        }
        if !matched {
            return Err(bad("no hierarchy has those controllers"));
        }
    }
    if let Some(first) = out.dirs.first() {
        out.path = first
            .path
            .strip_prefix(&first.mount)
            .map_or(out.path.clone(), |p| Path::new("/").join(p));
    }
    Ok(out)
}

/// Refuses hugepage sizes this host does not have (the limit would go to a
/// file that does not exist, with a less helpful error).
fn check_hugepage_sizes(res: &LinuxResources) -> Result<(), CgroupError> {
    let limits = res.hugepage_limits().as_deref().unwrap_or_default();
    if limits.is_empty() {
        return Ok(());
    }
    let host = stats::hugepage_sizes();
    match limits.iter().find(|l| !host.contains(l.page_size())) {
        Some(l) => Err(resources::ResourceError {
            field: "linux.resources.hugepageLimits.pageSize",
            reason: format!(
                "{} is not a hugepage size of this host ({})",
                l.page_size(),
                host.join(", ")
            ),
        }
        .into()),
        None => Ok(()),
    }
}

/// `memory.checkBeforeUpdate`: a new limit below what the cgroup already
/// uses is refused instead of written (writing it would make the kernel
/// reclaim or OOM-kill to get there).
fn check_before_update(
    res: &LinuxResources,
    usage: impl FnOnce() -> u64,
) -> Result<(), CgroupError> {
    let Some(m) = res.memory() else {
        return Ok(());
    };
    let Some(limit) = m.limit().filter(|l| *l > 0) else {
        return Ok(());
    };
    if m.check_before_update() != Some(true) {
        return Ok(());
    }
    let usage = usage();
    if (limit as u64) < usage {
        return Err(resources::ResourceError {
            field: "linux.resources.memory.limit",
            reason: format!(
                "{limit} is below the current usage of {usage} bytes (checkBeforeUpdate)"
            ),
        }
        .into());
    }
    Ok(())
}

/// runc's warning for a container's cgroup found with processes in it
/// (create carries on: they share the container's limits from now on).
/// Directories this create made are new and empty: not read.
fn warn_if_busy(record: &Record) {
    let mut pids: Vec<libc::pid_t> = record
        .dirs
        .iter()
        .filter(|d| d.created.last() != Some(&d.path))
        .filter_map(|d| read_procs(&d.path).ok())
        .flatten()
        .collect();
    pids.sort_unstable();
    pids.dedup();
    if !pids.is_empty() {
        crate::warn!(
            "container's cgroup is not empty: {} process(es) found in {}",
            pids.len(),
            record.path.display()
        );
    }
}

/// Signals each pid, ignoring those already gone.
fn signal_pids(pids: &[libc::pid_t], signal: libc::c_int) -> Result<(), CgroupError> {
    for pid in pids {
        // SAFETY: kill with a plain pid and signal number.
        if unsafe { libc::kill(*pid, signal) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(CgroupError::Signal {
                    pid: *pid,
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// Polls `done` until it holds (freezing is asynchronous).
fn wait_until(what: &Path, mut done: impl FnMut() -> bool) -> Result<(), CgroupError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut delay = std::time::Duration::from_micros(100);
    while !done() {
        if std::time::Instant::now() > deadline {
            return Err(CgroupError::Timeout {
                path: what.to_path_buf(),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(10));
    }
    Ok(())
}

/// The default cgroup path: one `skiff` parent, one child per container.
pub fn default_path(id: &str) -> PathBuf {
    Path::new("/skiff").join(id)
}

/// Resolves `linux.cgroupsPath` in a hierarchy: absolute paths are used as
/// they are, relative ones are relative to this process's own cgroup.
fn resolve(hierarchy: &Hierarchy, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        hierarchy.own.join(path)
    }
}

/// `--rootless` on cgroup v2, runc's rule: a user's cgroups are a subtree
/// delegated to it (systemd's `user@.service`, `Delegate=yes`), and its
/// own cgroup holds processes (this runtime's, its shell's), which the
/// "no internal processes" rule forbids beside a child with controllers.
/// A relative path, and the default (the container's id), go under the
/// parent of the caller's cgroup instead.
fn resolve_delegated(hierarchy: &Hierarchy, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    hierarchy.own.parent().unwrap_or(Path::new("/")).join(path)
}

/// Who manages the container's cgroup.
pub enum Driver<'a> {
    /// skiff itself, through the cgroup files.
    Cgroupfs,
    /// systemd (`--systemd-cgroup`); the config's annotations may carry
    /// unit properties.
    Systemd {
        annotations: &'a HashMap<String, String>,
    },
}

/// Plans the container's cgroup on this host: detects the hierarchies and
/// returns the backend that fits them (`rootless`: the caller's cgroups
/// are what is delegated to it, if anything). Nothing is created yet.
pub fn for_container(
    cgroups_path: Option<&Path>,
    id: &str,
    driver: Driver<'_>,
    rootless: bool,
) -> Result<Box<dyn Manager>, CgroupError> {
    if let Driver::Systemd { annotations } = driver {
        // Checked first: on a host without systemd, that is the error.
        if !systemd::systemd_running() {
            return Err(systemd::SystemdError::NotRunning.into());
        }
        let hierarchies = hierarchy::detect().map_err(CgroupError::Detect)?;
        let path = cgroups_path.map(|p| p.to_string_lossy());
        // A user's units belong to its own systemd instance; root in a
        // user namespace is a user too, unless it is the host's root.
        let user = rootless
            .then(crate::rootless::host_uid)
            .filter(|uid| *uid != 0);
        return Ok(Box::new(systemd::Systemd::plan(
            &hierarchies,
            path.as_deref(),
            id,
            annotations,
            user,
        )?));
    }
    let hierarchies = hierarchy::detect().map_err(CgroupError::Detect)?;
    plan(&hierarchies, cgroups_path, id, rootless)
}

fn plan(
    hierarchies: &[Hierarchy],
    cgroups_path: Option<&Path>,
    id: &str,
    rootless: bool,
) -> Result<Box<dyn Manager>, CgroupError> {
    if hierarchies.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    let unified = hierarchies.iter().all(Hierarchy::is_v2);
    let delegated = rootless && unified;
    let requested = match cgroups_path {
        Some(p) => p.to_path_buf(),
        None if delegated => PathBuf::from(id),
        None => default_path(id),
    };
    let mut dirs = Vec::with_capacity(hierarchies.len());
    let mut path = requested.clone();
    for h in hierarchies {
        let resolved = if delegated {
            resolve_delegated(h, &requested)
        } else {
            resolve(h, &requested)
        };
        if h.is_v2() || dirs.is_empty() {
            path = resolved.clone();
        }
        dirs.push(Dir {
            path: h.dir_of(&resolved),
            mount: h.mount.clone(),
            subsystems: h.subsystems.clone(),
            created: Vec::new(),
        });
    }
    let record = Record {
        path,
        unified,
        dirs,
        unit: None,
    };
    Ok(from_record(record))
}

/// The first `linux.resources` field that asks the cgroup for a limit,
/// device rules aside, if any.
pub fn first_limit(res: Option<&LinuxResources>) -> Option<&'static str> {
    let res = res?;
    match resources::v2(res) {
        Ok(writes) => writes.first().map(|w| w.field),
        Err(e) => Some(e.field),
    }
}

/// `--rootless`, and the container's cgroup could not be made for want of
/// permission (nothing is delegated to the user): the container runs in
/// the runtime's own cgroup, as with runc, unless limits were asked for.
pub fn without_delegation(
    cause: CgroupError,
    res: Option<&LinuxResources>,
) -> Result<Box<dyn Manager>, CgroupError> {
    if !cause.is_permission() {
        return Err(cause);
    }
    if let Some(field) = first_limit(res) {
        return Err(CgroupError::NotDelegated {
            field,
            cause: Box::new(cause),
        });
    }
    crate::debug!("{cause}: running the container without a cgroup of its own (rootless)");
    Ok(none())
}

/// The manager of a container without a cgroup of its own: nothing to
/// create, join, limit, freeze or remove.
pub fn none() -> Box<dyn Manager> {
    Box::new(v1::V1::new(Record {
        path: PathBuf::new(),
        unified: false,
        dirs: Vec::new(),
        unit: None,
    }))
}

/// The caller's own cgroup, in every hierarchy: what a `cgroup` mount
/// shows a container that has no cgroup of its own.
pub fn own() -> Record {
    let hierarchies = hierarchy::detect().unwrap_or_default();
    let dirs = hierarchies
        .iter()
        .map(|h| Dir {
            path: h.dir_of(&h.own),
            mount: h.mount.clone(),
            subsystems: h.subsystems.clone(),
            created: Vec::new(),
        })
        .collect();
    let main = hierarchies
        .iter()
        .find(|h| h.is_v2())
        .or(hierarchies.first());
    Record {
        path: main.map(|h| h.own.clone()).unwrap_or_default(),
        unified: !hierarchies.is_empty() && hierarchies.iter().all(Hierarchy::is_v2),
        dirs,
        unit: None,
    }
}

/// The backend for a stored record.
pub fn from_record(record: Record) -> Box<dyn Manager> {
    if let (Some(unit), true) = (record.unit.clone(), record.dirs.len() == 1) {
        return Box::new(systemd::Systemd::from_record(record, unit));
    }
    // The v2 backend has exactly one directory; a state without it (hand
    // edited, truncated) goes to the v1 backend, which copes with any
    // number, rather than panicking.
    if record.unified && record.dirs.len() == 1 {
        Box::new(v2::V2::new(record))
    } else {
        Box::new(v1::V1::new(record))
    }
}

/// The directories from `mount` down to `dir` that do not exist yet,
/// outermost first.
fn missing_dirs(mount: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| *d != mount && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// The record as it will be once `Manager::create` has made what is
/// missing now: what a runtime killed in the middle of creating must find
/// in the container's state for `delete` to remove.
pub fn to_be_created(record: &Record) -> Record {
    let mut planned = record.clone();
    for d in &mut planned.dirs {
        d.created = missing_dirs(&d.mount, &d.path);
        if record.unit.is_some() {
            // systemd makes (and keeps) a unit's missing slices; skiff
            // makes at most the unit's own directory (Systemd::create).
            d.created
                .retain(|c| *c == d.path && c.parent().is_some_and(Path::is_dir));
        }
    }
    planned
}

/// Creates `dir` and any missing parents below `mount`, returning the
/// directories that did not exist before, outermost first.
fn mkdir_all(mount: &Path, dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let missing = missing_dirs(mount, dir);
    let mut created = Vec::with_capacity(missing.len());
    for d in missing {
        match std::fs::create_dir(&d) {
            Ok(()) => created.push(d),
            // Another container created the shared parent first: fine.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                remove_created(&created);
                return Err(CgroupError::Create { path: d, source });
            }
        }
    }
    Ok(created)
}

/// Removes created directories innermost first. The innermost one is the
/// container's own and must go (its last tasks may still be leaving).
/// A shared parent is removed only if it is empty now: a busy one holds
/// other containers, whose lives waiting for would only stall this delete
/// (and every parent above it is busy too). It stays, as runc leaves its.
fn remove_created(created: &[PathBuf]) -> Option<CgroupError> {
    let mut first_error = None;
    for (i, d) in created.iter().enumerate().rev() {
        if i + 1 < created.len() {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            continue;
        }
        if let Err(source) = remove_dir_retrying(d) {
            if source.kind() != std::io::ErrorKind::NotFound {
                first_error = Some(CgroupError::Remove {
                    path: d.clone(),
                    source,
                });
            }
        }
    }
    first_error
}

/// rmdir that waits briefly for tasks that are still exiting to leave.
fn remove_dir_retrying(dir: &Path) -> std::io::Result<()> {
    let mut delay = std::time::Duration::from_micros(200);
    for _ in 0..12 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    std::fs::remove_dir(dir)
}

/// Writes `pid` into `dir/file` (`cgroup.procs` or `tasks`; pid 0 is the
/// caller).
fn write_pid(dir: &Path, file: &str, pid: libc::pid_t) -> Result<(), CgroupError> {
    std::fs::write(dir.join(file), pid.to_string()).map_err(|source| CgroupError::Join {
        path: dir.to_path_buf(),
        pid,
        source,
    })
}

/// Opens a cgroup2 directory for CLONE_INTO_CGROUP.
fn open_dir(path: &Path) -> Result<OwnedFd, CgroupError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|source| CgroupError::Create {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads the pids listed in `dir/cgroup.procs`.
fn read_procs(dir: &Path) -> Result<Vec<libc::pid_t>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text =
        std::fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn device_rules_are_no_limit() {
        assert_eq!(first_limit(None), None);
        let rules = resources(serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}));
        assert_eq!(first_limit(Some(&rules)), None);
        let pids = resources(serde_json::json!({"pids": {"limit": 10}, "devices": []}));
        assert_eq!(first_limit(Some(&pids)), Some("linux.resources.pids.limit"));
    }

    #[test]
    fn without_delegation_only_permission_errors_mean_no_cgroup() {
        let denied = || CgroupError::Create {
            path: "/sys/fs/cgroup/memory/skiff".into(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        let none = without_delegation(denied(), None).unwrap();
        assert!(none.record().dirs.is_empty());
        assert!(none.procs().unwrap().is_empty());
        let memory = resources(serde_json::json!({"memory": {"limit": 1048576}}));
        let err = without_delegation(denied(), Some(&memory))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "linux.resources.memory.limit: cgroup limits need a cgroup this user may write, and none \
             is delegated to it here (creating cgroup /sys/fs/cgroup/memory/skiff: Permission denied \
             (os error 13))"
        );
        let other = CgroupError::Create {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert!(matches!(
            without_delegation(other, None),
            Err(CgroupError::Create { .. })
        ));
    }

    fn hybrid() -> Vec<Hierarchy> {
        vec![
            Hierarchy {
                mount: "/sys/fs/cgroup/memory".into(),
                mount_root: "/".into(),
                subsystems: "memory".into(),
                own: "/process_api/abc".into(),
            },
            Hierarchy {
                mount: "/sys/fs/cgroup/unified".into(),
                mount_root: "/".into(),
                subsystems: String::new(),
                own: "/".into(),
            },
        ]
    }

    #[test]
    fn default_path_is_absolute_under_skiff() {
        let m = plan(&hybrid(), None, "c1", false).unwrap();
        let r = m.record();
        assert!(!r.unified);
        assert_eq!(
            r.dirs[0].path,
            PathBuf::from("/sys/fs/cgroup/memory/skiff/c1")
        );
        assert_eq!(
            r.dirs[1].path,
            PathBuf::from("/sys/fs/cgroup/unified/skiff/c1")
        );
        assert_eq!(r.path, PathBuf::from("/skiff/c1"));
    }

    #[test]
    fn relative_path_is_relative_to_own_cgroup() {
        let m = plan(&hybrid(), Some(Path::new("pod/c1")), "c1", false).unwrap();
        let r = m.record();
        assert_eq!(
            r.dirs[0].path,
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/pod/c1")
        );
        assert_eq!(
            r.dirs[1].path,
            PathBuf::from("/sys/fs/cgroup/unified/pod/c1")
        );
    }

    #[test]
    fn pure_v2_is_unified() {
        let h = vec![Hierarchy {
            mount: "/sys/fs/cgroup".into(),
            mount_root: "/".into(),
            subsystems: String::new(),
            own: "/init.scope".into(),
        }];
        let m = plan(&h, Some(Path::new("/a/b")), "x", false).unwrap();
        assert!(m.record().unified);
        assert_eq!(m.record().dirs[0].path, PathBuf::from("/sys/fs/cgroup/a/b"));
    }

    #[test]
    fn rootless_on_v2_goes_beside_the_callers_cgroup() {
        let h = vec![Hierarchy {
            mount: "/sys/fs/cgroup".into(),
            mount_root: "/".into(),
            subsystems: String::new(),
            own: "/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope".into(),
        }];
        let app =
            Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice");
        let dir = |path: Option<&str>| {
            let m = plan(&h, path.map(Path::new), "c1", true).unwrap();
            m.record().dirs[0].path.clone()
        };
        assert_eq!(dir(None), app.join("c1"));
        assert_eq!(dir(Some("pod/c1")), app.join("pod/c1"));
        assert_eq!(dir(Some("/a/b")), PathBuf::from("/sys/fs/cgroup/a/b"));
        // Only delegation on cgroup v2 moves it: v1 and hybrid hosts keep
        // the default, which a user may not create.
        let m = plan(&hybrid(), None, "c1", true).unwrap();
        assert_eq!(m.record().path, PathBuf::from("/skiff/c1"));
        let root = vec![Hierarchy {
            own: "/".into(),
            ..h[0].clone()
        }];
        let m = plan(&root, None, "c1", true).unwrap();
        assert_eq!(m.record().dirs[0].path, PathBuf::from("/sys/fs/cgroup/c1"));
    }

    #[test]
    fn no_hierarchy_is_an_error() {
        assert!(matches!(
            plan(&[], None, "x", false),
            Err(CgroupError::NoHierarchy)
        ));
    }

    #[test]
    fn sub_cgroups_by_controller() {
        let tmp = std::env::temp_dir().join(format!("skiff-sub-{}", std::process::id()));
        let record = Record {
            path: "/c".into(),
            unified: false,
            unit: None,
            dirs: vec![
                Dir {
                    path: tmp.join("memory/c"),
                    mount: tmp.join("memory"),
                    subsystems: "memory".into(),
                    created: vec![],
                },
                Dir {
                    path: tmp.join("pids/c"),
                    mount: tmp.join("pids"),
                    subsystems: "pids".into(),
                    created: vec![],
                },
            ],
        };
        std::fs::create_dir_all(tmp.join("memory/c/sub")).unwrap();
        std::fs::create_dir_all(tmp.join("pids/c")).unwrap();
        let sub = sub_cgroup(&record, &["memory:sub".into()]).unwrap();
        assert_eq!(sub.dirs[0].path, tmp.join("memory/c/sub"));
        assert_eq!(sub.dirs[1].path, tmp.join("pids/c"));
        let err = sub_cgroup(&record, &["sub".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        for bad in ["../x", "", "cpu:sub"] {
            assert!(sub_cgroup(&record, &[bad.into()]).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn mkdir_all_reports_only_new_dirs() {
        let tmp = std::env::temp_dir().join(format!("skiff-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("exists")).unwrap();
        let created = mkdir_all(&tmp, &tmp.join("exists/a/b")).unwrap();
        assert_eq!(created, vec![tmp.join("exists/a"), tmp.join("exists/a/b")]);
        assert!(remove_created(&created).is_none());
        assert!(tmp.join("exists").exists() && !tmp.join("exists/a").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_busy_parent_stays_and_the_leaf_goes() {
        let tmp = std::env::temp_dir().join(format!("skiff-cg-busy-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let created = mkdir_all(&tmp, &tmp.join("a/b/own")).unwrap();
        // Another container's directory beside ours.
        std::fs::create_dir(tmp.join("a/b/other")).unwrap();
        assert!(remove_created(&created).is_none());
        assert!(!tmp.join("a/b/own").exists() && tmp.join("a/b/other").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
