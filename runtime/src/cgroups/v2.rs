//! cgroup v2 backend: one directory in the unified hierarchy, entered at
//! clone time with `CLONE_INTO_CGROUP`, so the child never runs a single
//! instruction outside its cgroup.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::stats::{self, Stats};
use super::{
    bpf, devices, mkdir_all, open_dir, read_procs, remove_created, resources, signal_pids,
    wait_until, write_pid, write_value, CgroupError, Manager, Record,
};

/// Which controllers a cgroup is to be given.
enum Wanted<'a> {
    /// Every one the hierarchy has, as runc offers them, so usage of each
    /// kind can be read (stats) even without a limit of that kind. Best
    /// effort, like runc: a controller a level refuses (its processes, a
    /// threaded subtree) is left out.
    All,
    /// Those the container's limits need: a refusal is an error.
    Needed(&'a [&'a str]),
}

/// Makes controllers available in the container's directory: each
/// ancestor below the mount must list them in `cgroup.subtree_control`
/// (v2's "no internal processes" rule means a runtime has to enable them
/// on the way down, as runc does).
fn enable_controllers(mount: &Path, dir: &Path, wanted: Wanted<'_>) -> Result<(), CgroupError> {
    let Ok(rel) = dir.strip_prefix(mount) else {
        return Ok(());
    };
    let mut parent = mount.to_path_buf();
    for part in rel.components() {
        let read = |f: &str| std::fs::read_to_string(parent.join(f)).unwrap_or_default();
        let enabled = read("cgroup.subtree_control");
        let missing: Vec<String> = read("cgroup.controllers")
            .split_whitespace()
            .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
            .filter(|c| match &wanted {
                Wanted::All => true,
                Wanted::Needed(needed) => needed.contains(c),
            })
            .map(|c| format!("+{c}"))
            .collect();
        match wanted {
            Wanted::Needed(_) => {
                for m in &missing {
                    write_value(&parent, "cgroup.subtree_control", m, "linux.resources")?;
                }
            }
            Wanted::All => {
                let control = parent.join("cgroup.subtree_control");
                if !missing.is_empty() && std::fs::write(&control, missing.join(" ")).is_err() {
                    for m in &missing {
                        let _ = std::fs::write(&control, m);
                    }
                }
            }
        }
        parent.push(part);
    }
    Ok(())
}

/// The controller a v2 interface file belongs to (`memory.max` -> memory).
fn controller_of(file: &str) -> Option<&str> {
    let c = file.split('.').next()?;
    (c != "cgroup").then_some(c)
}

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

    /// Records directories made for this cgroup by someone else (the
    /// systemd driver), for `destroy` to remove.
    pub fn set_created(&mut self, created: Vec<std::path::PathBuf>) {
        self.record.dirs[0].created = created;
    }

    /// Create's check of a cgroup it may have found in place: one set to
    /// freeze, or frozen by a parent, would hold the init forever and is
    /// refused, as runc refuses it; a busy one gets runc's warning.
    fn check_taken_over(&self) -> Result<(), CgroupError> {
        let dir = &self.record.dirs[0].path;
        let own = std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap_or_default();
        if own.trim() == "1" {
            return Err(CgroupError::Frozen {
                path: dir.join("cgroup.freeze"),
                state: "1".into(),
            });
        }
        if self.frozen() {
            return Err(CgroupError::Frozen {
                path: dir.join("cgroup.events"),
                state: "frozen 1 (a parent cgroup is frozen)".into(),
            });
        }
        super::warn_if_busy(&self.record);
        Ok(())
    }
}

impl Manager for V2 {
    fn record(&self) -> &Record {
        &self.record
    }

