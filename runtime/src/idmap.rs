//! Writing a new user namespace's id maps. Root in the parent namespace
//! writes them itself, and so may a user whose map holds only its own id
//! (the kernel then wants setgroups denied first). Any other map goes
//! through the setuid newuidmap/newgidmap (Debian's `uidmap`), and only
//! after checking its host ids are the user's own or subordinate ones:
//! one clear error before anything is created, not the helper's.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxIdMapping;

use crate::rootless;

/// Why a user namespace's id maps cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("{field}[{index}]: host ids {start}-{end} may not be mapped by {user}: they are neither its {kind} nor among its subordinate ids in {path}")]
    NotSubordinate {
        field: &'static str,
        index: usize,
        start: u32,
        end: u64,
        user: String,
        kind: &'static str,
        path: &'static str,
    },
    #[error("{field}: {user} maps ids other than its own {kind}, which needs the setuid {helper} (package uidmap), not installed")]
    NoHelper {
        field: &'static str,
        user: String,
        kind: &'static str,
        helper: &'static str,
    },
    #[error("{helper} {args}: {status}{stderr}")]
    Helper {
        helper: PathBuf,
        args: String,
        status: String,
        stderr: String,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Which of a user namespace's two maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uid,
    Gid,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Uid => "linux.uidMappings",
            Kind::Gid => "linux.gidMappings",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Uid => "uid",
            Kind::Gid => "gid",
        }
    }

    fn proc_file(self) -> &'static str {
        match self {
            Kind::Uid => "uid_map",
            Kind::Gid => "gid_map",
        }
    }

    fn helper(self) -> &'static str {
        match self {
            Kind::Uid => "newuidmap",
            Kind::Gid => "newgidmap",
        }
    }

    fn subordinate_file(self) -> &'static str {
        match self {
            Kind::Uid => "/etc/subuid",
            Kind::Gid => "/etc/subgid",
        }
    }

    /// The caller's own id of this kind.
    fn own(self) -> u32 {
        match self {
            Kind::Uid => nix::unistd::geteuid().as_raw(),
            Kind::Gid => nix::unistd::getegid().as_raw(),
        }
    }
}

/// How one map gets written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Writer {
    /// By the runtime, into /proc/PID/*_map.
    Direct,
    /// By newuidmap or newgidmap, found at this path.
    Helper(PathBuf),
}

#[derive(Debug)]
struct Map {
    kind: Kind,
    entries: Vec<LinuxIdMapping>,
    writer: Writer,
}

/// Both maps of a user namespace to create, checked and ready to write.
#[derive(Debug)]
pub struct IdMaps {
    uid: Map,
    gid: Map,
}

