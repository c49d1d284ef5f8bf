//! cgroup v1 backend: one directory per mounted hierarchy. On hybrid hosts
//! the cgroup2 mount is one more hierarchy the process is placed in.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::{
    mkdir_all, open_dir, read_procs, remove_created, write_pid, CgroupError, Dir, Manager, Record,
};

/// The v1 (and hybrid) backend. On a hybrid host the cgroup2 directory is
/// entered at clone time, like on v2; the v1 directories by the init
/// itself, or by the runtime when the init is in a user namespace and
/// cannot write the host's cgroup files.
pub struct V1 {
    record: Record,
    unified_fd: Option<OwnedFd>,
}

impl V1 {
    pub fn new(record: Record) -> V1 {
        V1 {
            record,
            unified_fd: None,
        }
    }

    /// The directories that still need the process after clone3.
    fn pending(&self, cloned: bool) -> impl Iterator<Item = &Dir> {
        self.record
            .dirs
            .iter()
            .filter(move |d| !(cloned && d.subsystems.is_empty()))
    }
}

/// A new cpuset cgroup starts with empty `cpus` and `mems`, and no task can
/// join it until they are set; copy them down from the parent.
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let current = std::fs::read_to_string(&own).map_err(|source| CgroupError::Read {
            path: own.clone(),
            source,
        })?;
        if !current.trim().is_empty() {
            continue;
        }
        let from = parent.join(file);
        let value = std::fs::read_to_string(&from)
            .map_err(|source| CgroupError::Read { path: from, source })?;
        std::fs::write(&own, value.trim())
            .map_err(|source| CgroupError::Write { path: own, source })?;
    }
    Ok(())
}

impl Manager for V1 {
    fn record(&self) -> &Record {
        &self.record
    }

    fn create(&mut self) -> Result<(), CgroupError> {
        for i in 0..self.record.dirs.len() {
            let dir = &self.record.dirs[i];
            let created = mkdir_all(&dir.mount, &dir.path);
            let created = match created {
                Ok(c) => c,
                Err(e) => {
                    let _ = self.destroy();
                    return Err(e);
                }
            };
            let is_cpuset = dir.subsystems.split(',').any(|s| s == "cpuset");
            self.record.dirs[i].created = created;
            if is_cpuset {
                for d in self.record.dirs[i].created.clone() {
                    if let Err(e) = inherit_cpuset(&d) {
                        let _ = self.destroy();
                        return Err(e);
                    }
                }
            }
        }
        if let Some(unified) = self.record.dirs.iter().find(|d| d.subsystems.is_empty()) {
            match open_dir(&unified.path) {
                Ok(fd) => self.unified_fd = Some(fd),
                Err(e) => {
                    let _ = self.destroy();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        self.unified_fd.as_ref().map(AsFd::as_fd)
    }

    fn add(&self, pid: libc::pid_t, cloned: bool) -> Result<(), CgroupError> {
        self.pending(cloned)
            .try_for_each(|d| write_pid(&d.path, "cgroup.procs", pid))
    }

    fn join_current(&self, cloned: bool) -> Result<(), CgroupError> {
        self.pending(cloned).try_for_each(|d| {
            let file = if d.subsystems.is_empty() {
                "cgroup.procs"
            } else {
                "tasks"
            };
            write_pid(&d.path, file, 0)
        })
    }

    fn procs(&self) -> Result<Vec<libc::pid_t>, CgroupError> {
        // Every hierarchy holds the same processes; prefer a v1 controller
        // (the cgroup2 mount of a hybrid host may be absent in old states).
        let dir = self
            .record
            .dirs
            .iter()
            .find(|d| !d.subsystems.is_empty())
            .or_else(|| self.record.dirs.first());
        dir.map_or(Ok(Vec::new()), |d| read_procs(&d.path))
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for d in &self.record.dirs {
            if let Some(e) = remove_created(&d.created) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
