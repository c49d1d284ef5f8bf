//! cgroup v1 backend: one directory per mounted hierarchy. On hybrid hosts
//! the cgroup2 mount is one more hierarchy the process is placed in.

use std::os::fd::BorrowedFd;
use std::path::Path;

use super::{mkdir_all, read_procs, remove_created, write_pid, CgroupError, Manager, Record};

/// The v1 (and hybrid) backend.
pub struct V1 {
    record: Record,
}

impl V1 {
    pub fn new(record: Record) -> V1 {
        V1 { record }
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
        Ok(())
    }

    fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn add(&self, pid: libc::pid_t) -> Result<(), CgroupError> {
        self.record
            .dirs
            .iter()
            .try_for_each(|d| write_pid(&d.path, pid))
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
