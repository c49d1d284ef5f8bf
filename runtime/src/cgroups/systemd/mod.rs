//! The systemd cgroup driver (`--systemd-cgroup`), as runc's
//! docs/systemd.md describes it: the container's cgroup belongs to a
//! transient unit (a scope with `Delegate=yes`, or a slice) that systemd
//! creates, and its resources become unit properties. Everything else is
//! the cgroup v2 backend on the unit's cgroup: the same values are also
//! written to the files (what systemd has no property for, and what it
//! rounds, as runc does), and freezing, stats, OOM events, signals and
//! exec go through the files.
//!
//! What systemd does is kept off skiff's path where it can be:
//! - the connection is opened when the unit is planned, so systemd
//!   answers the authentication while the container is prepared;
//! - the init is started directly in the unit's future cgroup when its
//!   parent slice exists (skiff makes the directory, and sets the device
//!   filter on it, before the clone; systemd adopts it), and the unit is
//!   asked for right after the clone: systemd's job runs while the init
//!   sets up its mounts, and is waited for only where the unit must
//!   exist (`settle`: before hooks, before `create` returns; before the
//!   init goes on when it could not be cloned into the cgroup);
//! - `delete` asks systemd to stop a unit it started and forget it, and
//!   waits neither for the answers nor for the stop job: the container's
//!   processes are gone by then, systemd ends an empty scope by itself
//!   and removes its cgroup, the unit carries
//!   `CollectMode=inactive-or-failed`, and the answers would tell skiff
//!   nothing it acts on (a unit systemd no longer knows has ended
//!   already). Waiting for them took most of a systemd `run`'s extra time
//!   (systemd answers once it has ended the scope that just emptied). A
//!   start that finds a unit of that name still on its way out (empty)
//!   stops it and waits for that.

mod client;
mod gvariant;
pub mod properties;
pub mod unit;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

use oci_spec::runtime::LinuxResources;

use super::devices::Policy;
use super::stats::Stats;
use super::v2::V2;
use super::{CgroupError, Manager, Record};
use crate::dbus::DbusError;
use client::{Client, Pending};
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
    #[error("--systemd-cgroup: cannot reach the systemd user instance of uid {uid}, which a rootless container's unit belongs to (its bus: $DBUS_SESSION_BUS_ADDRESS, or $XDG_RUNTIME_DIR/bus; `loginctl enable-linger` keeps one running): {source}")]
    UserBus { uid: u32, source: DbusError },
    #[error("--systemd-cgroup: the systemd user instance of uid {0} has no ControlGroup")]
    NoManagerCgroup(u32),
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

/// The systemd instance the process's units belong to: the system's
/// (None), or the user instance of a uid (rootless). One per process in
/// practice; set when a unit is planned or loaded.
static MANAGER: Mutex<Option<u32>> = Mutex::new(None);

/// Talks to `user`'s instance (None: the system's) from now on; a kept
/// connection to another one is dropped.
fn use_manager(user: Option<u32>) {
    let changed = {
        let mut m = MANAGER.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *m, user) != user
    };
    if changed {
        *BUS.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A new connection to the instance of `use_manager`.
fn connect() -> Result<Client, SystemdError> {
    let user = *MANAGER.lock().unwrap_or_else(|e| e.into_inner());
    Client::connect(user).map_err(|source| match user {
        Some(uid) => SystemdError::UserBus { uid, source },
        None => SystemdError::Bus(source),
    })
}

/// The user whose systemd instance owns the unit whose cgroup is `path`:
/// its units are below `user@<uid>.service`.
fn user_of(path: &Path) -> Option<u32> {
    path.components().find_map(|c| {
        c.as_os_str()
            .to_str()?
            .strip_prefix("user@")?
            .strip_suffix(".service")?
            .parse()
            .ok()
    })
}

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
            None => connect()?,
        };
        let client = guard.insert(client);
        match f(client) {
            Ok(v) => return Ok(v),
            Err(DbusError::Io { .. } | DbusError::Closed { .. }) if may_retry => {
                *guard = None;
                may_retry = false;
            }
            Err(source) => return Err(failed(&mut guard, op, unit, source)),
        }
    }
}

/// Opens the process's connection to systemd if there is none yet; the
/// authentication's answer is read with the first call.
fn open_bus() -> Result<(), SystemdError> {
    let mut guard = BUS.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        *guard = Some(connect()?);
    }
    Ok(())
}

