//! The systemd cgroup driver (`--systemd-cgroup`), as runc's
//! docs/systemd.md describes it: the container's cgroup belongs to a
//! transient unit (a scope with `Delegate=yes`, or a slice) that systemd
//! creates, and its resources become unit properties. Everything else is
//! the cgroup v2 backend on the unit's cgroup: the same values are also
//! written to the files (what systemd has no property for, and what it
//! rounds, as runc does), and freezing, stats, OOM events, signals and
//! exec go through the files.
//!
//! The init is started directly in the unit's future cgroup when its
//! parent slice exists (skiff makes the directory, systemd adopts it),
//! and the unit is started while the init sets up its mounts: the bus
//! round trips overlap the init's work instead of adding to it.

mod client;
mod gvariant;
pub mod properties;
pub mod unit;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Mutex;

use oci_spec::runtime::LinuxResources;

use super::devices::Policy;
use super::stats::Stats;
use super::v2::V2;
use super::{CgroupError, Manager, Record};
use crate::dbus::DbusError;
use client::Client;
use properties::Property;

pub use client::systemd_running;

/// Why the systemd driver could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system)")]
    NotRunning,
    #[error("--systemd-cgroup: needs the unified cgroup v2 hierarchy (this host mounts cgroup v1 controllers); use the cgroupfs driver")]
    NotUnified,
    #[error(transparent)]
    Path(#[from] unit::PathError),
    #[error("--systemd-cgroup: cannot reach systemd: {0}")]
    Bus(DbusError),
    #[error("systemd: {op} {unit}: {source}")]
    Call {
        op: &'static str,
        unit: String,
        source: DbusError,
    },
    #[error("systemd: {op} {unit}: the job ended {result:?}")]
    Job {
        op: &'static str,
        unit: String,
        result: String,
    },
}

/// One connection per process, kept between calls (`run` creates and
/// deletes with one connection; the shim keeps it for its lifetime).
static BUS: Mutex<Option<Client>> = Mutex::new(None);

/// Runs `f` on the process's connection to systemd, connecting first if
/// needed. A kept connection that has gone away (systemd re-executed) is
/// replaced once.
fn with_bus<T>(
    op: &'static str,
    unit: &str,
    mut f: impl FnMut(&mut Client) -> Result<T, DbusError>,
) -> Result<T, SystemdError> {
    let mut guard = BUS.lock().unwrap_or_else(|e| e.into_inner());
    let mut may_retry = guard.is_some();
    loop {
        let client = match guard.take() {
            Some(c) => c,
            None => Client::system().map_err(SystemdError::Bus)?,
        };
        let client = guard.insert(client);
        match f(client) {
            Ok(v) => return Ok(v),
            Err(DbusError::Io { .. } | DbusError::Closed { .. }) if may_retry => {
                *guard = None;
                may_retry = false;
            }
            Err(source) => {
                // An error reply leaves the connection usable; anything
                // else may have left it mid-message.
                if !matches!(source, DbusError::Remote { .. }) {
                    *guard = None;
                }
                return Err(SystemdError::Call {
                    op,
                    unit: unit.to_string(),
                    source,
                });
            }
        }
    }
}

/// What `create` knows that a stored record does not: what to start the
/// unit with.
struct Planned {
    unit: unit::Unit,
    id: String,
    annotations: Vec<Property>,
}

/// The systemd backend: a unit, and the v2 backend on its cgroup.
pub struct Systemd {
    v2: V2,
    unit: String,
    /// Set by `create`; none for a unit loaded from the state.
    planned: Option<Planned>,
    /// The unit exists (always, for one loaded from the state).
    started: Cell<bool>,
    /// systemd was asked to start it (it may exist even if the answer
    /// never came).
    asked: Cell<bool>,
    /// `linux.resources` given before the unit exists, for `adopt`.
    pending: RefCell<Option<LinuxResources>>,
}

impl Systemd {
    /// Plans the unit of container `id`; nothing is created yet.
    pub fn plan(
        hierarchies: &[super::Hierarchy],
        cgroups_path: Option<&str>,
        id: &str,
        annotations: &HashMap<String, String>,
    ) -> Result<Systemd, CgroupError> {
        if !systemd_running() {
            return Err(SystemdError::NotRunning.into());
        }
        let [v2] = hierarchies else {
            return Err(SystemdError::NotUnified.into());
        };
        if !v2.is_v2() {
            return Err(SystemdError::NotUnified.into());
        }
        let unit = unit::plan(cgroups_path, id).map_err(SystemdError::from)?;
        let annotations = properties::annotations(annotations)?;
        let record = Record {
            path: unit.cgroup.clone(),
            unified: true,
            dirs: vec![super::Dir {
                path: v2.dir_of(&unit.cgroup),
                mount: v2.mount.clone(),
                subsystems: String::new(),
                created: Vec::new(),
            }],
            unit: Some(unit.name.clone()),
        };
        Ok(Systemd {
            v2: V2::new(record),
            unit: unit.name.clone(),
            planned: Some(Planned {
                unit,
                id: id.to_string(),
                annotations,
            }),
            started: Cell::new(false),
            asked: Cell::new(false),
            pending: RefCell::new(None),
        })
    }

    /// The backend of a unit recorded in a container's state.
    pub fn from_record(record: Record, unit: String) -> Systemd {
        Systemd {
            v2: V2::new(record),
            unit,
            planned: None,
            started: Cell::new(true),
            asked: Cell::new(true),
            pending: RefCell::new(None),
        }
    }

