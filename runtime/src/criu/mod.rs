//! Checkpoint and restore with CRIU, driven over its RPC interface
//! (`criu swrk`), with runc's options and meaning. Nothing here runs on
//! the create or exec path: only `checkpoint` and `restore` reach it.
//!
//! What CRIU cannot see for itself comes from the container's saved
//! configuration: bind mounts from the host (external mounts, mapped back
//! to their sources on restore), host device nodes bind-mounted under
//! /dev, namespaces the container joined rather than created, its stdio
//! (pipes and host files handed over to whoever runs `restore`), its
//! cgroup (restored into the new container's), and the
//! `org.criu.config` annotation.

pub mod checkpoint;
mod externals;
pub mod restore;
pub mod rpc;
pub mod swrk;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// The annotation naming a CRIU configuration file ("" for none).
pub const CONFIG_ANNOTATION: &str = "org.criu.config";
/// The file used when the annotation is absent, as runc does.
const DEFAULT_CONFIG: &str = "/etc/criu/runc.conf";
/// Where the container's stdio is described in the image directory
/// (runc's file name and layout: a JSON list of fds 0, 1 and 2).
const DESCRIPTORS: &str = "descriptors.json";
/// skiff's own addition: the kind of each stdio that was a host file.
const STDIO_KINDS: &str = "skiff-stdio.json";

/// Why a checkpoint or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error(
        "criu binary {0:?} not found (install CRIU 3.0 or newer, or name it with --criu PATH)"
    )]
    NotFound(PathBuf),
    #[error("starting {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("criu {0} is too old: skiff needs CRIU 3.0 or newer")]
    TooOld(String),
    #[error("criu exited without answering ({0})")]
    Exited(String),
    #[error(transparent)]
    Malformed(#[from] rpc::Malformed),
    #[error("criu {action} failed: {detail} (log: {})", log.display())]
    Failed {
        action: &'static str,
        detail: String,
        log: PathBuf,
    },
    #[error("{}: {why}", path.display())]
    ImageDir { path: PathBuf, why: String },
    #[error("{what}: {source}")]
    Sys { what: String, source: Errno },
    #[error(
        "the container's {stream} was a {was} when checkpointed, restore's is a {now}: CRIU reattaches only the same kind of file"
    )]
    StdioKind {
        stream: &'static str,
        was: String,
        now: &'static str,
    },
    #[error("{option}: {why}")]
    Option { option: &'static str, why: String },
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
}

impl From<crate::cgroups::CgroupError> for CriuError {
    fn from(e: crate::cgroups::CgroupError) -> CriuError {
        CriuError::Container(e.into())
    }
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> CriuError {
    let what = what.into();
    move |source| CriuError::Sys { what, source }
}

/// The options checkpoint and restore share (runc's names).
#[derive(Debug, Clone, Default)]
pub struct Common {
    pub criu: PathBuf,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<rpc::CgMode>,
    /// CLONE_NEW* flags of namespaces created empty.
    pub empty_ns: u32,
    pub lazy_pages: bool,
    pub status_fd: Option<i32>,
}

/// `--manage-cgroups-mode` values.
pub fn parse_cg_mode(text: &str) -> Result<rpc::CgMode, CriuError> {
    match text {
        "soft" => Ok(rpc::CgMode::Soft),
        "full" => Ok(rpc::CgMode::Full),
        "strict" => Ok(rpc::CgMode::Strict),
        "ignore" => Ok(rpc::CgMode::Ignore),
        other => Err(CriuError::Option {
            option: "--manage-cgroups-mode",
            why: format!("{other:?} is not one of soft, full, strict, ignore"),
        }),
    }
}

/// `--empty-ns` values: only the network namespace, as with runc (the
/// caller sets it up again, e.g. from a CNI plugin).
pub fn parse_empty_ns(names: &[String]) -> Result<u32, CriuError> {
    let mut mask = 0;
    for n in names {
        match n.as_str() {
            "network" | "net" => mask |= libc::CLONE_NEWNET as u32,
            other => {
                return Err(CriuError::Option {
                    option: "--empty-ns",
                    why: format!("{other:?}: only the network namespace can be left empty"),
                })
            }
        }
    }
    Ok(mask)
}

/// An opened image or work directory: CRIU gets its fd.
struct Dir {
    path: PathBuf,
    fd: OwnedFd,
}

impl Dir {
    fn open(path: &Path) -> Result<Dir, CriuError> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| CriuError::ImageDir {
            path: path.to_path_buf(),
            why: e.desc().to_string(),
        })?;
        Ok(Dir {
            path: path.to_path_buf(),
            fd,
        })
    }

    fn create(path: &Path) -> Result<Dir, CriuError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| CriuError::ImageDir {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
        Dir::open(path)
    }

    fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// The image and work directories of one operation.
