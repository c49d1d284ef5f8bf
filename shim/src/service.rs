//! The containerd Task service: one ttrpc method each, over the bookkeeping
//! in `tasks` and the runtime calls in `runtime`.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::api::{self, Options, Status};
use containerd_shim::monitor::Topic;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::synchronous::monitor::monitor_subscribe;
use containerd_shim::util::write_options;
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};
use skiff::state::Status as SkiffStatus;

use crate::error::ShimError;
use crate::events::{Publisher, TaskEvent};
use crate::runtime::{pid_of, Files, Runtime};
use crate::stdio::{self, ConsoleSocket, Paths};
use crate::tasks::{self, Exit, Process, Task, Tasks};
use crate::{metrics, rootfs};

/// Where console sockets live while skiff connects to them.
const CONSOLE_DIR: &str = "/run/skiff-shim";

fn publish<E: TaskEvent>(events: &Option<Publisher>, event: E) {
    match events {
        Some(p) => p.publish(event),
        None => log::warn!("{} dropped: not connected to containerd", E::TOPIC),
    }
}

/// The Task service.
pub struct Service {
    tasks: Arc<Tasks>,
    events: Arc<Option<Publisher>>,
    exit: Arc<ExitSignal>,
    namespace: String,
}

type R<T> = Result<T, ShimError>;