    fn create(&mut self) -> Result<(), CgroupError> {
        let dir = &self.record.dirs[0];
        self.record.dirs[0].created = mkdir_all(&dir.mount, &dir.path)?;
        if let Err(e) = self.check_taken_over() {
            let _ = self.destroy();
            return Err(e);
        }
        let dir = &self.record.dirs[0];
        // Best effort: cannot fail.
        let _ = enable_controllers(&dir.mount, &dir.path, Wanted::All);
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

    fn attach(&mut self) -> Result<(), CgroupError> {
        self.dir_fd = Some(open_dir(&self.record.dirs[0].path)?);
        Ok(())
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

    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        for f in resources::ignored_on_v2(res) {
            crate::warn!("{f}: cgroup v2 has no such setting; not applied (as runc does)");
        }
        super::check_hugepage_sizes(res)?;
        super::check_before_update(res, || {
            stats::read_u64(&self.record.dirs[0].path, "memory.current")
        })?;
        let writes = resources::v2(res)?;
        let dir = &self.record.dirs[0];
        let mut wanted: Vec<&str> = writes
            .iter()
            .filter_map(|w| controller_of(&w.file))
            .collect();
        wanted.sort();
        wanted.dedup();
        enable_controllers(&dir.mount, &dir.path, Wanted::Needed(&wanted))?;
        for w in &writes {
            if w.alt.is_some() {
                let (file, value) = w.target(&dir.path)?;
                write_value(&dir.path, file, value, w.field)?;
                continue;
            }
            if !dir.path.join(&w.file).exists() {
                return Err(CgroupError::NoController {
                    field: w.field.to_string(),
                    controller: controller_of(&w.file).unwrap_or("?").to_string(),
                });
            }
            write_value(&dir.path, &w.file, &w.value, w.field)?;
        }
        if let Some(policy) = devices::Policy::of(res.devices().as_deref())? {
            let fd = match &self.dir_fd {
                Some(fd) => fd.try_clone().map_err(CgroupError::DeviceFilter)?,
                None => open_dir(&dir.path)?,
            };
            bpf::set_device_filter(fd.as_fd(), &devices::program(&policy))
                .map_err(CgroupError::DeviceFilter)?;
        }
        Ok(())
    }

    fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = &self.record.dirs[0].path;
        write_value(
            dir,
            "cgroup.freeze",
            if frozen { "1" } else { "0" },
            "cgroup.freeze",
        )?;
        wait_until(dir, || self.frozen() == frozen)
    }

    fn frozen(&self) -> bool {
        stats::read_keyed(&self.record.dirs[0].path, "cgroup.events").get("frozen") == Some(&1)
    }

    fn stats(&self) -> Stats {
        let d = &self.record.dirs[0].path;
        let mut s = Stats::default();
        let cpu = stats::read_keyed(d, "cpu.stat");
        let get =
            |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
        s.cpu.usage.total = get(&cpu, "usage_usec") * 1000;
        s.cpu.usage.user = get(&cpu, "user_usec") * 1000;
        s.cpu.usage.kernel = get(&cpu, "system_usec") * 1000;
        s.cpu.throttling.periods = get(&cpu, "nr_periods");
        s.cpu.throttling.throttled_periods = get(&cpu, "nr_throttled");
        s.cpu.throttling.throttled_time = get(&cpu, "throttled_usec") * 1000;
        let events = stats::read_keyed(d, "memory.events");
        s.memory.usage = stats::MemoryEntry {
            limit: stats::read_u64(d, "memory.max"),
            usage: stats::read_u64(d, "memory.current"),
            max: stats::read_u64(d, "memory.peak"),
            failcnt: get(&events, "max"),
        };
        s.memory.swap = stats::MemoryEntry {
            limit: stats::read_u64(d, "memory.swap.max"),
            usage: stats::read_u64(d, "memory.swap.current"),
            max: stats::read_u64(d, "memory.swap.peak"),
            failcnt: 0,
        };
        s.memory.raw = stats::read_keyed(d, "memory.stat");
        s.memory.cache = get(&s.memory.raw, "file");
        s.pids.current = stats::read_u64(d, "pids.current");
        s.pids.limit = stats::read_u64(d, "pids.max");
        let (bytes, ios) =
            stats::parse_io_stat(&std::fs::read_to_string(d.join("io.stat")).unwrap_or_default());
        s.blkio.io_service_bytes_recursive = bytes;
        s.blkio.io_serviced_recursive = ios;
        for size in stats::hugepage_sizes() {
            let events = stats::read_keyed(d, &format!("hugetlb.{size}.events"));
            let entry = stats::Hugetlb {
                usage: stats::read_u64(d, &format!("hugetlb.{size}.current")),
                max: stats::read_u64(d, &format!("hugetlb.{size}.max")),
                failcnt: get(&events, "max"),
            };
            s.hugetlb.insert(size, entry);
        }
        s
    }

    fn oom_kills(&self) -> u64 {
        stats::read_keyed(&self.record.dirs[0].path, "memory.events")
            .get("oom_kill")
            .copied()
            .unwrap_or(0)
    }

    fn oom_watch(&self) -> Option<OwnedFd> {
        super::oom::watch_v2(&self.record.dirs[0].path).ok()
    }

    fn signal_all(&self, signal: libc::c_int) -> Result<(), CgroupError> {
        let dir = &self.record.dirs[0].path;
        if signal == libc::SIGKILL && dir.join("cgroup.kill").exists() {
            return write_value(dir, "cgroup.kill", "1", "cgroup.kill");
        }
        let thaw = !self.frozen();
        self.freeze(true)?;
        let result = self.procs().and_then(|pids| signal_pids(&pids, signal));
        if thaw {
            self.freeze(false)?;
        }
        result
    }
}
