//! The shim's bookkeeping: the tasks it serves, their init and exec
//! processes, and exit statuses kept until Delete.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::api::{status, TaskExit, Timestamp};
use crate::error::ShimError;
use crate::runtime::Runtime;
use crate::stdio::{Held, Paths};

/// How a process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub status: u32,
    pub at: Timestamp,
}

impl Exit {
    /// An exit with `code` (128 + signal for a killed process), now.
    fn now(code: i32) -> Exit {
        Exit {
            status: code as u32,
            at: Timestamp::now(),
        }
    }

    /// The TaskExit event for process `id` (the container id for the
    /// init, else the exec id) of container `container_id`.
    fn event(&self, container_id: &str, id: &str, pid: u32) -> TaskExit {
        TaskExit {
            container_id: container_id.to_string(),
            id: id.to_string(),
            pid,
            exit_status: self.status,
            exited_at: Some(self.at.clone()),
        }
    }
}

/// The init or an exec process of a task.
#[derive(Default)]
pub struct Process {
    /// 0 until the process exists (an exec before Start).
    pub pid: u32,
    pub started: bool,
    pub stdio: Paths,
    pub held: Held,
    pub exit: Option<Exit>,
    /// An exec's `process` JSON, as containerd sent it.
    pub spec: Vec<u8>,
}

impl Process {
    /// The status containerd sees (the init's paused state is asked of
    /// the runtime by the caller).
    pub fn status(&self) -> i32 {
        match (&self.exit, self.started) {
            (Some(_), _) => status::STOPPED,
            (None, true) => status::RUNNING,
            (None, false) => status::CREATED,
        }
    }

    pub fn exited_at(&self) -> Option<Timestamp> {
        self.exit.as_ref().map(|e| e.at.clone())
    }

    pub fn exit_status(&self) -> u32 {
        self.exit.as_ref().map_or(0, |e| e.status)
    }
}

/// A container served by this shim.
pub struct Task {
    pub bundle: PathBuf,
    pub runtime: Runtime,
    /// True when the shim mounted the rootfs and must unmount it.
    pub mounted_rootfs: bool,
    pub init: Process,
    pub execs: HashMap<String, Process>,
    /// Readable when the kernel's OOM killer struck in the container's
    /// cgroup; None without a memory controller.
    pub oom: Option<OomWatch>,
    /// CRIU's images to restore the init from at Start, for a task
    /// created from a checkpoint (no container exists until then).
    pub restore_from: Option<Checkpoint>,
}

/// A checkpoint a task is created from: containerd's `checkpoint` and
/// `parent_checkpoint`.
pub struct Checkpoint {
    pub image: PathBuf,
    /// The (pre-)dump the images continue from, when containerd names one.
    pub parent: Option<PathBuf>,
}

/// What the shim watches for a task's OOM events.
pub struct OomWatch {
    pub fd: OwnedFd,
    pub cgroup: Box<dyn skiff::cgroups::Manager>,
    /// OOM kills already reported.
    pub seen: u64,
}

impl Task {
    /// The init (empty exec id) or the named exec.
    pub fn process(&mut self, id: &str, exec_id: &str) -> Result<&mut Process, ShimError> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| ShimError::ExecNotFound {
                id: id.to_string(),
                exec_id: exec_id.to_string(),
            })
    }
}

/// The task named `id` in the locked map.
pub fn find<'a>(map: &'a mut HashMap<String, Task>, id: &str) -> Result<&'a mut Task, ShimError> {
    map.get_mut(id)
        .ok_or_else(|| ShimError::TaskNotFound(id.to_string()))
}

/// Every task the shim serves, by id.
pub type Tasks = HashMap<String, Task>;

/// Records the exit of whichever process had `pid`; returns the event to
/// publish. Requests and exits are handled on one thread, and Create and
/// Start record a pid before the next exit is reaped, so an exit is never
/// seen before its process is known.
pub fn record_exit(tasks: &mut Tasks, pid: i32, code: i32) -> Option<TaskExit> {
    for (id, task) in tasks.iter_mut() {
        let procs = std::iter::once((id.as_str(), &mut task.init)).chain(
            task.execs
                .iter_mut()
                .map(|(exec_id, p)| (exec_id.as_str(), p)),
        );
        for (name, p) in procs {
            if p.pid as i32 != pid || p.exit.is_some() {
                continue;
            }
            let exit = Exit::now(code);
            p.held.release();
            let event = exit.event(id, name, p.pid);
            p.exit = Some(exit);
            return Some(event);
        }
    }
    None
}

/// Execs still running when their task was deleted (a pod sharing its pid
/// namespace lets them outlive the init): their exits are still published
/// and a parked Wait still gets the status.
#[derive(Default)]
pub struct Orphans(Vec<Orphan>);

