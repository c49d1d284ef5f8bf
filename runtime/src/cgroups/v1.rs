//! cgroup v1 backend: one directory per mounted hierarchy. On hybrid hosts
//! the cgroup2 mount is one more hierarchy the process is placed in.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::resources::{self, Write};
use super::stats::{self, Stats};
use super::{
    devices, mkdir_all, open_dir, read_procs, remove_created, signal_pids, wait_until, write_pid,
    write_value, CgroupError, Dir, Manager, Record,
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

    /// The directory of the hierarchy that has `controller`.
    fn dir_of(&self, controller: &str) -> Option<&Dir> {
        self.record
            .dirs
            .iter()
            .find(|d| d.subsystems.split(',').any(|s| s == controller))
    }

    /// The cgroup2 directory of a hybrid host, when it offers `controller`.
    fn unified_with(&self, controller: &str) -> Option<&Dir> {
        let d = self.record.dirs.iter().find(|d| d.subsystems.is_empty())?;
        let available =
            std::fs::read_to_string(d.path.join("cgroup.controllers")).unwrap_or_default();
        available
            .split_whitespace()
            .any(|c| c == controller)
            .then_some(d)
    }

    /// Where one value goes: the directory and file of the hierarchy that
    /// has its controller, or on a hybrid host the cgroup2 directory for
    /// hugetlb. A controller this host offers nowhere is an error naming
    /// the field, as with runc and crun: a limit asked for and not set
    /// would leave the container without it (runtime-spec, lifecycle
    /// step 2: an environment the runtime cannot create is an error).
    fn destination<'a>(&'a self, w: &'a Write) -> Result<(&'a Path, String, &'a str), CgroupError> {
        if let Some(d) = self.dir_of(w.controller) {
            let (file, value) = w.target(&d.path)?;
            return Ok((&d.path, file.to_string(), value));
        }
        if w.controller == "hugetlb" {
            if let Some(d) = self.unified_with("hugetlb") {
                let file = w.file.replace(".limit_in_bytes", ".max");
                return Ok((&d.path, file, &w.value));
            }
        }
        Err(CgroupError::NoController {
            field: w.field.to_string(),
            controller: w.controller.to_string(),
        })
    }

    /// Create's check of a cgroup it may have found in place: a frozen
    /// one (or one under a frozen parent) would hold the init forever and
    /// is refused, as runc refuses it; a busy one gets runc's warning.
    fn check_taken_over(&self) -> Result<(), CgroupError> {
        if let Some(d) = self.dir_of("freezer") {
            let path = d.path.join("freezer.state");
            let state = std::fs::read_to_string(&path).map_err(|source| CgroupError::Read {
                path: path.clone(),
                source,
            })?;
            let state = state.trim();
            if state == "FROZEN" || state == "FREEZING" {
                return Err(CgroupError::Frozen {
                    path,
                    state: state.to_string(),
                });
            }
        }
        super::warn_if_busy(&self.record);
        Ok(())
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
            let levels: Vec<PathBuf> = dir
                .path
                .ancestors()
                .take_while(|p| *p != dir.mount)
                .map(Path::to_path_buf)
                .collect();
            self.record.dirs[i].created = created;
            if is_cpuset {
                // Every level, outermost first, not only those made here:
                // a parent another container has just made may not have
                // its cpus and mems yet.
                for d in levels.iter().rev() {
                    if let Err(e) = inherit_cpuset(d) {
                        let _ = self.destroy();
                        return Err(e);
                    }
                }
            }
        }
        if let Err(e) = self.check_taken_over() {
            let _ = self.destroy();
            return Err(e);
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

    fn attach(&mut self) -> Result<(), CgroupError> {
        if let Some(unified) = self.record.dirs.iter().find(|d| d.subsystems.is_empty()) {
            self.unified_fd = Some(open_dir(&unified.path)?);
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

    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        super::check_hugepage_sizes(res)?;
        super::check_before_update(res, || {
            self.dir_of("memory")
                .map_or(0, |d| stats::read_u64(&d.path, "memory.usage_in_bytes"))
        })?;
        let mut writes = resources::v1(res)?;
        if let Some(d) = self.dir_of("memory") {
            resources::order_v1_memory(
                &mut writes,
                stats::read_u64(&d.path, "memory.limit_in_bytes"),
                d.path.join("memory.memsw.limit_in_bytes").exists(),
            );
        }
        // Every destination first: a refused field changes no file.
        let targets = writes
            .iter()
            .map(|w| self.destination(w))
            .collect::<Result<Vec<_>, _>>()?;
        for ((dir, file, value), w) in targets.iter().zip(&writes) {
            write_value(dir, file, value, w.field)?;
        }
        if let Some(policy) = devices::Policy::of(res.devices().as_deref())? {
            let Some(d) = self.dir_of("devices") else {
                return Err(CgroupError::NoController {
                    field: "linux.resources.devices".into(),
                    controller: "devices".into(),
                });
            };
            for (file, line) in policy.v1_writes() {
                write_value(&d.path, file, &line, "linux.resources.devices")?;
            }
        }
        Ok(())
    }

    fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let Some(d) = self.dir_of("freezer") else {
            return Err(CgroupError::NoController {
                field: "pause".into(),
                controller: "freezer".into(),
            });
        };
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write_value(&d.path, "freezer.state", want, "freezer.state")?;
        let state = d.path.join("freezer.state");
        wait_until(&state, || {
            std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == want)
        })
    }

    fn frozen(&self) -> bool {
        self.dir_of("freezer")
            .and_then(|d| std::fs::read_to_string(d.path.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN")
    }

    fn stats(&self) -> Stats {
        let mut s = Stats::default();
        if let Some(d) = self.dir_of("cpuacct") {
            s.cpu.usage.total = stats::read_u64(&d.path, "cpuacct.usage");
            s.cpu.usage.percpu = std::fs::read_to_string(d.path.join("cpuacct.usage_percpu"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // cpuacct.stat counts USER_HZ (100) ticks; runc reports ns.
            let ticks = stats::read_keyed(&d.path, "cpuacct.stat");
            s.cpu.usage.user = ticks.get("user").copied().unwrap_or(0) * 10_000_000;
            s.cpu.usage.kernel = ticks.get("system").copied().unwrap_or(0) * 10_000_000;
        }
        if let Some(d) = self.dir_of("cpu") {
            let t = stats::read_keyed(&d.path, "cpu.stat");
            s.cpu.throttling.periods = t.get("nr_periods").copied().unwrap_or(0);
            s.cpu.throttling.throttled_periods = t.get("nr_throttled").copied().unwrap_or(0);
            s.cpu.throttling.throttled_time = t.get("throttled_time").copied().unwrap_or(0);
        }
        if let Some(d) = self.dir_of("memory") {
            let entry = |prefix: &str| stats::MemoryEntry {
                limit: stats::read_u64(&d.path, &format!("{prefix}limit_in_bytes")),
                usage: stats::read_u64(&d.path, &format!("{prefix}usage_in_bytes")),
                max: stats::read_u64(&d.path, &format!("{prefix}max_usage_in_bytes")),
                failcnt: stats::read_u64(&d.path, &format!("{prefix}failcnt")),
            };
            s.memory.usage = entry("memory.");
            s.memory.swap = entry("memory.memsw.");
            s.memory.raw = stats::read_keyed(&d.path, "memory.stat");
            s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        }
        if let Some(d) = self.dir_of("pids") {
            s.pids.current = stats::read_u64(&d.path, "pids.current");
            s.pids.limit = stats::read_u64(&d.path, "pids.max");
        }
        if let Some(d) = self.dir_of("blkio") {
            let read = |f: &str| {
                stats::parse_v1_blkio(&std::fs::read_to_string(d.path.join(f)).unwrap_or_default())
            };
            s.blkio.io_service_bytes_recursive = read("blkio.throttle.io_service_bytes_recursive");
            s.blkio.io_serviced_recursive = read("blkio.throttle.io_serviced_recursive");
        }
        let hugetlb = self
            .dir_of("hugetlb")
            .map(|d| (d, true))
            .or_else(|| self.unified_with("hugetlb").map(|d| (d, false)));
        if let Some((d, v1)) = hugetlb {
            for size in stats::hugepage_sizes() {
                let (usage, max) = if v1 {
                    ("usage_in_bytes", "max_usage_in_bytes")
                } else {
                    ("current", "max")
                };
                let entry = stats::Hugetlb {
                    usage: stats::read_u64(&d.path, &format!("hugetlb.{size}.{usage}")),
                    max: stats::read_u64(&d.path, &format!("hugetlb.{size}.{max}")),
                    failcnt: stats::read_u64(&d.path, &format!("hugetlb.{size}.failcnt")),
                };
                s.hugetlb.insert(size, entry);
            }
        }
        s
    }

    fn oom_kills(&self) -> u64 {
        self.dir_of("memory")
            .map(|d| stats::read_keyed(&d.path, "memory.oom_control"))
            .and_then(|m| m.get("oom_kill").copied())
            .unwrap_or(0)
    }

    fn oom_watch(&self) -> Option<OwnedFd> {
        super::oom::watch_v1(&self.dir_of("memory")?.path).ok()
    }

    fn signal_all(&self, signal: libc::c_int) -> Result<(), CgroupError> {
        // Frozen processes cannot fork a child that would miss the signal.
        let freezer = self.dir_of("freezer").is_some() && !self.frozen();
        if freezer {
            self.freeze(true)?;
        }
        let result = self.procs().and_then(|pids| signal_pids(&pids, signal));
        if freezer {
            self.freeze(false)?;
        }
        result
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
