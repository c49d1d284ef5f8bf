//! The containerd Task service: one handler per ttrpc method, over the
//! bookkeeping in `tasks` and the runtime calls in `runtime`. It runs on
//! the shim's one serving thread (see `server`), which also reaps exits
//! and watches for OOM kills, so handlers own the task map outright.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use skiff::state::Status as SkiffStatus;

use crate::api::{
    self, status, Any, CheckpointTaskRequest, CloseIoRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteResponse, ExecProcessRequest, KillRequest, Options, PidsResponse,
    ProcessInfo, ProcessRequest, ResizePtyRequest, StartResponse, StateResponse, StatsResponse,
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIo, TaskRequest, TaskStart,
    UpdateTaskRequest, WaitResponse,
};
use crate::error::ShimError;
use crate::events::{Event, Publisher};
use crate::proto::Message;
use crate::runtime::{Files, Runtime, CRIU_WORK};
use crate::stdio::{self, ConsoleSocket, Paths, Relay};
use crate::tasks::{self, Exit, OomWatch, Orphans, Process, Task, Tasks};
use crate::ttrpc::{Code, Reply};
use crate::{bootstrap, metrics, options, rootfs};

/// Where console sockets live while skiff connects to them.
const CONSOLE_DIR: &str = "/run/skiff-shim";

/// The Task service.
pub struct Service {
    tasks: Tasks,
    /// Terminal relays, until their output is through (which may be
    /// after their process is deleted).
    relays: Vec<Relay>,
    orphans: Orphans,
    events: Publisher,
    namespace: String,
    shutdown: bool,
}

type R<T> = Result<T, ShimError>;

/// What a request comes to: a reply now, or a Wait to answer at the
/// process's exit.
pub enum Outcome {
    Reply(Reply),
    Wait { id: String, exec_id: String },
}

fn reply<M: Message>(r: R<M>) -> Reply {
    r.map(|m| m.to_bytes()).map_err(|e| {
        log::warn!("{e}");
        (e.code(), e.to_string())
    })
}

fn decode<M: Message>(method: &str, payload: &[u8]) -> R<M> {
    M::decode(payload).map_err(|e| ShimError::Invalid {
        field: format!("{method} request"),
        detail: e.to_string(),
    })
}

/// Decodes the request and runs the handler on it.
fn call<Q: Message, M: Message>(
    method: &str,
    payload: &[u8],
    handler: impl FnOnce(Q) -> R<M>,
) -> Outcome {
    Outcome::Reply(reply(decode(method, payload).and_then(handler)))
}

fn exit_reply(exit: &Exit) -> WaitResponse {
    WaitResponse {
        exit_status: exit.status,
        exited_at: Some(exit.at.clone()),
    }
}

impl Service {
    pub fn new(namespace: String, events: Publisher) -> Service {
        Service {
            tasks: Tasks::new(),
            relays: Vec::new(),
            orphans: Orphans::default(),
            events,
            namespace,
            shutdown: false,
        }
    }

