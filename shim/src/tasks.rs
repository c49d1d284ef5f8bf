//! The shim's bookkeeping: the tasks it serves, their init and exec
//! processes, exit statuses kept until Delete, and waiters for exits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use containerd_shim::api::Status;
use containerd_shim::protos::events::task::TaskExit;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;

use crate::error::ShimError;
use crate::runtime::Runtime;
use crate::stdio::{Held, Paths};

/// How a process ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub status: u32,
    pub at: Timestamp,
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
    pub fn status(&self) -> Status {
        match (&self.exit, self.started) {
            (Some(_), _) => Status::STOPPED,
            (None, true) => Status::RUNNING,
            (None, false) => Status::CREATED,
        }
    }

    pub fn exited_at(&self) -> MessageField<Timestamp> {
        MessageField::from_option(self.exit.as_ref().map(|e| e.at.clone()))
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

/// Every task, behind one lock; `exited` wakes Wait callers.
#[derive(Default)]
pub struct Tasks {
    map: Mutex<HashMap<String, Task>>,
    exited: Condvar,
}

pub type Guard<'a> = MutexGuard<'a, HashMap<String, Task>>;

impl Tasks {
    pub fn lock(&self) -> Guard<'_> {
        // A panic while holding the lock aborts (panic = abort), so the
        // lock is never poisoned in a release build.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the exit of whichever process had `pid`; returns the event
    /// to publish. Creation and Start hold the lock while they learn a pid,
    /// so an exit is never seen before its process is known.
    pub fn record_exit(&self, pid: i32, code: i32) -> Option<TaskExit> {
        let mut map = self.lock();
        for (id, task) in map.iter_mut() {
            let procs = std::iter::once((id.as_str(), &mut task.init)).chain(
                task.execs
                    .iter_mut()
                    .map(|(exec_id, p)| (exec_id.as_str(), p)),
            );
            for (name, p) in procs {
                if p.pid as i32 != pid || p.exit.is_some() {
                    continue;
                }
                let exit = Exit {
                    status: code as u32,
                    at: Timestamp::now(),
                };
                p.held.release();
                p.exit = Some(exit.clone());
                let event = TaskExit {
                    container_id: id.clone(),
                    id: name.to_string(),
                    pid: p.pid,
                    exit_status: exit.status,
                    exited_at: MessageField::some(exit.at),
                    ..Default::default()
                };
                self.exited.notify_all();
                return Some(event);
            }
        }
        None
    }

    /// Blocks until the process has exited.
    pub fn wait(&self, id: &str, exec_id: &str) -> Result<Exit, ShimError> {
        let mut map = self.lock();
        loop {
            if let Some(exit) = &find(&mut map, id)?.process(id, exec_id)?.exit {
                return Ok(exit.clone());
            }
            map = self.exited.wait(map).unwrap_or_else(|p| p.into_inner());
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
        }
    }

    #[test]
    fn exit_is_recorded_once_and_wakes_waiters() {
        let tasks = std::sync::Arc::new(Tasks::default());
        tasks.lock().insert("c1".into(), task(42));
        tasks.lock().get_mut("c1").unwrap().execs.insert(
            "e1".into(),
            Process {
                pid: 43,
                started: true,
                ..Default::default()
            },
        );
        let waiter = {
            let tasks = tasks.clone();
            std::thread::spawn(move || tasks.wait("c1", "e1").unwrap().status)
        };
        assert!(tasks.record_exit(99, 0).is_none());
        let ev = tasks.record_exit(43, 3).unwrap();
        assert_eq!((ev.container_id.as_str(), ev.id.as_str()), ("c1", "e1"));
        assert_eq!(waiter.join().unwrap(), 3);
        // A second exit of the same pid (reused) does not overwrite it.
        assert!(tasks.record_exit(43, 9).is_none());
        let ev = tasks.record_exit(42, 137).unwrap();
        assert_eq!(ev.id, "c1");
        let mut map = tasks.lock();
        let t = map.get_mut("c1").unwrap();
        assert_eq!(t.init.status(), Status::STOPPED);
        assert_eq!(t.process("c1", "e1").unwrap().exit_status(), 3);
        assert!(matches!(
            t.process("c1", "nope"),
            Err(ShimError::ExecNotFound { .. })
        ));
    }
}