impl IdMaps {
    /// Decides how each map is written, and checks what a user without
    /// root may map.
    pub fn plan(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<IdMaps, IdMapError> {
        let privileged = nix::unistd::geteuid().is_root();
        Ok(IdMaps {
            uid: Map::plan(Kind::Uid, uid, privileged)?,
            gid: Map::plan(Kind::Gid, gid, privileged)?,
        })
    }

    /// Maps that root writes itself (id-mapped mounts).
    pub fn direct(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> IdMaps {
        let map = |kind, entries: &[LinuxIdMapping]| Map {
            kind,
            entries: entries.to_vec(),
            writer: Writer::Direct,
        };
        IdMaps {
            uid: map(Kind::Uid, uid),
            gid: map(Kind::Gid, gid),
        }
    }

    /// Writes both maps of the user namespace `pid` lives in.
    pub fn write(&self, pid: libc::pid_t) -> Result<(), IdMapError> {
        self.uid.write(pid)?;
        self.gid.write(pid)
    }
}

impl Map {
    fn plan(kind: Kind, entries: &[LinuxIdMapping], privileged: bool) -> Result<Map, IdMapError> {
        let own = kind.own();
        let only_own = matches!(entries, [one] if one.host_id() == own && one.size() == 1);
        let writer = if privileged || only_own {
            Writer::Direct
        } else {
            let user = || describe_user(kind, own);
            let ranges = std::fs::read_to_string(kind.subordinate_file())
                .map(|text| {
                    // Both files name their owner by user name or uid.
                    let uid = nix::unistd::geteuid().as_raw();
                    let name = rootless::user_name(uid);
                    rootless::subordinate_ranges(&text, name.as_deref(), uid)
                })
                .unwrap_or_default();
            for (index, m) in entries.iter().enumerate() {
                if !rootless::may_map(m.host_id(), m.size(), own, &ranges) {
                    return Err(IdMapError::NotSubordinate {
                        field: kind.field(),
                        index,
                        start: m.host_id(),
                        end: u64::from(m.host_id()) + u64::from(m.size()).max(1) - 1,
                        user: user(),
                        kind: kind.word(),
                        path: kind.subordinate_file(),
                    });
                }
            }
            let helper = find_helper(kind.helper()).ok_or_else(|| IdMapError::NoHelper {
                field: kind.field(),
                user: user(),
                kind: kind.word(),
                helper: kind.helper(),
            })?;
            Writer::Helper(helper)
        };
        Ok(Map {
            kind,
            entries: entries.to_vec(),
            writer,
        })
    }

    fn write(&self, pid: libc::pid_t) -> Result<(), IdMapError> {
        match &self.writer {
            Writer::Direct => {
                if self.kind == Kind::Gid && !nix::unistd::geteuid().is_root() {
                    // Without CAP_SETGID in the parent namespace the kernel
                    // takes a gid map only once setgroups is off for good.
                    write_proc(pid, "setgroups", "deny")?;
                }
                write_proc(pid, self.kind.proc_file(), &render(&self.entries))
            }
            Writer::Helper(helper) => run_helper(helper, pid, &self.entries),
        }
    }
}

fn write_proc(pid: libc::pid_t, file: &str, text: &str) -> Result<(), IdMapError> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, text).map_err(|source| IdMapError::Write { path, source })
}

/// "skiff (uid 1000)" or "uid 1000 (gid 1000)", for messages.
fn describe_user(kind: Kind, own: u32) -> String {
    let uid = nix::unistd::geteuid().as_raw();
    let name = rootless::user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
    format!("{name} ({} {own})", kind.word())
}

/// The helper on PATH, or where Debian installs it.
fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run_helper(
    helper: &Path,
    pid: libc::pid_t,
    entries: &[LinuxIdMapping],
) -> Result<(), IdMapError> {
    let mut args = vec![pid.to_string()];
    for m in entries {
        args.extend([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let fail = |status: String, stderr: &[u8]| {
        let stderr = String::from_utf8_lossy(stderr).trim().replace('\n', "; ");
        IdMapError::Helper {
            helper: helper.to_path_buf(),
            args: args.join(" "),
            status,
            stderr: if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            },
        }
    };
    let out = std::process::Command::new(helper)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string(), b""))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(out.status.to_string(), &out.stderr))
    }
}

/// Id mappings in the kernel's `uid_map` format.
pub fn render(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(json: serde_json::Value) -> Vec<LinuxIdMapping> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn kernel_format() {
        let m = maps(serde_json::json!([
            {"containerID": 0, "hostID": 100000, "size": 65536},
            {"containerID": 65536, "hostID": 1000, "size": 1}
        ]));
        assert_eq!(render(&m), "0 100000 65536\n65536 1000 1\n");
    }

    #[test]
    fn own_id_alone_is_written_directly() {
        let own = Kind::Uid.own();
        let m = maps(serde_json::json!([{"containerID": 0, "hostID": own, "size": 1}]));
        let map = Map::plan(Kind::Uid, &m, false).unwrap();
        assert_eq!(map.writer, Writer::Direct);
    }

    #[test]
    fn ids_that_are_not_subordinate_are_refused_by_field() {
        // Nobody has the ids at the very top as subordinate ids.
        let m = maps(serde_json::json!([
            {"containerID": 0, "hostID": 4294967000u32, "size": 10}
        ]));
        let err = Map::plan(Kind::Gid, &m, false).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "linux.gidMappings[0]: host ids 4294967000-4294967009 may not be mapped by "
            ),
            "{err}"
        );
        assert!(
            err.ends_with(
                ": they are neither its gid nor among its subordinate ids in /etc/subgid"
            ),
            "{err}"
        );
        assert_eq!(
            Map::plan(Kind::Gid, &m, true).unwrap().writer,
            Writer::Direct
        );
    }
}