    /// True once Shutdown came with no task left.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown
    }

    /// Runs one Task API method.
    pub fn handle(&mut self, method: &str, payload: &[u8]) -> Outcome {
        match method {
            "State" => call(method, payload, |q: ProcessRequest| {
                self.state_of(&q.id, &q.exec_id)
            }),
            "Create" => call(method, payload, |q| self.create_task(&q)),
            "Start" => call(method, payload, |q: ProcessRequest| {
                self.start_process(&q.id, &q.exec_id)
                    .map(|pid| StartResponse { pid })
            }),
            "Delete" => call(method, payload, |q: ProcessRequest| {
                self.delete_process(&q.id, &q.exec_id)
            }),
            "Pids" => call(method, payload, |q: TaskRequest| self.pids(&q.id)),
            "Pause" => call(method, payload, |q: TaskRequest| self.pause(&q.id, true)),
            "Resume" => call(method, payload, |q: TaskRequest| self.pause(&q.id, false)),
            "Checkpoint" => call(method, payload, |q| self.checkpoint(&q).map(empty)),
            "Kill" => call(method, payload, |q| self.kill_process(&q).map(empty)),
            "Exec" => call(method, payload, |q| self.add_exec(&q).map(empty)),
            "ResizePty" => call(method, payload, |q: ResizePtyRequest| {
                self.process(&q.id, &q.exec_id)
                    .and_then(|p| p.held.resize(q.width, q.height))
                    .map(empty)
            }),
            "CloseIO" => call(method, payload, |q: CloseIoRequest| {
                self.process(&q.id, &q.exec_id)
                    .map(|p| p.held.close_stdin())
                    .map(empty)
            }),
            "Update" => call(method, payload, |q| self.update_resources(&q).map(empty)),
            "Wait" => match decode::<ProcessRequest>(method, payload) {
                Ok(q) => match self.wait_result(&q.id, &q.exec_id) {
                    Some(r) => Outcome::Reply(r),
                    None => Outcome::Wait {
                        id: q.id,
                        exec_id: q.exec_id,
                    },
                },
                Err(e) => Outcome::Reply(reply::<api::Empty>(Err(e))),
            },
            "Stats" => call(method, payload, |q: TaskRequest| self.stats(&q.id)),
            "Connect" => call(method, payload, |q: TaskRequest| {
                Ok(ConnectResponse {
                    shim_pid: std::process::id(),
                    task_pid: self.tasks.get(&q.id).map_or(0, |t| t.init.pid),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                })
            }),
            "Shutdown" => {
                // A shim serving a pod stays until its last container is
                // deleted.
                self.shutdown = self.tasks.is_empty();
                Outcome::Reply(Ok(Vec::new()))
            }
            other => Outcome::Reply(Err((
                Code::Unimplemented,
                format!("method {other} is not implemented"),
            ))),
        }
    }

    /// The reply to a Wait once the process has exited (or is gone);
    /// None while it runs.
    pub fn wait_result(&mut self, id: &str, exec_id: &str) -> Option<Reply> {
        match self.process(id, exec_id) {
            Ok(p) => p.exit.as_ref().map(|e| Ok(exit_reply(e).to_bytes())),
            Err(ShimError::TaskNotFound(_)) if !exec_id.is_empty() => {
                match self.orphans.wait(id, exec_id) {
                    Some(exit) => exit.map(|e| Ok(exit_reply(&e).to_bytes())),
                    None => Some(reply::<api::Empty>(Err(ShimError::TaskNotFound(
                        id.to_string(),
                    )))),
                }
            }
            Err(e) => Some(reply::<api::Empty>(Err(e))),
        }
    }

    /// A child exited: record it and tell containerd.
    pub fn reaped(&mut self, pid: i32, code: i32) {
        let exit = tasks::record_exit(&mut self.tasks, pid, code)
            .or_else(|| self.orphans.record_exit(pid, code));
        if let Some(exit) = exit {
            self.events.publish(Event::exit(&exit));
        }
    }

    /// How long until queued events are due to be sent again.
    pub fn events_retry_in(&self) -> Option<std::time::Duration> {
        self.events.retry_in()
    }

    /// Sends queued events once their pause is over.
    pub fn flush_events(&mut self) {
        if self.events.retry_in() == Some(std::time::Duration::ZERO) {
            self.events.flush();
        }
    }

    /// The fds the terminal relays wait on, and for what.
    pub fn relay_polls(&self) -> Vec<(RawFd, i16)> {
        self.relays.iter().flat_map(Relay::polls).collect()
    }

    /// Moves what terminal output and input can move now.
    pub fn pump_relays(&mut self) {
        for r in &mut self.relays {
            r.pump();
        }
        self.relays.retain(|r| !r.finished());
    }

    /// The OOM watch fds, by task.
    pub fn oom_fds(&self) -> Vec<(String, RawFd)> {
        self.tasks
            .iter()
            .filter_map(|(id, t)| Some((id.clone(), t.oom.as_ref()?.fd.as_raw_fd())))
            .collect()
    }

    /// The OOM fd of task `id` was readable: publish TaskOOM when the
    /// kernel's OOM killer struck.
    pub fn oom_signalled(&mut self, id: &str) {
        let Some(watch) = self.tasks.get_mut(id).and_then(|t| t.oom.as_mut()) else {
            return;
        };
        skiff::cgroups::oom::drain(&watch.fd);
        let mut now = watch.cgroup.oom_kills();
        // v1 signals when the cgroup hits OOM, just before the kill is
        // counted: give the counter a moment. v2 counts before it notifies,
        // and notifies on every memory.events change (high, max): waiting
        // there would stall the loop for nothing.
        if !watch.cgroup.record().unified {
            for _ in 0..20 {
                if now > watch.seen {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
                now = watch.cgroup.oom_kills();
            }
        }
        if now > watch.seen {
            watch.seen = now;
            self.events.publish(Event::oom(id));
        }
    }

    fn process(&mut self, id: &str, exec_id: &str) -> R<&mut Process> {
        tasks::find(&mut self.tasks, id)?.process(id, exec_id)
    }

    fn create_task(&mut self, req: &CreateTaskRequest) -> R<CreateTaskResponse> {
        let bundle = PathBuf::from(&req.bundle);
        let options = match req.options.as_ref() {
            Some(any) if !any.value.is_empty() => {
                bootstrap::runtime_options(any).unwrap_or_else(|| {
                    log::warn!(
                        "options of type {:?} ignored (only containerd.runc.v1.Options are read)",
                        any.type_url
                    );
                    Options::default()
                })
            }
            _ => Options::default(),
        };
        if self.tasks.contains_key(&req.id) {
            return Err(ShimError::TaskExists(req.id.clone()));
        }
        // Saved for `delete` after a lost shim, which only has the bundle.
        options::save(&bundle, &options)?;
        let runtime = Runtime::locate(&options.binary_name, &options.root, &self.namespace);
        let mounted_rootfs = !req.rootfs.is_empty();
        if mounted_rootfs {
            rootfs::mount(&bundle, &req.rootfs)?;
        }
        let stdio = Paths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        // From a checkpoint, as the runc shim does: the container comes
        // into being at Start, restored with its stdio.
        let restore_from = (!req.checkpoint.is_empty()).then(|| tasks::Checkpoint {
            image: PathBuf::from(&req.checkpoint),
            parent: (!req.parent_checkpoint.is_empty())
                .then(|| PathBuf::from(&req.parent_checkpoint)),
        });
        let (pid, held, oom) = if restore_from.is_some() {
            (0, stdio::Held::default(), None)
        } else {
            let files = Files::in_bundle(&bundle, "init");
            let owner = stdio::Owner {
                id: &req.id,
                namespace: &self.namespace,
            };
            let spawned = spawn_process(&stdio, &owner, |io, console| {
                runtime.create(&req.id, &bundle, io, console, &files, &options)
            });
            let (pid, held, relay) = match spawned {
                Ok(v) => v,
                Err(e) => {
                    // skiff may have created the container before the
                    // failure (a terminal that never came): nothing may
                    // stay behind.
                    let _ = runtime.delete(&req.id, &bundle);
                    if mounted_rootfs {
                        rootfs::unmount(&bundle);
                    }
                    return Err(e);
                }
            };
            self.relays.extend(relay);
            (pid, held, oom_watch(&runtime, &req.id))
        };
        self.tasks.insert(
            req.id.clone(),
            Task {
                bundle,
                runtime,
                mounted_rootfs,
                init: Process {
                    pid,
                    stdio,
                    held,
                    ..Default::default()
                },
                execs: HashMap::new(),
                oom,
                restore_from,
            },
        );
        self.events.publish(Event::create(&TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: Some(TaskIo {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            }),
            pid,
        }));
        Ok(CreateTaskResponse { pid })
    }

    fn start_process(&mut self, id: &str, exec_id: &str) -> R<u32> {
        let namespace = self.namespace.clone();
        let task = tasks::find(&mut self.tasks, id)?;
        let (runtime, bundle) = (task.runtime.clone(), task.bundle.clone());
        let process = task.process(id, exec_id)?;
        if process.started || process.exit.is_some() {
            return Err(ShimError::Precondition {
                id: id.to_string(),
                what: format!("process {exec_id:?} already started"),
            });
        }
        if exec_id.is_empty() {
            match task.restore_from.take() {
                Some(checkpoint) => {
                    let owner = stdio::Owner {
                        id,
                        namespace: &namespace,
                    };
                    let options = options::load(&bundle);
                    let (pid, held, relay) =
                        spawn_process(&task.init.stdio, &owner, |io, console| {
                            runtime.restore(id, &bundle, &checkpoint, io, console, &options)
                        })?;
                    self.relays.extend(relay);
                    task.init.pid = pid;
                    task.init.held = held;
                    task.oom = oom_watch(&runtime, id);
                }
                None => runtime.start(id, &bundle)?,
            }
            let process = &mut task.init;
            process.started = true;
            let pid = process.pid;
            self.events.publish(Event::start(&TaskStart {
                container_id: id.to_string(),
                pid,
            }));
            return Ok(pid);
        }
        let spec_path = bundle.join(format!("{exec_id}.process.json"));
        std::fs::write(&spec_path, &process.spec)
            .map_err(ShimError::io(format!("write {}", spec_path.display())))?;
        let files = Files::in_bundle(&bundle, exec_id);
        let owner = stdio::Owner {
            id,
            namespace: &namespace,
        };
        let spawned = spawn_process(&process.stdio, &owner, |io, console| {
            runtime.exec(id, &spec_path, io, console, &files)
        });
        let _ = std::fs::remove_file(&spec_path);
        let (pid, held, relay) = spawned?;
        self.relays.extend(relay);
        process.pid = pid;
        process.held = held;
        process.started = true;
        self.events.publish(Event::exec_started(&TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
        }));
        Ok(pid)
    }

    fn delete_process(&mut self, id: &str, exec_id: &str) -> R<DeleteResponse> {
        let task = tasks::find(&mut self.tasks, id)?;
        let process = task.process(id, exec_id)?;
        if process.started && process.exit.is_none() {
            return Err(ShimError::Precondition {
                id: id.to_string(),
                what: format!("process {exec_id:?} is still running"),
            });
        }
        let response = DeleteResponse {
            pid: process.pid,
            exit_status: process.exit_status(),
            exited_at: process.exited_at(),
        };
        if !exec_id.is_empty() {
            task.execs.remove(exec_id);
            return Ok(response);
        }
        // Force: a created (never started) init is killed, and processes
        // that outlived the init (host pid namespace) go with the cgroup.
        // The task stays until that worked, so containerd can retry a
        // failed delete (a process stuck in D state, a failing hook).
        task.runtime.delete(id, &task.bundle)?;
        let Some(task) = self.tasks.remove(id) else {
            return Err(ShimError::TaskNotFound(id.to_string()));
        };
        self.orphans.adopt(id, &task);
        if task.mounted_rootfs {
            rootfs::unmount(&task.bundle);
        }
        self.events.publish(Event::delete(&TaskDelete {
            container_id: id.to_string(),
            id: id.to_string(),
            pid: response.pid,
            exit_status: response.exit_status,
            exited_at: response.exited_at.clone(),
        }));
        Ok(response)
    }

    fn kill_process(&mut self, req: &KillRequest) -> R<()> {
        let task = tasks::find(&mut self.tasks, &req.id)?;
        let runtime = task.runtime.clone();
        let process = task.process(&req.id, &req.exec_id)?;
        let finished = process.exit.is_some();
        if req.exec_id.is_empty() {
            if finished && !req.all {
                return Err(ShimError::Finished {
                    id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                });
            }
            let signal = req.signal as libc::c_int;
            return match runtime.load(&req.id)?.kill(signal, req.all) {
                // `kill --all` after the init's exit reaches what is left.
                Err(_) if finished => Ok(()),
                other => other.map_err(ShimError::container(&req.id)),
            };
        }
        if finished {
            return Err(ShimError::Finished {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
            });
        }
        if !process.started {
            return Err(ShimError::Precondition {
                id: req.id.clone(),
                what: format!("exec {} is not started", req.exec_id),
            });
        }
        // SAFETY: kill(2) on a pid this shim reaps: its exit is not yet
        // recorded, so it is not reaped and the pid cannot be reused.
        if unsafe { libc::kill(process.pid as libc::pid_t, req.signal as libc::c_int) } < 0 {
            return Err(ShimError::io(format!("kill exec {}", req.exec_id))(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn state_of(&mut self, id: &str, exec_id: &str) -> R<StateResponse> {
        let task = tasks::find(&mut self.tasks, id)?;
        let (bundle, runtime) = (task.bundle.clone(), task.runtime.clone());
        let process = task.process(id, exec_id)?;
        let mut state = process.status();
        if exec_id.is_empty() && state == status::RUNNING {
            if let Ok(c) = runtime.load(id) {
                if c.status() == SkiffStatus::Paused {
                    state = status::PAUSED;
                }
            }
        }
        Ok(StateResponse {
            id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
            bundle: bundle.display().to_string(),
            pid: process.pid,
            status: state,
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: process.exit_status(),
            exited_at: process.exited_at(),
            exec_id: exec_id.to_string(),
        })
    }

    fn add_exec(&mut self, req: &ExecProcessRequest) -> R<()> {
        let task = tasks::find(&mut self.tasks, &req.id)?;
        if task.execs.contains_key(&req.exec_id) || req.exec_id.is_empty() {
            return Err(ShimError::ExecExists {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
            });
        }
        if task.init.exit.is_some() {
            return Err(ShimError::Precondition {
                id: req.id.clone(),
                what: "cannot exec in a stopped task".into(),
            });
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        if serde_json::from_slice::<serde_json::Value>(&spec).is_err() {
            return Err(ShimError::Invalid {
                field: format!("exec {} spec", req.exec_id),
                detail: "not a JSON process object".into(),
            });
        }
        task.execs.insert(
            req.exec_id.clone(),
            Process {
                stdio: Paths {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
                spec,
                ..Default::default()
            },
        );
        self.events.publish(Event::exec_added(&TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
        }));
        Ok(())
    }

    /// The container of a live task, as skiff's state has it.
    fn container(&mut self, id: &str) -> R<skiff::container::Container> {
        tasks::find(&mut self.tasks, id)?.runtime.load(id)
    }

    fn pids(&mut self, id: &str) -> R<PidsResponse> {
        let pids = self
            .container(id)?
            .cgroup()
            .procs()
            .map_err(|e| ShimError::container(id)(e.into()))?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo { pid: pid as u32 })
                .collect(),
        })
    }

    /// Checkpoints the task's container into `req.path` with the runc
    /// shim's options. containerd pauses the task around the call; with
    /// `exit` CRIU ends the container, and its exit is reaped as any.
    fn checkpoint(&mut self, req: &CheckpointTaskRequest) -> R<()> {
        let task = tasks::find(&mut self.tasks, &req.id)?;
        if !task.init.started || task.init.exit.is_some() {
            return Err(ShimError::Precondition {
                id: req.id.clone(),
                what: "only a running or paused task can be checkpointed".into(),
            });
        }
        if req.path.is_empty() {
            return Err(ShimError::Invalid {
                field: "checkpoint path".into(),
                detail: "empty".into(),
            });
        }
        let opts = req
            .options
            .as_ref()
            .filter(|any| !any.value.is_empty())
            .and_then(bootstrap::checkpoint_options)
            .unwrap_or_default();
        // CRIU's log goes to the work directory containerd names, else to
        // one in the bundle, kept only when it tells why a dump failed
        // (skiff's error names it; the bundle goes with the task).
        let own_work = opts.work_path.is_empty();
        let work = if own_work {
            task.bundle.join(CRIU_WORK)
        } else {
            PathBuf::from(&opts.work_path)
        };
        let image = Path::new(&req.path);
        let done = task
            .runtime
            .checkpoint(&req.id, image, &work, &opts, &task.bundle);
        if own_work && done.is_ok() {
            let _ = std::fs::remove_dir_all(&work);
        }
        done
    }

    fn pause(&mut self, id: &str, pause: bool) -> R<api::Empty> {
        let c = self.container(id)?;
        if pause {
            c.pause().map_err(ShimError::container(id))?;
            self.events.publish(Event::paused(id));
        } else {
            c.resume().map_err(ShimError::container(id))?;
            self.events.publish(Event::resumed(id));
        }
        Ok(api::Empty {})
    }

    fn update_resources(&mut self, req: &UpdateTaskRequest) -> R<()> {
        let raw = req
            .resources
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or(b"{}");
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(raw).map_err(|e| ShimError::Invalid {
                field: "resources".into(),
                detail: e.to_string(),
            })?;
        let c = self.container(&req.id)?;
        if c.status() == SkiffStatus::Stopped {
            return Err(ShimError::Finished {
                id: req.id.clone(),
                exec_id: String::new(),
            });
        }
        c.cgroup()
            .apply(&resources)
            .map_err(|e| ShimError::container(&req.id)(e.into()))
    }

    fn stats(&mut self, id: &str) -> R<StatsResponse> {
        let cgroup = self.container(id)?.cgroup();
        let stats: Any = metrics::to_any(&cgroup.stats(), cgroup.record().unified);
        Ok(StatsResponse { stats: Some(stats) })
    }
}

fn empty(_: ()) -> api::Empty {
    api::Empty {}
}

/// Starts watching the new container's cgroup for OOM kills.
fn oom_watch(runtime: &Runtime, id: &str) -> Option<OomWatch> {
    let container = match runtime.load(id) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("no OOM events for {id}: {e}");
            return None;
        }
    };
    let cgroup = container.cgroup();
    let Some(fd) = cgroup.oom_watch() else {
        log::warn!("no OOM events for {id}: no memory controller");
        return None;
    };
    let seen = cgroup.oom_kills();
    Some(OomWatch { fd, cgroup, seen })
}

/// Sets up a process's stdio, runs `spawn` with the skiff command's stdio
/// and console socket, and returns the pid, what the shim holds, and for
/// a terminal the relay to pump.
fn spawn_process(
    paths: &Paths,
    owner: &stdio::Owner<'_>,
    spawn: impl FnOnce(stdio::ChildIo, Option<&Path>) -> R<u32>,
) -> R<(u32, stdio::Held, Option<Relay>)> {
    if paths.terminal {
        let socket = ConsoleSocket::bind(Path::new(CONSOLE_DIR))?;
        let pid = spawn(stdio::ChildIo::null(), Some(socket.path()))?;
        let master = socket.receive()?;
        let (held, relay) = stdio::relay_terminal(paths, owner, master)?;
        return Ok((pid, held, Some(relay)));
    }
    let (io, held) = stdio::open_direct(paths, owner)?;
    Ok((spawn(io, None)?, held, None))
}
