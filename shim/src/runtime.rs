//! How the shim drives skiff. Creating a container or an exec forks, and
//! skiff's fork paths need a single-threaded caller, which a ttrpc server
//! is not: those two run the `skiff` binary. Everything that only reads
//! state, writes cgroup files or sends signals (start, kill, pause,
//! resume, update, delete, stats, pids) calls the skiff library in
//! process, which saves an exec of the runtime per request.

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff::container::Container;
use skiff::state::{Root, StateError};

use crate::api::{CheckpointOptions, Options};
use crate::error::ShimError;
use crate::stdio::ChildIo;
use crate::tasks::Checkpoint;

/// The skiff binary and the state root the shim's containers live under.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// CRIU's work directory (its logs) in a task's bundle, when containerd
/// names none.
pub const CRIU_WORK: &str = "criu-work";

/// Where the init's or an exec's skiff command writes its pid and log.
pub struct Files {
    pub pid: PathBuf,
    pub log: PathBuf,
}

impl Files {
    pub fn in_bundle(bundle: &Path, name: &str) -> Files {
        Files {
            pid: bundle.join(format!("{name}.pid")),
            log: bundle.join(format!("{name}-log.json")),
        }
    }
}

impl Runtime {
    /// The skiff binary: containerd's runtime options may name one;
    /// otherwise the one installed beside the shim, otherwise `skiff` on
    /// PATH.
    pub fn locate(binary_name: &str, root: &str, namespace: &str) -> Runtime {
        let binary = if !binary_name.is_empty() {
            PathBuf::from(binary_name)
        } else {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join("skiff")))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("skiff"))
        };
        let root = if root.is_empty() {
            PathBuf::from("/run/containerd/skiff")
        } else {
            PathBuf::from(root)
        };
        Runtime {
            binary,
            root: root.join(namespace),
        }
    }

    pub fn load(&self, id: &str) -> Result<Container, ShimError> {
        Container::load(&Root::new(self.root.clone()), id).map_err(ShimError::container(id))
    }

    /// `skiff create`; returns the init's pid.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        io: ChildIo,
        console: Option<&Path>,
        files: &Files,
        options: &Options,
    ) -> Result<u32, ShimError> {
        let mut cmd = self.init_command(files, options);
        cmd.arg("create").arg("--bundle").arg(bundle);
        init_flags(&mut cmd, id, files, console, options);
        self.run(cmd, io, "create", id, files)
    }

    /// `skiff exec --detach --process`; returns the process's pid.
    pub fn exec(
        &self,
        id: &str,
        process_json: &Path,
        io: ChildIo,
        console: Option<&Path>,
        files: &Files,
    ) -> Result<u32, ShimError> {
        let mut cmd = self.command(&files.log);
        cmd.args(["exec", "--detach", "--process"])
            .arg(process_json);
        cmd.arg("--pid-file").arg(&files.pid);
        if let Some(socket) = console {
            cmd.arg("--console-socket").arg(socket);
        }
        cmd.arg(id);
        self.run(cmd, io, "exec", id, files)
    }

    /// `skiff checkpoint` with the runc shim's options: CRIU's images go
    /// to `image`, its work files and log to `work`.
    pub fn checkpoint(
        &self,
        id: &str,
        image: &Path,
        work: &Path,
        opts: &CheckpointOptions,
        bundle: &Path,
    ) -> Result<(), ShimError> {
        let log = bundle.join("checkpoint-log.json");
        let mut cmd = self.command(&log);
        cmd.arg("checkpoint")
            .arg("--image-path")
            .arg(image)
            .arg("--work-path")
            .arg(work);
        for (set, flag) in [
            (!opts.exit, "--leave-running"),
            (opts.open_tcp, "--tcp-established"),
            (opts.external_unix_sockets, "--ext-unix-sk"),
            (opts.terminal, "--shell-job"),
            (opts.file_locks, "--file-locks"),
        ] {
            if set {
                cmd.arg(flag);
            }
        }
        for ns in &opts.empty_namespaces {
            cmd.arg("--empty-ns").arg(ns);
        }
        if !opts.cgroups_mode.is_empty() {
            cmd.arg("--manage-cgroups-mode").arg(&opts.cgroups_mode);
        }
        cmd.arg(id);
        self.run_to_end(cmd, ChildIo::null(), "checkpoint", id, &log)
    }

    /// `skiff restore --detach` from the checkpoint's images, in place of
    /// `create` and `start`; returns the restored init's pid (its pid and
    /// log files are the init's). A parent checkpoint goes as
    /// `--parent-path`, as the runc shim passes it to runc.
    pub fn restore(
        &self,
        id: &str,
        bundle: &Path,
        checkpoint: &Checkpoint,
        io: ChildIo,
        console: Option<&Path>,
        options: &Options,
    ) -> Result<u32, ShimError> {
        let files = Files::in_bundle(bundle, "init");
        let mut cmd = self.init_command(&files, options);
        cmd.args(["restore", "--detach", "--bundle"]).arg(bundle);
        cmd.arg("--image-path").arg(&checkpoint.image);
        cmd.arg("--work-path").arg(bundle.join(CRIU_WORK));
        if let Some(parent) = &checkpoint.parent {
            cmd.arg("--parent-path").arg(parent);
        }
        init_flags(&mut cmd, id, &files, console, options);
        self.run(cmd, io, "restore", id, &files)
    }

    /// skiff with the global flags of a command that makes the init:
    /// containerd's `SystemdCgroup = true`, as the runc shim passes it to
    /// runc. Only the init's maker needs it: the container's state
    /// records the unit for every later command.
    fn init_command(&self, files: &Files, options: &Options) -> Command {
        let mut cmd = self.command(&files.log);
        if options.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd
    }

    fn command(&self, log: &Path) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        cmd
    }

    /// Runs skiff to completion and reads the pid it wrote.
    fn run(
        &self,
        cmd: Command,
        io: ChildIo,
        op: &'static str,
        id: &str,
        files: &Files,
    ) -> Result<u32, ShimError> {
        let _ = std::fs::remove_file(&files.pid);
        self.run_to_end(cmd, io, op, id, &files.log)?;
        let pid = std::fs::read_to_string(&files.pid)
            .map_err(ShimError::io(format!("read {}", files.pid.display())))?;
        pid.trim().parse().map_err(|_| ShimError::Invalid {
            field: files.pid.display().to_string(),
            detail: format!("not a pid: {pid:?}"),
        })
    }

    /// Runs skiff to completion; its last logged error on failure. The
    /// shim reaps its other children on this same thread, between
    /// requests, so waiting for this one pid here takes no one's status.
    fn run_to_end(
        &self,
        mut cmd: Command,
        io: ChildIo,
        op: &'static str,
        id: &str,
        log: &Path,
    ) -> Result<(), ShimError> {
        let _ = std::fs::remove_file(log);
        cmd.stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
        let mut child = cmd
            .spawn()
            .map_err(ShimError::io(format!("run {}", self.binary.display())))?;
        // Drops our copies of the fifo fds: the child holds its own.
        drop(cmd);
        let status = child
            .wait()
            .map_err(ShimError::io(format!("wait for {}", self.binary.display())))?;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let _ = std::fs::remove_file(log);
        if !status.success() {
            return Err(ShimError::Runtime {
                op,
                id: id.to_string(),
                message: last_error(&text).unwrap_or_else(|| format!("ended with {status}")),
            });
        }
        Ok(())
    }

    /// Starts the created container. Poststart hooks run as children of
    /// whoever starts it: a container with such hooks is started by the
    /// binary, so the shim's own request paths never fork hook processes.
    pub fn start(&self, id: &str, bundle: &Path) -> Result<(), ShimError> {
        let container = self.load(id)?;
        let hooks = container.stored.hooks.as_ref();
        if hooks
            .and_then(|h| h.poststart().as_ref())
            .is_some_and(|v| !v.is_empty())
        {
            return self.run_plain(&["start", id], "start", id, bundle);
        }
        container.start().map_err(ShimError::container(id))
    }

    /// Deletes the container, killing what is left (see `start` for why
    /// poststop hooks go through the binary).
    /// A container skiff no longer knows is deleted already (a delete that
    /// failed after removing it is retried).
    pub fn delete(&self, id: &str, bundle: &Path) -> Result<(), ShimError> {
        let container = match Container::load(&Root::new(self.root.clone()), id) {
            Ok(c) => c,
            Err(skiff::container::ContainerError::State(StateError::NotExist)) => return Ok(()),
            Err(e) => return Err(ShimError::container(id)(e)),
        };
        let hooks = container.stored.hooks.as_ref();
        if hooks
            .and_then(|h| h.poststop().as_ref())
            .is_some_and(|v| !v.is_empty())
        {
            return self.run_plain(&["delete", "--force", id], "delete", id, bundle);
        }
        container.delete(true).map_err(ShimError::container(id))
    }

    fn run_plain(
        &self,
        args: &[&str],
        op: &'static str,
        id: &str,
        bundle: &Path,
    ) -> Result<(), ShimError> {
        let log = bundle.join(format!("{op}-log.json"));
        let mut cmd = self.command(&log);
        cmd.args(args);
        self.run_to_end(cmd, ChildIo::null(), op, id, &log)
    }
}