    /// Starts the unit with the init in it and waits for systemd's job;
    /// a unit of that name left failed is reset and the start retried
    /// once (runc's rule).
    fn start(&self, props: &[Property]) -> Result<(), CgroupError> {
        let name = &self.unit;
        let job = with_bus("starting", name, |c| {
            match c.start_transient_unit(name, props) {
                Err(e) if client::is_remote(&e, client::UNIT_EXISTS) => {
                    let _ = c.reset_failed_unit(name);
                    c.start_transient_unit(name, props)
                }
                other => other,
            }
        })?;
        let result = with_bus("starting", name, |c| c.wait_job(&job))?;
        if result != "done" {
            let _ = with_bus("resetting", name, |c| c.reset_failed_unit(name));
            return Err(SystemdError::Job {
                op: "starting",
                unit: name.clone(),
                result,
            }
            .into());
        }
        Ok(())
    }

    /// Stops the unit and makes systemd forget it, failed or not. A unit
    /// already gone (an empty scope ends by itself) is fine.
    fn stop(&self) -> Result<(), SystemdError> {
        let name = &self.unit;
        let stopped = with_bus("stopping", name, |c| match c.stop_unit(name) {
            Ok(job) => c.wait_job(&job).map(Some),
            Err(e) if client::is_remote(&e, client::NO_SUCH_UNIT) => Ok(None),
            Err(e) => Err(e),
        })?;
        if let Some(result) = stopped.filter(|r| r != "done") {
            crate::warn!("systemd: stopping {name}: the job ended {result:?}");
        }
        match with_bus("resetting", name, |c| c.reset_failed_unit(name)) {
            Err(SystemdError::Call {
                source: DbusError::Remote { name: n, .. },
                ..
            }) if n == client::NO_SUCH_UNIT => Ok(()),
            other => other,
        }
    }
}

impl Manager for Systemd {
    fn record(&self) -> &Record {
        self.v2.record()
    }

    /// Makes the unit's cgroup directory when its slice's exists, so the
    /// init can be cloned straight into it (systemd takes the directory
    /// over when it starts the unit). Otherwise the init starts in
    /// skiff's cgroup and systemd moves it.
    fn create(&mut self) -> Result<(), CgroupError> {
        let dir = self.v2.record().dirs[0].path.clone();
        let parent_exists = dir.parent().is_some_and(|p| p.is_dir());
        if !parent_exists || dir.exists() {
            return Ok(());
        }
        std::fs::create_dir(&dir).map_err(|source| CgroupError::Create {
            path: dir.clone(),
            source,
        })?;
        self.v2.set_created(vec![dir]);
        if let Err(e) = self.v2.attach() {
            let _ = self.v2.destroy();
            return Err(e);
        }
        Ok(())
    }

    fn attach(&mut self) -> Result<(), CgroupError> {
        self.v2.attach()
    }

    fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        self.v2.clone_target()
    }

    fn add(&self, pid: libc::pid_t, cloned: bool) -> Result<(), CgroupError> {
        if !self.started.get() {
            // The unit's start puts it there.
            return Ok(());
        }
        self.v2.add(pid, cloned)
    }

    fn join_current(&self, cloned: bool) -> Result<(), CgroupError> {
        if !self.started.get() {
            return Ok(());
        }
        self.v2.join_current(cloned)
    }

    fn adopt(&self, pid: libc::pid_t) -> Result<(), CgroupError> {
        let Some(planned) = self.planned.as_ref().filter(|_| !self.started.get()) else {
            return Ok(());
        };
        let pending = self.pending.borrow_mut().take();
        let mut props = properties::base(&planned.unit, &planned.id, Some(pid as u32));
        props.extend(planned.annotations.iter().cloned());
        if let Some(res) = &pending {
            // After the annotations: resources win, as in runc (which
            // sets them after starting the unit).
            props.extend(properties::resources(res)?);
            if let Some(policy) = Policy::of(res.devices().as_deref())? {
                props.extend(properties::devices(&policy));
            }
        }
        self.asked.set(true);
        self.start(&props)?;
        self.started.set(true);
        if planned.unit.is_slice() {
            // A slice takes no PIDs property: skiff moves the init.
            self.v2.add(pid, false)?;
        }
        match pending {
            Some(res) => self.v2.apply(&res),
            None => Ok(()),
        }
    }

    fn procs(&self) -> Result<Vec<libc::pid_t>, CgroupError> {
        self.v2.procs()
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        if self.asked.get() {
            match self.stop() {
                // Nothing was started if systemd could never be reached.
                Err(SystemdError::Bus(_)) if !self.started.get() => {}
                Err(e) => return Err(e.into()),
                Ok(()) => {}
            }
        }
        self.v2.destroy()
    }

    /// Before the unit exists (create) the resources wait for `adopt`;
    /// afterwards (`update`) they go to the unit, then to the files.
    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        if !self.started.get() {
            *self.pending.borrow_mut() = Some(res.clone());
            return Ok(());
        }
        let props = properties::resources(res)?;
        if !props.is_empty() {
            let name = &self.unit;
            with_bus("updating", name, |c| c.set_unit_properties(name, &props))?;
        }
        self.v2.apply(res)
    }

    fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        self.v2.freeze(frozen)
    }

    fn frozen(&self) -> bool {
        self.v2.frozen()
    }

    fn stats(&self) -> Stats {
        self.v2.stats()
    }

    fn oom_kills(&self) -> u64 {
        self.v2.oom_kills()
    }

    fn oom_watch(&self) -> Option<OwnedFd> {
        self.v2.oom_watch()
    }

    fn signal_all(&self, signal: libc::c_int) -> Result<(), CgroupError> {
        self.v2.signal_all(signal)
    }
}
