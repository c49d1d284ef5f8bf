//! The last steps before the container process runs: finding the program
//! in the container's PATH, handing over exactly the fds it should have,
//! restoring the signal state, and execve.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::AccessFlags;

/// Why the program cannot be run. The wording follows runc's, which
/// engines match on (Podman maps "not found" to exit code 127 and
/// "permission denied" to 126).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: {name:?}: stat {path}: {source}")]
    Stat {
        name: String,
        path: String,
        source: Errno,
    },
    #[error("exec: {name:?}: permission denied")]
    NotExecutable { name: String },
    #[error("process.args: {0}")]
    Nul(String),
    #[error("preparing to exec: {what}: {source}")]
    Prepare { what: &'static str, source: Errno },
    #[error("exec {path}: {source}")]
    Exec { path: String, source: Errno },
    #[error("linux.seccomp: {0}")]
    Seccomp(String),
}

/// The default PATH when the process environment has none (execvp's).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn is_executable_file(path: &Path) -> Result<bool, Errno> {
    let st = nix::sys::stat::stat(path)?;
    let file = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    Ok(file && nix::unistd::access(path, AccessFlags::X_OK).is_ok())
}

/// Resolves `name` like execvp, against the PATH in `env`. Runs in the
/// container after pivot_root and the user switch, so what it checks is
/// what the process will be able to run.
pub fn find_program(name: &str, env: &[String]) -> Result<PathBuf, ExecError> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return match is_executable_file(&path) {
            Ok(true) => Ok(path),
            Ok(false) => Err(ExecError::NotExecutable { name: name.into() }),
            Err(source) => Err(ExecError::Stat {
                name: name.into(),
                path: name.into(),
                source,
            }),
        };
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        match is_executable_file(&candidate) {
            Ok(true) => return Ok(candidate),
            Ok(false) => denied |= candidate.is_file(),
            Err(_) => {}
        }
    }
    if denied {
        Err(ExecError::NotExecutable { name: name.into() })
    } else {
        Err(ExecError::NotFound(name.into()))
    }
}

fn cstrings(list: &[String], what: &str) -> Result<Vec<CString>, ExecError> {
    list.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| ExecError::Nul(format!("{what} {s:?} contains a NUL byte")))
        })
        .collect()
}

/// What the container process inherits from the runtime.
pub struct Handover<'a> {
    /// Number of fds after stdio to pass on (`--preserve-fds`).
    pub preserve_fds: u32,
    /// The signal mask to restore (the one the runtime was started with).
    pub sigmask: Option<&'a SigSet>,
}

/// An exec with everything that can fail or allocate already done: only
/// the signal mask, the seccomp filter and execve itself remain. Once the
/// filter is on, the runtime makes no syscall but execve: a profile knows
/// nothing of the runtime's needs (an allow list recorded from the
/// application allows only what the application calls).
pub struct Prepared<'a> {
    path: CString,
    /// Owns what `argv` and `envp` point into.
    _strings: (Vec<CString>, Vec<CString>),
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    sigmask: Option<&'a SigSet>,
    seccomp: Option<&'a skiff_seccomp::Filter>,
}

/// NULL-terminated pointers to `strings` (which must outlive them).
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Sets up the fds and signal dispositions the program inherits. With
/// `seccomp`, the filter is installed by `exec`, right before execve.
pub fn prepare<'a>(
    path: &Path,
    args: &[String],
    env: &[String],
    handover: &Handover<'a>,
    seccomp: Option<&'a skiff_seccomp::Filter>,
) -> Result<Prepared<'a>, ExecError> {
    let prepare = |what: &'static str| move |source| ExecError::Prepare { what, source };
    // Everything above the preserved range closes at exec; the preserved
    // fds themselves must survive it.
    let first_closed = 3 + handover.preserve_fds;
    crate::syscalls::cloexec_from(first_closed).map_err(prepare("close_range"))?;
    for fd in 3..first_closed {
        // SAFETY: F_SETFD on an fd number; EBADF for a gap is harmless.
        unsafe { libc::fcntl(fd as libc::c_int, libc::F_SETFD, 0) };
    }
    // Rust ignores SIGPIPE at startup; the container must not inherit that.
    // SAFETY: resetting a disposition to the default is always sound.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .map_err(prepare("reset SIGPIPE"))?;
    let args = cstrings(args, "argument")?;
    let env = cstrings(env, "environment entry")?;
    Ok(Prepared {
        path: CString::new(path.as_os_str().as_bytes())
            .map_err(|_| ExecError::Nul("program path".into()))?,
        argv: pointers(&args),
        envp: pointers(&env),
        _strings: (args, env),
        sigmask: handover.sigmask,
        seccomp,
    })
}

/// Restores the signal mask, installs the seccomp filter and replaces this
/// process with the program.
pub fn exec(p: &Prepared<'_>) -> Result<std::convert::Infallible, ExecError> {
    if let Some(mask) = p.sigmask {
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None).map_err(
            |source| ExecError::Prepare {
                what: "sigprocmask",
                source,
            },
        )?;
    }
    if let Some(filter) = p.seccomp {
        skiff_seccomp::install(filter).map_err(|e| ExecError::Seccomp(e.to_string()))?;
    }
    // SAFETY: path, argv and envp are valid and NULL-terminated, owned by
    // `p`. Nothing here allocates: the filter may allow no mmap or brk.
    unsafe { libc::execve(p.path.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    let source = Errno::last();
    Err(ExecError::Exec {
        path: p.path.to_string_lossy().into_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_in_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let p = find_program("sh", &env).unwrap();
        assert!(p.ends_with("sh"));
    }

    #[test]
    fn missing_program_uses_runc_wording() {
        let env = vec!["PATH=/bin".to_string()];
        assert_eq!(
            find_program("no-such-program-xyz", &env)
                .unwrap_err()
                .to_string(),
            "exec: \"no-such-program-xyz\": executable file not found in $PATH"
        );
        let err = find_program("/no/such", &env).unwrap_err().to_string();
        assert_eq!(
            err,
            "exec: \"/no/such\": stat /no/such: ENOENT: No such file or directory"
        );
    }

    #[test]
    fn directory_is_not_a_program() {
        assert!(matches!(
            find_program("/", &[]),
            Err(ExecError::NotExecutable { .. })
        ));
    }
}
