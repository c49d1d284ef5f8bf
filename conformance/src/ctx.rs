//! What a case works with: the runtime under test (driven only through its
//! runc-compatible command line), a private state root, scratch space, and
//! bundles built from the shared busybox + checker rootfs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fixture;

/// A runtime under test.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub name: String,
    pub path: PathBuf,
}

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Fail(String),
    Skip(String),
}

/// What a case step returns.
pub type Check<T = ()> = Result<T, Failure>;

/// Fails the case with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::ctx::Failure::Fail(format!($($arg)*)));
        }
    };
}

/// Skips the case with a reason.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {
        return Err($crate::ctx::Failure::Skip(format!($($arg)*)))
    };
}

/// Shorthand for a failure.
pub fn fail<T>(msg: impl Into<String>) -> Check<T> {
    Err(Failure::Fail(msg.into()))
}

/// The result of one runtime invocation.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Fails unless the command succeeded.
    pub fn ok(self, what: &str) -> Check<Output> {
        if self.code == 0 {
            Ok(self)
        } else {
            fail(format!(
                "{what} exited {}: {}",
                self.code,
                self.stderr.trim()
            ))
        }
    }
}

/// A bundle: directory, rootfs and the config to write.
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// Writes config.json.
    pub fn write(&self) {
        let _ = std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap_or_default(),
        );
    }

    /// Replaces the process args.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Sets new namespaces of these types, dropping the hostname when there
    /// is no UTS namespace for it.
    pub fn namespaces(&mut self, types: &[&str]) -> &mut Self {
        let list: Vec<Value> = types.iter().map(|t| json!({ "type": t })).collect();
        self.config["linux"]["namespaces"] = json!(list);
        if !types.contains(&"uts") {
            if let Some(o) = self.config.as_object_mut() {
                o.remove("hostname");
            }
        }
        self
    }

    /// Adds a mount entry.
    pub fn mount(&mut self, m: Value) -> &mut Self {
        if let Some(list) = self.config["mounts"].as_array_mut() {
            list.push(m);
        }
        self
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Per-case context.
pub struct Ctx<'a> {
    pub runtime: &'a Runtime,
    pub root: PathBuf,
    pub dir: PathBuf,
    created: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(runtime: &'a Runtime, work: &Path, case: &str) -> Ctx<'a> {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = work.join(format!("{}-{n}", runtime.name)).join(case);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        let root = dir.join("state");
        Ctx {
            runtime,
            root,
            dir,
            created: Vec::new(),
        }
    }

    /// A fresh container id, remembered for cleanup.
    pub fn id(&mut self) -> String {
        let id = format!(
            "cf{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        self.created.push(id.clone());
        id
    }

    /// A bundle on the shared rootfs running the checker's report.
    pub fn bundle(&self) -> Bundle {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir.join(format!("bundle{n}"));
        let _ = std::fs::create_dir_all(&dir);
        let rootfs = fixture::shared_rootfs().to_path_buf();
        let config = fixture::default_config(&rootfs);
        Bundle {
            dir,
            rootfs,
            config,
        }
    }

    /// A bundle with a private rootfs copy (for cases that change it).
    pub fn bundle_own_rootfs(&self) -> Bundle {
        let mut b = self.bundle();
        let rootfs = b.dir.join("rootfs");
        fixture::make_rootfs(&rootfs);
        b.config["root"]["path"] = json!("rootfs");
        b.rootfs = rootfs;
        b
    }

    /// Runs the runtime with `args` (after `--root`), with a timeout.
    pub fn rt(&self, args: &[&str]) -> Output {
        self.rt_with(args, Duration::from_secs(60), |_| {})
    }

    /// Runs the runtime with extra command setup.
    pub fn rt_with(
        &self,
        args: &[&str],
        timeout: Duration,
        setup: impl FnOnce(&mut Command),
    ) -> Output {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let out_path = self.dir.join(format!("out{n}"));
        let err_path = self.dir.join(format!("err{n}"));
        let mut cmd = Command::new(&self.runtime.path);
        cmd.arg("--root").arg(&self.root).args(args);
        cmd.stdin(Stdio::null());
        // Files, not pipes: a created container keeps the runtime's stdio,
        // and a pipe would never reach end-of-file.
        match (
            std::fs::File::create(&out_path),
            std::fs::File::create(&err_path),
        ) {
            (Ok(o), Ok(e)) => {
                cmd.stdout(o).stderr(e);
            }
            _ => {
                return Output {
                    code: -1,
                    stdout: String::new(),
                    stderr: "cannot create output files".into(),
                }
            }
        }
        setup(&mut cmd);
        let code = match cmd.spawn() {
            Ok(mut child) => {
                let deadline = Instant::now() + timeout;
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break status.code().unwrap_or(-1),
                        Ok(None) if Instant::now() > deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break -2;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                        Err(_) => break -1,
                    }
                }
            }
            Err(e) => {
                return Output {
                    code: -1,
                    stdout: String::new(),
                    stderr: e.to_string(),
                }
            }
        };
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let mut stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        if code == -2 {
            stderr.push_str("\n(timed out)");
        }
        let _ = std::fs::remove_file(out_path);
        let _ = std::fs::remove_file(err_path);
        Output {
            code,
            stdout,
            stderr,
        }
    }

    /// `run --bundle B ID`.
    pub fn run(&mut self, b: &Bundle) -> Output {
        b.write();
        let id = self.id();
        self.rt(&["run", "--bundle", &b.dir.display().to_string(), &id])
    }

    /// Runs the bundle and parses the checker's JSON from stdout.
    pub fn report(&mut self, b: &Bundle) -> Check<Value> {
        let out = self.run(b).ok("run")?;
        serde_json::from_str(out.stdout.trim())
            .map_err(|e| Failure::Fail(format!("checker output: {e}: {}", out.stdout)))
    }

    /// Runs the bundle with `args` and returns trimmed stdout.
    pub fn output(&mut self, b: &mut Bundle, args: &[&str]) -> Check<String> {
        b.args(args);
        let out = self.run(b).ok("run")?;
        Ok(out.stdout.trim().to_string())
    }

    /// `create --bundle B ID`; returns the id.
    pub fn create(&mut self, b: &Bundle, extra: &[&str]) -> Check<String> {
        b.write();
        let id = self.id();
        let dir = b.dir.display().to_string();
        let mut args = vec!["create", "--bundle", dir.as_str()];
        args.extend_from_slice(extra);
        args.push(&id);
        self.rt(&args).ok("create")?;
        Ok(id)
    }

    /// Parsed `state ID`.
    pub fn state(&self, id: &str) -> Check<Value> {
        let out = self.rt(&["state", id]).ok("state")?;
        serde_json::from_str(&out.stdout)
            .map_err(|e| Failure::Fail(format!("state JSON: {e}: {}", out.stdout)))
    }

    /// Waits until `state ID` reports `status`.
    pub fn wait_status(&self, id: &str, status: &str) -> Check {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.state(id)?;
            if s["status"] == status {
                return Ok(());
            }
            if Instant::now() > deadline {
                return fail(format!(
                    "{id} stayed {} (waiting for {status})",
                    s["status"]
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Deletes every container this case made (errors ignored: most are
    /// gone already).
    pub fn cleanup(&mut self) {
        for id in std::mem::take(&mut self.created) {
            let _ = self.rt_with(&["delete", "--force", &id], Duration::from_secs(30), |_| {});
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