/// The flags `create` and `restore` share, and the container id last.
fn init_flags(
    cmd: &mut Command,
    id: &str,
    files: &Files,
    console: Option<&Path>,
    options: &Options,
) {
    cmd.arg("--pid-file").arg(&files.pid);
    if let Some(socket) = console {
        cmd.arg("--console-socket").arg(socket);
    }
    if options.no_pivot_root {
        cmd.arg("--no-pivot");
    }
    cmd.arg(id);
}

/// The message of the last error line in a JSON log.
fn last_error(log: &str) -> Option<String> {
    log.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("level")?.as_str()? == "error").then(|| v.get("msg")?.as_str().map(String::from))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_is_the_last_error_line() {
        let log = concat!(
            r#"{"level":"error","msg":"first","time":"t"}"#,
            "\n",
            r#"{"level":"warning","msg":"careful","time":"t"}"#,
            "\n",
            r#"{"level":"error","msg":"config.json: process.args: must not be empty","time":"t"}"#,
            "\n",
            r#"{"level":"info","msg":"bye","time":"t"}"#,
            "\n"
        );
        assert_eq!(
            last_error(log).as_deref(),
            Some("config.json: process.args: must not be empty")
        );
        assert_eq!(last_error("not json\n"), None);
    }

    #[test]
    fn root_is_per_namespace() {
        let rt = Runtime::locate("/usr/bin/skiff", "", "k8s.io");
        assert_eq!(rt.root, PathBuf::from("/run/containerd/skiff/k8s.io"));
        assert_eq!(rt.binary, PathBuf::from("/usr/bin/skiff"));
        let rt = Runtime::locate("", "/tmp/r", "default");
        assert_eq!(rt.root, PathBuf::from("/tmp/r/default"));
    }

    /// The restore command line, recorded by a stand-in for skiff that
    /// writes its arguments and the pid file it is asked for.
    fn restore_args(parent: Option<&str>) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "skiff-shim-restore-{}-{}",
            std::process::id(),
            parent.is_some()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("skiff");
        std::fs::write(
            &fake,
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n\
             while [ $# -gt 0 ]; do [ \"$1\" = --pid-file ] && echo 42 > \"$2\"; shift; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rt = Runtime::locate(fake.to_str().unwrap(), dir.to_str().unwrap(), "default");
        let checkpoint = Checkpoint {
            image: dir.join("image"),
            parent: parent.map(PathBuf::from),
        };
        let pid = rt
            .restore(
                "c1",
                &dir,
                &checkpoint,
                ChildIo::null(),
                None,
                &Options::default(),
            )
            .unwrap();
        assert_eq!(pid, 42);
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        args.lines().map(String::from).collect()
    }

    #[test]
    fn restore_passes_the_parent_checkpoint_as_parent_path() {
        let args = restore_args(Some("/ckpt/pre"));
        let at = args.iter().position(|a| a == "--parent-path").unwrap();
        assert_eq!(args[at + 1], "/ckpt/pre");
        assert_eq!(args.last().map(String::as_str), Some("c1"));
        assert!(!restore_args(None).iter().any(|a| a == "--parent-path"));
    }
}