struct Orphan {
    id: String,
    exec_id: String,
    pid: u32,
    exit: Option<Exit>,
}

/// Exited orphans kept for a Wait that may still come; past this the
/// oldest go.
const MAX_EXITED_ORPHANS: usize = 64;

impl Orphans {
    /// Takes over the task's started, still running execs.
    pub fn adopt(&mut self, id: &str, task: &Task) {
        for (exec_id, p) in &task.execs {
            if p.started && p.exit.is_none() {
                self.0.push(Orphan {
                    id: id.to_string(),
                    exec_id: exec_id.clone(),
                    pid: p.pid,
                    exit: None,
                });
            }
        }
    }

    /// Records an orphan's exit; returns the event to publish.
    pub fn record_exit(&mut self, pid: i32, code: i32) -> Option<TaskExit> {
        let o = self
            .0
            .iter_mut()
            .find(|o| o.pid as i32 == pid && o.exit.is_none())?;
        let exit = Exit::now(code);
        let event = exit.event(&o.id, &o.exec_id, o.pid);
        o.exit = Some(exit);
        let exited = self.0.iter().filter(|o| o.exit.is_some()).count();
        if exited > MAX_EXITED_ORPHANS {
            if let Some(i) = self.0.iter().position(|o| o.exit.is_some()) {
                self.0.remove(i);
            }
        }
        Some(event)
    }

    /// For a Wait on an exec of a deleted task: None when no such orphan,
    /// Some(None) while it runs, Some(Some(exit)) once it exited (the
    /// orphan is then forgotten).
    pub fn wait(&mut self, id: &str, exec_id: &str) -> Option<Option<Exit>> {
        let i = self
            .0
            .iter()
            .position(|o| o.id == id && o.exec_id == exec_id)?;
        match &self.0[i].exit {
            None => Some(None),
            Some(_) => Some(self.0.remove(i).exit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: u32) -> Task {
        Task {
            bundle: PathBuf::from("/b"),
            runtime: Runtime::locate("skiff", "/r", "ns"),
            mounted_rootfs: false,
            init: Process {
                pid,
                started: true,
                ..Default::default()
            },
            execs: HashMap::new(),
            oom: None,
            restore_from: None,
        }
    }

    #[test]
    fn an_exec_outliving_its_deleted_task_still_exits_and_is_waited_for() {
        let mut t = task(42);
        for (exec_id, pid, started) in [("e1", 43, true), ("e2", 44, false)] {
            t.execs.insert(
                exec_id.into(),
                Process {
                    pid,
                    started,
                    ..Default::default()
                },
            );
        }
        let mut orphans = Orphans::default();
        orphans.adopt("c1", &t);
        assert!(
            orphans.wait("c1", "e2").is_none(),
            "never started: not adopted"
        );
        assert!(matches!(orphans.wait("c1", "e1"), Some(None)));
        let ev = orphans.record_exit(43, 137).unwrap();
        assert_eq!((ev.container_id.as_str(), ev.id.as_str()), ("c1", "e1"));
        assert_eq!(ev.exit_status, 137);
        assert!(orphans.record_exit(43, 1).is_none());
        let exit = orphans.wait("c1", "e1").unwrap().unwrap();
        assert_eq!(exit.status, 137);
        assert!(
            orphans.wait("c1", "e1").is_none(),
            "forgotten once waited for"
        );
    }

    #[test]
    fn exit_is_recorded_once() {
        let mut tasks = Tasks::new();
        tasks.insert("c1".into(), task(42));
        tasks.get_mut("c1").unwrap().execs.insert(
            "e1".into(),
            Process {
                pid: 43,
                started: true,
                ..Default::default()
            },
        );
        assert!(record_exit(&mut tasks, 99, 0).is_none());
        let ev = record_exit(&mut tasks, 43, 3).unwrap();
        assert_eq!((ev.container_id.as_str(), ev.id.as_str()), ("c1", "e1"));
        // A second exit of the same pid (reused) does not overwrite it.
        assert!(record_exit(&mut tasks, 43, 9).is_none());
        let ev = record_exit(&mut tasks, 42, 137).unwrap();
        assert_eq!((ev.id.as_str(), ev.exit_status), ("c1", 137));
        let t = tasks.get_mut("c1").unwrap();
        assert_eq!(t.init.status(), status::STOPPED);
        assert_eq!(t.process("c1", "e1").unwrap().exit_status(), 3);
        assert!(matches!(
            t.process("c1", "nope"),
            Err(ShimError::ExecNotFound { .. })
        ));
    }
}