struct Dirs {
    image: Dir,
    work: Dir,
}

impl Dirs {
    fn fds(&self) -> [i32; 2] {
        [self.image.raw(), self.work.raw()]
    }
}

/// The CRIU configuration file to pass: the annotation's when set
/// (empty: none), else runc's default file when it exists.
fn config_file(annotations: Option<&std::collections::HashMap<String, String>>) -> Option<String> {
    match annotations.and_then(|a| a.get(CONFIG_ANNOTATION)) {
        Some(file) if file.is_empty() => None,
        Some(file) => Some(file.clone()),
        None => Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| DEFAULT_CONFIG.to_string()),
    }
}

/// The options every request carries.
fn base_opts(common: &Common, dirs: &Dirs, log_file: &str) -> rpc::Opts {
    rpc::Opts {
        images_dir_fd: dirs.image.raw(),
        work_dir_fd: Some(dirs.work.raw()),
        log_level: 4,
        log_file: log_file.into(),
        tcp_established: common.tcp_established,
        ext_unix_sk: common.ext_unix_sk,
        shell_job: common.shell_job,
        file_locks: common.file_locks,
        manage_cgroups: true,
        manage_cgroups_mode: common.manage_cgroups_mode,
        // A network namespace the container created is dumped and
        // restored empty, as runc does: the runtime set up nothing in it
        // but lo (brought up again on restore), and whatever else is
        // there belongs to whoever put it there. CRIU then needs no `ip`
        // or iptables of the host, and images move between skiff and
        // runc.
        empty_ns: common.empty_ns | libc::CLONE_NEWNET as u32,
        lazy_pages: common.lazy_pages,
        status_fd: common.status_fd,
        notify_scripts: true,
        orphan_pts_master: true,
        ..rpc::Opts::default()
    }
}

/// Errors CRIU logs and survives: never the reason a request failed.
const BENIGN: &[&str] = &["rlimit: Can't setup RLIMIT_NOFILE"];

/// The error for a failed request: the first error line of CRIU's log
/// (the cause; the lines after it are its consequences), else what the
/// response said.
fn failure(action: &'static str, resp: &rpc::Resp, log: PathBuf) -> CriuError {
    let logged = std::fs::read_to_string(&log).ok().and_then(|text| {
        text.lines()
            .find(|l| l.contains("Error (") && !BENIGN.iter().any(|b| l.contains(b)))
            .map(|l| {
                // "(00.012345) Error (criu/x.c:12): what" -> "what".
                let l = l.split_once(") Error").map_or(l, |(_, rest)| rest);
                let l = l.split_once("): ").map_or(l, |(_, rest)| rest);
                l.trim().to_string()
            })
    });
    let detail = logged
        .or_else(|| resp.cr_errmsg.clone())
        .or_else(|| resp.cr_errno.map(|e| Errno::from_raw(e).desc().to_string()))
        .unwrap_or_else(|| "no reason given".into());
    CriuError::Failed {
        action,
        detail,
        log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values() {
        assert_eq!(parse_cg_mode("ignore").unwrap(), rpc::CgMode::Ignore);
        assert!(parse_cg_mode("hard")
            .unwrap_err()
            .to_string()
            .contains("--manage-cgroups-mode"));
        assert_eq!(
            parse_empty_ns(&["network".into()]).unwrap(),
            libc::CLONE_NEWNET as u32
        );
        assert!(parse_empty_ns(&["pid".into()]).is_err());
    }

    #[test]
    fn config_file_from_the_annotation() {
        let mut a = std::collections::HashMap::new();
        a.insert(CONFIG_ANNOTATION.to_string(), "/etc/x.conf".to_string());
        assert_eq!(config_file(Some(&a)).as_deref(), Some("/etc/x.conf"));
        a.insert(CONFIG_ANNOTATION.to_string(), String::new());
        assert_eq!(config_file(Some(&a)), None);
    }

    #[test]
    fn failure_names_the_last_logged_error() {
        let dir = std::env::temp_dir().join(format!("skiff-criu-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("dump.log");
        std::fs::write(
            &log,
            "(00.001) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n(00.002) Error (criu/sk-inet.c:190): inet: Connected TCP socket, consider using --tcp-established option.\n(00.003) Error (criu/cr-dump.c:2093): Dumping FAILED.\n",
        )
        .unwrap();
        let e = failure("dump", &rpc::Resp::default(), log.clone());
        assert_eq!(
            e.to_string(),
            format!(
                "criu dump failed: inet: Connected TCP socket, consider using --tcp-established option. (log: {})",
                log.display()
            )
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