/// Runs `f` on the connection an earlier call used, never a new one: the
/// answer to a call sent there can only come there.
fn on_same_bus<T>(
    op: &'static str,
    unit: &str,
    f: impl FnOnce(&mut Client) -> Result<T, DbusError>,
) -> Result<T, SystemdError> {
    let mut guard = BUS.lock().unwrap_or_else(|e| e.into_inner());
    let result = match guard.as_mut() {
        Some(client) => f(client),
        None => Err(DbusError::Closed {
            address: "systemd".into(),
        }),
    };
    result.map_err(|source| failed(&mut guard, op, unit, source))
}

/// The error of a call; the connection is dropped unless the failure was
/// an error reply, which leaves it usable (anything else may have left
/// it mid-message).
fn failed(
    bus: &mut Option<Client>,
    op: &'static str,
    unit: &str,
    source: DbusError,
) -> SystemdError {
    if !matches!(source, DbusError::Remote { .. }) {
        *bus = None;
    }
    SystemdError::Call {
        op,
        unit: unit.to_string(),
        source,
    }
}

/// What `create` knows that a stored record does not: what to start the
/// unit with.
struct Planned {
    unit: unit::Unit,
    id: String,
    annotations: Vec<Property>,
}

/// A start sent to systemd, not yet answered.
struct Starting {
    pending: Pending,
    props: Vec<Property>,
    pid: libc::pid_t,
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
    /// Sent by `adopt`, collected by `settle`.
    starting: RefCell<Option<Starting>>,
    /// `linux.resources` given before the unit exists, for `settle`.
    resources: RefCell<Option<LinuxResources>>,
    /// The device filter is on the cgroup already (set before the clone).
    devices_set: Cell<bool>,
}

