//! Container state on disk: one directory per container under `--root`,
//! taken atomically (a duplicate id is an error, not a race), holding
//! `state.json` and, until `start`, the `exec.fifo` the init waits on.
//! Status is derived, never stored: from the init's pid and start time
//! (a recycled pid is never taken for the container) and the fifo.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};

use crate::cgroups;

/// The runtime-spec version skiff implements.
pub const OCI_VERSION: &str = "1.3.0";

const STATE_FILE: &str = "state.json";
const EXEC_FIFO: &str = "exec.fifo";
/// The container's configuration as parsed at create: `exec` runs its new
/// process with the container's namespaces, seccomp profile and defaults.
const CONFIG_FILE: &str = "config.json";

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id format: {0:?} (allowed: letters, digits, '_', '+', '-', '.')")]
    InvalidId(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("container does not exist")]
    NotExist,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the container's saved configuration: {0}")]
    Config(String),
    #[error("{path}: corrupt state: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A container's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    /// Alive with its cgroup frozen (`pause`).
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What skiff remembers about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub id: String,
    /// The init's pid in skiff's pid namespace.
    pub pid: libc::pid_t,
    /// The init's start time, from /proc/<pid>/stat.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub cgroup: cgroups::Record,
    /// True when the container has its own pid namespace: killing the init
    /// then ends every process in it.
    pub own_pid_ns: bool,
    /// The hooks later commands run (poststart, poststop).
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// The resctrl groups of `linux.intelRdt`, when asked for.
    #[serde(default)]
    pub rdt: Option<crate::resctrl::Record>,
}

/// The state as `skiff state` prints it and hooks read it (runc's field
/// order; the spec's fields plus rootfs, created and owner).
#[derive(Debug, Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub version: &'a str,
    pub id: &'a str,
    pub pid: libc::pid_t,
    pub status: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
    pub owner: &'a str,
}

impl<'a> OciState<'a> {
    /// The state of container `id` (owner left empty: only `list` and
    /// `state` show one).
    pub fn new(
        id: &'a str,
        pid: libc::pid_t,
        status: &'a str,
        (bundle, rootfs): (&'a Path, &'a Path),
        created: &'a str,
        annotations: &'a HashMap<String, String>,
    ) -> OciState<'a> {
        OciState {
            version: OCI_VERSION,
            id,
            pid,
            status,
            bundle,
            rootfs,
            created,
            annotations,
            owner: "",
        }
    }

    /// The JSON hooks and seccomp agents read.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The `--root` directory.
#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
}

/// Checks an id the way runc does; ids become directory names, so `/` and
/// `..` must never pass.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Root {
    pub fn new(path: PathBuf) -> Root {
        Root { path }
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Takes the directory for a new container; fails if the id is taken.
    pub fn claim(&self, id: &str) -> Result<PathBuf, StateError> {
        validate_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.path)
            .map_err(io(&self.path))?;
        let dir = self.dir(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(id.to_string()))
            }
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// Ids of every container directory, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        let entries = match std::fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.path)(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Path of the exec fifo in a container directory.
pub fn fifo_path(dir: &Path) -> PathBuf {
    dir.join(EXEC_FIFO)
}

/// Reads `state.json` from a container directory.
pub fn load(dir: &Path) -> Result<Stored, StateError> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::NotExist),
        Err(e) => return Err(io(&path)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
}

/// Writes `state.json` atomically (temp file + rename). No fsync: the
/// state lives on a tmpfs in production and a crash loses the containers
/// with it.
pub fn save(dir: &Path, stored: &Stored) -> Result<(), StateError> {
    let tmp = dir.join(".state.json.tmp");
    let path = dir.join(STATE_FILE);
    let bytes = serde_json::to_vec(stored).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Keeps config.json, as it was at create, for later `exec`s (copied as
/// bytes: the bundle may change or go away meanwhile).
pub fn save_config(dir: &Path, config: &[u8]) -> Result<(), StateError> {
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, config).map_err(io(&path))
}

/// The configuration kept by `save_config`, parsed.
pub fn load_spec(dir: &Path) -> Result<oci_spec::runtime::Spec, StateError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    crate::bundle::parse_spec(&bytes, &path).map_err(|e| StateError::Config(e.to_string()))
}

/// Writes a pid file atomically, as runc does (managers poll for it).
pub fn write_pid_file(path: &Path, pid: libc::pid_t) -> Result<(), StateError> {
    let path = std::path::absolute(path).map_err(io(path))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, pid.to_string()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Derives the status: the init must still be the process that started at
/// the recorded time; the fifo exists until `start`.
pub fn status(dir: &Path, stored: &Stored) -> Status {
    if !crate::procfs::is_alive(stored.pid, stored.start_time) {
        return Status::Stopped;
    }
    if cgroups::from_record(stored.cgroup.clone()).frozen() {
        Status::Paused
    } else if fifo_path(dir).exists() {
        Status::Created
    } else {
        Status::Running
    }
}

/// The name of the user owning `dir` (runc's `owner` column).
pub fn owner_name(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return String::new();
    };
    let uid = meta.uid();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-123_x.y+z", "0"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn claim_is_exclusive_and_state_round_trips() {
        let root =
            Root::new(std::env::temp_dir().join(format!("skiff-state-{}", std::process::id())));
        let dir = root.claim("c1").unwrap();
        assert!(matches!(root.claim("c1"), Err(StateError::Exists(_))));
        assert!(matches!(root.claim("../c1"), Err(StateError::InvalidId(_))));
        assert!(matches!(load(&dir), Err(StateError::NotExist)));
        let stored = Stored {
            id: "c1".into(),
            pid: std::process::id() as libc::pid_t,
            start_time: crate::procfs::stat(std::process::id() as libc::pid_t)
                .unwrap()
                .start_time,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2026-01-01T00:00:00Z".into(),
            annotations: HashMap::new(),
            cgroup: cgroups::Record {
                path: "/skiff/c1".into(),
                unified: true,
                dirs: vec![],
                unit: None,
            },
            own_pid_ns: true,
            hooks: None,
            rdt: None,
        };
        save(&dir, &stored).unwrap();
        let back = load(&dir).unwrap();
        assert_eq!(back.pid, stored.pid);
        assert_eq!(status(&dir, &back), Status::Running);
        std::fs::File::create(fifo_path(&dir)).unwrap();
        assert_eq!(status(&dir, &back), Status::Created);
        let mut gone = back.clone();
        gone.start_time += 1;
        assert_eq!(status(&dir, &gone), Status::Stopped);
        assert_eq!(root.ids().unwrap(), vec!["c1".to_string()]);
        std::fs::remove_dir_all(&root.path).unwrap();
    }
}