impl Service {
    /// Without a publisher (containerd unreachable) events are dropped.
    pub fn new(namespace: String, publisher: Option<Publisher>, exit: Arc<ExitSignal>) -> Service {
        let tasks = Arc::new(Tasks::default());
        let events = Arc::new(publisher);
        // Subscribed before any task exists, so no exit is missed.
        match monitor_subscribe(Topic::All) {
            Ok(sub) => {
                let (tasks, events) = (tasks.clone(), events.clone());
                let spawned = std::thread::Builder::new()
                    .name("exits".into())
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        for ev in sub.rx.iter() {
                            let Some(pid) = pid_of(&ev.subject) else {
                                continue;
                            };
                            if let Some(exit) = tasks.record_exit(pid, ev.exit_code) {
                                publish(&events, exit);
                            }
                        }
                    });
                if let Err(e) = spawned {
                    log::error!("exit watcher: {e}");
                }
            }
            Err(e) => log::error!("subscribe to exits: {e}"),
        }
        Service {
            tasks,
            events,
            exit,
            namespace,
        }
    }

    fn create_task(&self, req: &api::CreateTaskRequest) -> R<api::CreateTaskResponse> {
        if req.checkpoint.len() + req.parent_checkpoint.len() > 0 {
            return Err(ShimError::CheckpointUnsupported);
        }
        let bundle = PathBuf::from(&req.bundle);
        let options = match req.options.as_ref() {
            Some(any) if !any.value.is_empty() => {
                Options::parse_from_bytes(&any.value).map_err(|e| ShimError::Invalid {
                    field: "options".into(),
                    detail: e.to_string(),
                })?
            }
            _ => Options::default(),
        };
        let mut tasks = self.tasks.lock();
        if tasks.contains_key(&req.id) {
            return Err(ShimError::TaskExists(req.id.clone()));
        }
        // Saved for `delete` after a lost shim, which only has the bundle.
        write_options(&req.bundle, &options).map_err(|e| ShimError::Io {
            what: format!("write options in {}", bundle.display()),
            source: std::io::Error::other(e),
        })?;
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
        let files = Files::in_bundle(&bundle, "init");
        let owner = stdio::Owner {
            id: &req.id,
            namespace: &self.namespace,
        };
        let spawned = spawn_process(&stdio, &owner, |io, console| {
            runtime.create(&req.id, &bundle, io, console, &files, options.no_pivot_root)
        });
        let (pid, held) = match spawned {
            Ok(v) => v,
            Err(e) => {
                // skiff may have created the container before the failure
                // (a terminal that never came): nothing may stay behind.
                let _ = runtime.delete(&req.id, &bundle);
                if mounted_rootfs {
                    rootfs::unmount(&bundle);
                }
                return Err(e);
            }
        };
        tasks.insert(
            req.id.clone(),
            Task {
                bundle,
                runtime: runtime.clone(),
                mounted_rootfs,
                init: Process {
                    pid,
                    stdio,
                    held,
                    ..Default::default()
                },
                execs: HashMap::new(),
            },
        );
        drop(tasks);
        self.watch_oom(&req.id, runtime);
        publish(
            &self.events,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                pid,
                ..Default::default()
            },
        );
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Publishes TaskOOM whenever the kernel's OOM killer strikes in the
    /// container's cgroup; ends once the task is gone.
    fn watch_oom(&self, id: &str, runtime: Runtime) {
        let (tasks, events, id) = (self.tasks.clone(), self.events.clone(), id.to_string());
        let spawned = std::thread::Builder::new()
            .name("oom".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let container = match runtime.load(&id) {
                    Ok(c) => c,
                    Err(e) => return log::warn!("no OOM events for {id}: {e}"),
                };
                let cgroup = container.cgroup();
                let Some(fd) = cgroup.oom_watch() else {
                    return log::warn!("no OOM events for {id}: no memory controller");
                };
                let mut seen = cgroup.oom_kills();
                loop {
                    let mut fds = [nix::poll::PollFd::new(
                        fd.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(_) => return,
                    }
                    skiff::cgroups::oom::drain(&fd);
                    if !tasks.lock().contains_key(&id) {
                        return;
                    }
                    // v1 signals when the cgroup hits OOM, just before
                    // the kill is counted: give the counter a moment.
                    let mut now = cgroup.oom_kills();
                    for _ in 0..20 {
                        if now > seen {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        now = cgroup.oom_kills();
                    }
                    if now > seen {
                        seen = now;
                        publish(
                            &events,
                            TaskOOM {
                                container_id: id.clone(),
                                ..Default::default()
                            },
                        );
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!("oom watcher for {}: {e}", self.namespace);
        }
    }

    fn start_process(&self, id: &str, exec_id: &str) -> R<u32> {
        let mut tasks = self.tasks.lock();
        let task = tasks::find(&mut tasks, id)?;
        let (runtime, bundle) = (task.runtime.clone(), task.bundle.clone());
        let process = task.process(id, exec_id)?;
        if process.started || process.exit.is_some() {
            return Err(ShimError::Precondition {
                id: id.to_string(),
                what: format!("process {exec_id:?} already started"),
            });
        }
        if exec_id.is_empty() {
            runtime.start(id, &bundle)?;
            process.started = true;
            let pid = process.pid;
            drop(tasks);
            publish(
                &self.events,
                TaskStart {
                    container_id: id.to_string(),
                    pid,
                    ..Default::default()
                },
            );
            return Ok(pid);
        }
        let spec_path = bundle.join(format!("{exec_id}.process.json"));
        std::fs::write(&spec_path, &process.spec)
            .map_err(ShimError::io(format!("write {}", spec_path.display())))?;
        let files = Files::in_bundle(&bundle, exec_id);
        let owner = stdio::Owner {
            id,
            namespace: &self.namespace,
        };
        let spawned = spawn_process(&process.stdio, &owner, |io, console| {
            runtime.exec(id, &spec_path, io, console, &files)
        });
        let _ = std::fs::remove_file(&spec_path);
        let (pid, held) = spawned?;
        process.pid = pid;
        process.held = held;
        process.started = true;
        drop(tasks);
        publish(
            &self.events,
            TaskExecStarted {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                pid,
                ..Default::default()
            },
        );
        Ok(pid)
    }

    fn delete_process(&self, id: &str, exec_id: &str) -> R<api::DeleteResponse> {
        let mut tasks = self.tasks.lock();
        let task = tasks::find(&mut tasks, id)?;
        let process = task.process(id, exec_id)?;
        if process.started && process.exit.is_none() {
            return Err(ShimError::Precondition {
                id: id.to_string(),
                what: format!("process {exec_id:?} is still running"),
            });
        }
        let response = api::DeleteResponse {
            pid: process.pid,
            exit_status: process.exit_status(),
            exited_at: process.exited_at(),
            ..Default::default()
        };
        if !exec_id.is_empty() {
            task.execs.remove(exec_id);
            return Ok(response);
        }
        let Some(task) = tasks.remove(id) else {
            return Err(ShimError::TaskNotFound(id.to_string()));
        };
        // Force: a created (never started) init is killed, and processes
        // that outlived the init (host pid namespace) go with the cgroup.
        let deleted = task.runtime.delete(id, &task.bundle);
        if task.mounted_rootfs {
            rootfs::unmount(&task.bundle);
        }
        drop(tasks);
        deleted?;
        publish(
            &self.events,
            TaskDelete {
                container_id: id.to_string(),
                id: id.to_string(),
                pid: response.pid,
                exit_status: response.exit_status,
                exited_at: response.exited_at.clone(),
                ..Default::default()
            },
        );
        Ok(response)
    }

    fn kill_process(&self, req: &api::KillRequest) -> R<()> {
        let mut tasks = self.tasks.lock();
        let task = tasks::find(&mut tasks, &req.id)?;
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
        // SAFETY: kill(2) on a pid this shim reaps: until the exit watcher
        // has recorded its exit the pid cannot be reused.
        if unsafe { libc::kill(process.pid as libc::pid_t, req.signal as libc::c_int) } < 0 {
            return Err(ShimError::io(format!("kill exec {}", req.exec_id))(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn state_of(&self, id: &str, exec_id: &str) -> R<api::StateResponse> {
        let mut tasks = self.tasks.lock();
        let task = tasks::find(&mut tasks, id)?;
        let (bundle, runtime) = (task.bundle.clone(), task.runtime.clone());
        let process = task.process(id, exec_id)?;
        let mut status = process.status();
        if exec_id.is_empty() && status == Status::RUNNING {
            if let Ok(c) = runtime.load(id) {
                if c.status() == SkiffStatus::Paused {
                    status = Status::PAUSED;
                }
            }
        }
        Ok(api::StateResponse {
            id: if exec_id.is_empty() { id } else { exec_id }.to_string(),
            bundle: bundle.display().to_string(),
            pid: process.pid,
            status: status.into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: process.exit_status(),
            exited_at: process.exited_at(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        })
    }

    fn add_exec(&self, req: &api::ExecProcessRequest) -> R<()> {
        let mut tasks = self.tasks.lock();
        let task = tasks::find(&mut tasks, &req.id)?;
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
        drop(tasks);
        publish(
            &self.events,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(())
    }

    /// A runtime call on a live task's container.
    fn with_container<T>(
        &self,
        id: &str,
        f: impl FnOnce(&skiff::container::Container) -> R<T>,
    ) -> R<T> {
        let mut tasks = self.tasks.lock();
        let container = tasks::find(&mut tasks, id)?.runtime.load(id)?;
        f(&container)
    }

    fn update_resources(&self, req: &api::UpdateTaskRequest) -> R<()> {
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
        self.with_container(&req.id, |c| {
            if c.status() == SkiffStatus::Stopped {
                return Err(ShimError::Finished {
                    id: req.id.clone(),
                    exec_id: String::new(),
                });
            }
            c.cgroup()
                .apply(&resources)
                .map_err(|e| ShimError::container(&req.id)(e.into()))
        })
    }
}

/// Sets up a process's stdio, runs `spawn` with the skiff command's stdio
/// and console socket, and returns the pid and what the shim holds.
fn spawn_process(
    paths: &Paths,
    owner: &stdio::Owner<'_>,
    spawn: impl FnOnce(stdio::ChildIo, Option<&Path>) -> R<u32>,
) -> R<(u32, stdio::Held)> {
    if paths.terminal {
        let socket = ConsoleSocket::bind(Path::new(CONSOLE_DIR))?;
        let pid = spawn(stdio::ChildIo::null(), Some(socket.path()))?;
        let master = socket.receive()?;
        return Ok((pid, stdio::relay_terminal(paths, owner, master)?));
    }
    let (io, held) = stdio::open_direct(paths, owner)?;
    Ok((spawn(io, None)?, held))
}

fn reply<T>(r: R<T>) -> TtrpcResult<T> {
    r.map_err(Into::into)
}

fn empty(r: R<()>) -> TtrpcResult<api::Empty> {
    reply(r.map(|()| api::Empty::default()))
}

impl containerd_shim::Task for Service {
    fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        reply(self.state_of(&req.id, &req.exec_id))
    }

    fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        reply(self.create_task(&req))
    }

    fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        reply(
            self.start_process(&req.id, &req.exec_id)
                .map(|pid| api::StartResponse {
                    pid,
                    ..Default::default()
                }),
        )
    }

    fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        reply(self.delete_process(&req.id, &req.exec_id))
    }

    fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        reply(self.with_container(&req.id, |c| {
            let pids = c
                .cgroup()
                .procs()
                .map_err(|e| ShimError::container(&req.id)(e.into()))?;
            Ok(api::PidsResponse {
                processes: pids
                    .into_iter()
                    .map(|pid| ProcessInfo {
                        pid: pid as u32,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        }))
    }

    fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        let r = self.with_container(&req.id, |c| {
            c.pause().map_err(ShimError::container(&req.id))
        });
        if r.is_ok() {
            publish(
                &self.events,
                TaskPaused {
                    container_id: req.id.clone(),
                    ..Default::default()
                },
            );
        }
        empty(r)
    }

    fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        let r = self.with_container(&req.id, |c| {
            c.resume().map_err(ShimError::container(&req.id))
        });
        if r.is_ok() {
            publish(
                &self.events,
                TaskResumed {
                    container_id: req.id.clone(),
                    ..Default::default()
                },
            );
        }
        empty(r)
    }

    fn checkpoint(
        &self,
        _: &TtrpcContext,
        _: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        empty(Err(ShimError::CheckpointUnsupported))
    }

    fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        empty(self.kill_process(&req))
    }

    fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        empty(self.add_exec(&req))
    }

    fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<api::Empty> {
        let mut tasks = self.tasks.lock();
        empty(
            tasks::find(&mut tasks, &req.id)
                .and_then(|t| t.process(&req.id, &req.exec_id).map(|p| &p.held))
                .and_then(|held| held.resize(req.width, req.height)),
        )
    }

    fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        let mut tasks = self.tasks.lock();
        empty(
            tasks::find(&mut tasks, &req.id)
                .and_then(|t| t.process(&req.id, &req.exec_id))
                .map(|p| p.held.close_stdin()),
        )
    }

    fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        empty(self.update_resources(&req))
    }

    fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        reply(
            self.tasks
                .wait(&req.id, &req.exec_id)
                .map(|Exit { status, at }| api::WaitResponse {
                    exit_status: status,
                    exited_at: MessageField::some(at),
                    ..Default::default()
                }),
        )
    }

    fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        reply(self.with_container(&req.id, |c| {
            let cgroup = c.cgroup();
            let any = metrics::to_any(&cgroup.stats(), cgroup.record().unified).map_err(|e| {
                ShimError::Invalid {
                    field: "stats".into(),
                    detail: e.to_string(),
                }
            })?;
            Ok(api::StatsResponse {
                stats: MessageField::some(any),
                ..Default::default()
            })
        }))
    }

    fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let tasks = self.tasks.lock();
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: tasks.get(&req.id).map_or(0, |t| t.init.pid),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, _: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        // A shim serving a pod stays until its last container is deleted.
        if self.tasks.lock().is_empty() {
            self.exit.signal();
        }
        Ok(api::Empty::default())
    }
}