impl Systemd {
    /// Plans the unit of container `id` in the system's instance, or
    /// (`user`, rootless) in that user's, where its cgroup is below the
    /// instance's own, and connects to that instance; nothing is created
    /// yet.
    pub fn plan(
        hierarchies: &[super::Hierarchy],
        cgroups_path: Option<&str>,
        id: &str,
        annotations: &HashMap<String, String>,
        user: Option<u32>,
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
        let default_slice = match user {
            Some(_) => unit::USER_SLICE,
            None => unit::DEFAULT_SLICE,
        };
        let mut unit =
            unit::plan_in(cgroups_path, id, default_slice).map_err(SystemdError::from)?;
        use_manager(user);
        if let Some(uid) = user {
            let root = with_bus("locating", "the user's units", Client::manager_cgroup)?
                .ok_or(SystemdError::NoManagerCgroup(uid))?;
            let inner = unit.cgroup.strip_prefix("/").unwrap_or(&unit.cgroup);
            unit.cgroup = Path::new(&root).join(inner);
        }
        let annotations = properties::annotations(annotations)?;
        open_bus()?;
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
            unit: unit.name.clone(),
            planned: Some(Planned {
                unit,
                id: id.to_string(),
                annotations,
            }),
            ..Systemd::new(V2::new(record), String::new(), false)
        })
    }

    /// The backend of a unit recorded in a container's state.
    pub fn from_record(record: Record, unit: String) -> Systemd {
        use_manager(user_of(&record.path));
        Systemd::new(V2::new(record), unit, true)
    }

    fn new(v2: V2, unit: String, started: bool) -> Systemd {
        Systemd {
            v2,
            unit,
            planned: None,
            started: Cell::new(started),
            asked: Cell::new(started),
            starting: RefCell::new(None),
            resources: RefCell::new(None),
            devices_set: Cell::new(false),
        }
    }

    /// True when a scope of our name that systemd still holds, with
    /// `cgroup`, can only be one on its way out: it holds no cgroup, or
    /// ours with no process in it (an active scope ends when it empties;
    /// a slice does not, and is never taken for a leftover).
    fn leftover(&self, cgroup: Option<&str>) -> bool {
        if self.unit.ends_with(".slice") {
            return false;
        }
        let Some(cgroup) = cgroup else {
            return true;
        };
        let record = self.v2.record();
        let dir = &record.dirs[0].path;
        Path::new(cgroup) == record.path
            && super::stats::read_keyed(dir, "cgroup.events").get("populated") == Some(&0)
    }

    /// Waits for the start `adopt` sent; a unit of that name left failed
    /// is reset and the start retried once (runc's rule), and one still
    /// on its way out (empty) is stopped first.
    fn finish_start(&self, starting: Starting) -> Result<(), CgroupError> {
        let name = &self.unit;
        let Starting {
            pending,
            props,
            pid,
        } = starting;
        let result = on_same_bus("starting", name, |c| {
            c.finish_start(pending, name, &props, |cgroup| self.leftover(cgroup))
        })?;
        if result != "done" {
            let _ = with_bus("resetting", name, |c| c.reset_failed_unit(name));
            return Err(SystemdError::Job {
                op: "starting",
                unit: name.clone(),
                result,
            }
            .into());
        }
        self.started.set(true);
        if self.planned.as_ref().is_some_and(|p| p.unit.is_slice()) {
            // A slice takes no PIDs property: skiff moves the init.
            self.v2.add(pid, false)?;
        }
        match self.resources.borrow_mut().take() {
            Some(mut res) => {
                if self.devices_set.get() {
                    res.set_devices(None);
                }
                self.v2.apply(&res)
            }
            None => Ok(()),
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

    /// Asks systemd for the unit with the init in it; `settle` collects
    /// the answer.
    fn adopt(&self, pid: libc::pid_t) -> Result<(), CgroupError> {
        let Some(planned) = self.planned.as_ref().filter(|_| !self.asked.get()) else {
            return Ok(());
        };
        let mut props = properties::base(&planned.unit, &planned.id, Some(pid as u32));
        props.extend(planned.annotations.iter().cloned());
        if let Some(res) = self.resources.borrow().as_ref() {
            // After the annotations: resources win, as in runc (which
            // sets them after starting the unit).
            props.extend(properties::resources(res)?);
            if let Some(policy) = Policy::of(res.devices().as_deref())? {
                props.extend(properties::devices(&policy));
            }
        }
        self.asked.set(true);
        let name = &self.unit;
        let pending = with_bus("starting", name, |c| c.send_start(name, &props))?;
        *self.starting.borrow_mut() = Some(Starting {
            pending,
            props,
            pid,
        });
        Ok(())
    }

    fn settle(&self) -> Result<(), CgroupError> {
        let starting = self.starting.borrow_mut().take();
        match starting {
            Some(s) => self.finish_start(s),
            None => Ok(()),
        }
    }

    fn procs(&self) -> Result<Vec<libc::pid_t>, CgroupError> {
        self.v2.procs()
    }

    /// Stops the unit and has systemd forget it (failed or not). For a
    /// unit that was started, without waiting (see the module's notes):
    /// the processes are gone by now, and systemd removes the unit's
    /// cgroup as it ends it. What skiff made for a unit that may never
    /// have come to be, it removes itself once systemd has answered.
    fn destroy(&self) -> Result<(), CgroupError> {
        if let Some(s) = self.starting.borrow_mut().take() {
            // Its answer tells whether there is a unit to stop.
            let _ = self.finish_start(s);
        }
        if self.started.get() {
            let name = &self.unit;
            with_bus("stopping", name, |c| c.send_stop_and_forget(name))?;
            return Ok(());
        }
        if self.asked.get() {
            let name = &self.unit;
            match with_bus("stopping", name, |c| c.stop_and_forget(name)) {
                // Nothing was started if systemd could never be reached.
                Ok(()) | Err(SystemdError::Bus(_) | SystemdError::UserBus { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.v2.destroy()
    }

    /// Before the unit exists (create) the resources wait for `settle`,
    /// but for the device filter when the init is to be cloned into
    /// skiff's directory: it goes on before the init exists, as with the
    /// cgroupfs driver (systemd adds its own filter beside it). Once the
    /// unit exists (`update`) they go to the unit, then to the files.
    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        if !self.started.get() {
            if res.devices().is_some() && self.v2.clone_target().is_some() {
                let mut devices = LinuxResources::default();
                devices.set_devices(res.devices().clone());
                self.v2.apply(&devices)?;
                self.devices_set.set(true);
            }
            *self.resources.borrow_mut() = Some(res.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_instances_units_are_below_its_service() {
        let user =
            Path::new("/user.slice/user-1000.slice/user@1000.service/user.slice/skiff-c.scope");
        assert_eq!(user_of(user), Some(1000));
        assert_eq!(user_of(Path::new("/system.slice/skiff-c.scope")), None);
        assert_eq!(
            user_of(Path::new("/user.slice/user-1000.slice/x.scope")),
            None
        );
    }
}
