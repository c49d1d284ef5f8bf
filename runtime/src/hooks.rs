//! OCI hooks: each is run with the container state on stdin, its own
//! `args` and `env`, and an optional timeout. Output is captured so a
//! failing hook's stderr can be quoted in the error.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{Hook, Hooks};

/// The six points where hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    /// Every kind, in the order the lifecycle runs them.
    pub const ALL: [Kind; 6] = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ];

    /// The spec's name for the hook list.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    /// The hooks of this kind in `hooks`.
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)]
        let list = match self {
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hooks.{kind}[{index}] {path}: {source}")]
    Spawn {
        kind: &'static str,
        index: usize,
        path: String,
        source: std::io::Error,
    },
    #[error("hooks.{kind}[{index}] {path}: {status}{stderr}")]
    Failed {
        kind: &'static str,
        index: usize,
        path: String,
        status: String,
        stderr: String,
    },
    #[error("hooks.{kind}[{index}] {path}: timed out after {secs}s")]
    Timeout {
        kind: &'static str,
        index: usize,
        path: String,
        secs: i64,
    },
}

/// True when `hooks` has at least one hook of `kind`.
pub fn any(hooks: Option<&Hooks>, kind: Kind) -> bool {
    hooks.is_some_and(|h| !kind.of(h).is_empty())
}

/// Runs every hook of `kind` in order; the first failure stops the rest.
pub fn run(hooks: Option<&Hooks>, kind: Kind, state: &[u8]) -> Result<(), HookError> {
    let Some(hooks) = hooks else { return Ok(()) };
    for (index, hook) in kind.of(hooks).iter().enumerate() {
        run_one(hook, kind, index, state)?;
    }
    Ok(())
}

/// Runs every hook of `kind`, logging failures as warnings and going on:
/// what the spec asks for poststop hooks.
pub fn run_warn(hooks: Option<&Hooks>, kind: Kind, state: &[u8]) {
    let Some(hooks) = hooks else { return };
    for (index, hook) in kind.of(hooks).iter().enumerate() {
        if let Err(e) = run_one(hook, kind, index, state) {
            crate::warn!("{e}");
        }
    }
}

fn memfd(name: &std::ffi::CStr) -> std::io::Result<File> {
    // SAFETY: memfd_create with a valid name; the fd is ours.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nothing else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn run_one(hook: &Hook, kind: Kind, index: usize, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let spawn_err = |source| HookError::Spawn {
        kind: kind.name(),
        index,
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args().as_deref().filter(|a| !a.is_empty()) {
        cmd.arg0(&args[0]).args(&args[1..]);
    }
    // Without `env` the hook inherits the runtime's environment, as in runc.
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for entry in env {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            cmd.env(k, v);
        }
    }
    let mut stderr = memfd(c"hook-stderr").map_err(spawn_err)?;
    let stdout = memfd(c"hook-stdout").map_err(spawn_err)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr.try_clone().map_err(spawn_err)?));
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE).
        let _ = stdin.write_all(state);
    }
    let timeout = hook.timeout().filter(|t| *t > 0);
    if let Some(secs) = timeout {
        if !wait_exit(child.id() as libc::pid_t, secs).map_err(|e| spawn_err(e.into()))? {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                kind: kind.name(),
                index,
                path,
                secs,
            });
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = stderr.rewind();
    let _ = stderr.read_to_string(&mut text);
    let text = text.trim();
    let stderr = if text.is_empty() {
        String::new()
    } else {
        let tail: String = text
            .chars()
            .rev()
            .take(512)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!(", stderr: {}", tail.replace('\n', " | "))
    };
    Err(HookError::Failed {
        kind: kind.name(),
        index,
        path,
        status: status.to_string(),
        stderr,
    })
}

/// Waits up to `secs` for `pid` to exit, without reaping it. Returns false
/// on timeout.
fn wait_exit(pid: libc::pid_t, secs: i64) -> Result<bool, Errno> {
    let pidfd = crate::syscalls::pidfd_open(pid)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs as u64);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hooks {
        serde_json::from_value(serde_json::json!({ "prestart": [json] })).unwrap()
    }

    #[test]
    fn state_arrives_on_stdin_and_args_env_apply() {
        let out = std::env::temp_dir().join(format!("skiff-hook-{}", std::process::id()));
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", "cat > \"$OUT\"; echo \"$0 $X\" >> \"$OUT\"", "name0"],
            "env": [format!("OUT={}", out.display()), "X=y"]
        }));
        run(Some(&h), Kind::Prestart, b"{\"id\":\"c\"}").unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        assert_eq!(text, "{\"id\":\"c\"}name0 y\n");
    }

    #[test]
    fn failure_quotes_stderr() {
        let h = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo boom >&2; exit 3"]}),
        );
        let err = run(Some(&h), Kind::Prestart, b"{}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "hooks.prestart[0] /bin/sh: exit status: 3, stderr: boom"
        );
    }

    #[test]
    fn timeout_kills() {
        let h =
            hook(serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}));
        let t = std::time::Instant::now();
        let err = run(Some(&h), Kind::Prestart, b"{}")
            .unwrap_err()
            .to_string();
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(err, "hooks.prestart[0] /bin/sleep: timed out after 1s");
    }

    #[test]
    fn missing_binary() {
        let h = hook(serde_json::json!({"path": "/nonexistent/hook"}));
        let err = run(Some(&h), Kind::Prestart, b"{}")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("hooks.prestart[0] /nonexistent/hook: No such file"),
            "{err}"
        );
    }
}
