//! cgroup v2 backend: one directory in the unified hierarchy, entered at
//! clone time with `CLONE_INTO_CGROUP`, so the child never runs a single
//! instruction outside its cgroup.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{
    mkdir_all, open_dir, read_procs, remove_created, write_pid, CgroupError, Manager, Record,
};

/// The unified-hierarchy backend.
pub struct V2 {
    record: Record,
    dir_fd: Option<OwnedFd>,
}

impl V2 {
    pub fn new(record: Record) -> V2 {
        V2 {
            record,
            dir_fd: None,
        }
    }
}

impl Manager for V2 {
    fn record(&self) -> &Record {
        &self.record
    }

    fn create(&mut self) -> Result<(), CgroupError> {
        let dir = &self.record.dirs[0];
        self.record.dirs[0].created = mkdir_all(&dir.mount, &dir.path)?;
        match open_dir(&self.record.dirs[0].path) {
            Ok(fd) => {
                self.dir_fd = Some(fd);
                Ok(())
            }
            Err(e) => {
                let _ = self.destroy();
                Err(e)
            }
        }
    }

    fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        self.dir_fd.as_ref().map(AsFd::as_fd)
    }

    fn add(&self, pid: libc::pid_t, cloned: bool) -> Result<(), CgroupError> {
        if cloned {
            return Ok(());
        }
        write_pid(&self.record.dirs[0].path, "cgroup.procs", pid)
    }

    fn join_current(&self, cloned: bool) -> Result<(), CgroupError> {
        self.add(0, cloned)
    }

    fn procs(&self) -> Result<Vec<libc::pid_t>, CgroupError> {
        read_procs(&self.record.dirs[0].path)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        remove_created(&self.record.dirs[0].created).map_or(Ok(()), Err)
    }
}
