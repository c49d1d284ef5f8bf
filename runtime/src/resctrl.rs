//! `linux.intelRdt`: the container's processes in a resctrl group (Intel
//! RDT cache and memory-bandwidth allocation), its schemata written, and a
//! monitoring group when asked. The group is `closID` (`"/"` being the
//! default class at the root), or one named after the container. Only what
//! skiff created is removed on delete.
//!
//! Not yet verified on RDT hardware: the tests run against a directory laid
//! out like resctrl.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxIntelRdt;
use serde::{Deserialize, Serialize};

use crate::validate::Invalid;

/// Why the container could not be placed in its resctrl group.
#[derive(Debug, thiserror::Error)]
pub enum RdtError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("linux.intelRdt: no resctrl filesystem is mounted (Intel RDT is not available here, or /sys/fs/resctrl is not mounted)")]
    NotMounted,
    #[error("linux.intelRdt.closID: {0:?} is not a resctrl group here, and no schema was given to create it with")]
    NoSuchGroup(String),
    #[error("linux.intelRdt.{field}: the existing group {group:?} has {found:?} for {resource}, not {wanted:?}")]
    Mismatch {
        field: &'static str,
        group: String,
        resource: String,
        wanted: String,
        found: String,
    },
    #[error("linux.intelRdt: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RdtError + '_ {
    move |source| RdtError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The groups a container was placed in, kept in its state: what delete
/// removes, and where exec'd processes go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The control group directory.
    pub group: PathBuf,
    /// True when skiff made `group` (and so removes it).
    pub created_group: bool,
    /// The monitoring group skiff made under `group`, if any.
    pub mon_group: Option<PathBuf>,
}

impl Record {
    /// Puts process `pid` (an exec'd one) where the init is.
    pub fn add(&self, pid: libc::pid_t) -> Result<(), RdtError> {
        let dir = self.mon_group.as_ref().unwrap_or(&self.group);
        write_tasks(dir, pid)
    }

    /// Removes the groups skiff created, monitoring group first. Their
    /// processes are gone by now; the kernel would move any left to the
    /// parent group.
    pub fn remove(&self) -> Result<(), RdtError> {
        let mut dirs: Vec<&PathBuf> = self.mon_group.iter().collect();
        if self.created_group {
            dirs.push(&self.group);
        }
        for dir in dirs {
            match std::fs::remove_dir(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(dir)(e)),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Where resctrl is mounted, from mountinfo text.
pub fn mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // Fields: ... mount point (5th) ... " - " fstype source options.
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split(' ').next()?;
        (fstype == "resctrl")
            .then(|| before.split(' ').nth(4).map(unescape))
            .flatten()
    })
}

/// mountinfo's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// What `linux.intelRdt` asks for, checked without the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The group's name under the resctrl root; empty for the root (`"/"`).
    pub group: String,
    /// `closID` was given: the group may already exist.
    pub named: bool,
    /// The values to write to `schemata`, in order (L3/MB first, then the
    /// 1.3 `schemata` lines).
    pub schemata: Vec<String>,
    /// The L3/MB schema, to compare with an existing group's.
    pub compare: Option<(&'static str, String)>,
    /// A monitoring group (`mon_groups/<id>`) is asked for.
    pub monitoring: bool,
}

/// Checks `linux.intelRdt` and plans it for container `id`.
pub fn plan(rdt: &LinuxIntelRdt, id: &str) -> Result<Plan, Invalid> {
    let (group, named) = match rdt.clos_id().as_deref() {
        None => (id.to_string(), false),
        Some("/") => (String::new(), true),
        Some(c) if c.is_empty() || c == "." || c == ".." || c.contains(['/', '\n']) => {
            return Err(Invalid::new(
                "linux.intelRdt.closID",
                format!("{c:?} is not a resctrl group name (or \"/\" for the default class)"),
            ))
        }
        Some(c) => (c.to_string(), true),
    };
    let l3 = rdt.l3_cache_schema().as_deref().filter(|s| !s.is_empty());
    let mb = rdt.mem_bw_schema().as_deref().filter(|s| !s.is_empty());
    if let Some(mb) = mb {
        if !mb.starts_with("MB:") || mb.contains('\n') {
            return Err(Invalid::new(
                "linux.intelRdt.memBwSchema",
                "must be one line starting with \"MB:\"",
            ));
        }
    }
    // An L3 schema's own MB: line gives way to memBwSchema (runtime-spec).
    let combined = match (l3, mb) {
        (Some(l3), Some(mb)) => Some(
            l3.lines()
                .filter(|l| !l.trim_start().starts_with("MB:"))
                .chain(std::iter::once(mb))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        (Some(one), None) | (None, Some(one)) => Some(one.to_string()),
        (None, None) => None,
    };
    let field = if l3.is_some() {
        "l3CacheSchema"
    } else {
        "memBwSchema"
    };
    let lines = rdt.schemata().as_deref().unwrap_or_default();
    if let Some(bad) = lines.iter().position(|l| l.contains('\n')) {
        return Err(Invalid::new(
            format!("linux.intelRdt.schemata[{bad}]"),
            "holds a newline; give each line on its own",
        ));
    }
    let mut schemata: Vec<String> = combined.iter().cloned().collect();
    if !lines.is_empty() {
        schemata.push(lines.join("\n"));
    }
    if group.is_empty() && !schemata.is_empty() {
        return Err(Invalid::new(
            "linux.intelRdt.closID",
            "\"/\" is the default class of the whole machine: skiff does not change its schemata",
        ));
    }
    // The 1.1-1.2 enableCMT/enableMBM arrive here as this (bundle.rs).
    let monitoring = rdt.enable_monitoring().unwrap_or(false);
    Ok(Plan {
        group,
        named,
        schemata,
        compare: combined.map(|c| (field, c)),
        monitoring,
    })
}

/// Places process `pid` of container `id` as `plan` says, in the resctrl
/// filesystem at `root`. On failure, what it made is removed.
pub fn apply(root: &Path, plan: &Plan, id: &str, pid: libc::pid_t) -> Result<Record, RdtError> {
    let group = root.join(&plan.group);
    let exists = plan.group.is_empty() || group.is_dir();
    if exists && plan.named {
        if let Some((field, wanted)) = &plan.compare {
            compare(&group, &plan.group, field, wanted)?;
        }
    }
    if !exists && plan.named && plan.schemata.is_empty() {
        return Err(RdtError::NoSuchGroup(plan.group.clone()));
    }
    let mut record = Record {
        group: group.clone(),
        created_group: false,
        mon_group: None,
    };
    if !exists {
        std::fs::create_dir(&group).map_err(io(&group))?;
        record.created_group = true;
    }
    let placed = (|| {
        let schemata = group.join("schemata");
        for value in &plan.schemata {
            write_file(&schemata, value)?;
        }
        if plan.monitoring {
            let mon = group.join("mon_groups").join(id);
            std::fs::create_dir(&mon).map_err(io(&mon))?;
            record.mon_group = Some(mon);
        }
        record.add(pid)
    })();
    match placed {
        Ok(()) => Ok(record),
        Err(e) => {
            let _ = record.remove();
            Err(e)
        }
    }
}

/// Fails unless the existing group's schemata has, for each resource line
/// of `wanted`, the same value per domain (the kernel pads and reorders).
fn compare(group: &Path, name: &str, field: &'static str, wanted: &str) -> Result<(), RdtError> {
    let path = group.join("schemata");
    let found = std::fs::read_to_string(&path).map_err(io(&path))?;
    let parse = |line: &str| -> Option<(String, Vec<(String, String)>)> {
        let (res, domains) = line.trim().split_once(':')?;
        let mut d: Vec<(String, String)> = domains
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let v = v.trim().trim_start_matches('0').to_ascii_lowercase();
                (k.trim().to_string(), v)
            })
            .collect();
        d.sort();
        Some((res.trim().to_string(), d))
    };
    let have: Vec<_> = found.lines().filter_map(parse).collect();
    for line in wanted.lines() {
        let Some((res, domains)) = parse(line) else {
            continue;
        };
        let theirs = have.iter().find(|(r, _)| *r == res);
        if theirs.map(|(_, d)| d) != Some(&domains) {
            return Err(RdtError::Mismatch {
                field,
                group: name.to_string(),
                resource: res,
                wanted: line.trim().to_string(),
                found: found
                    .lines()
                    .find(|l| {
                        l.trim().starts_with(&format!(
                            "{}:",
                            line.trim().split(':').next().unwrap_or("")
                        ))
                    })
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            });
        }
    }
    Ok(())
}

fn write_tasks(dir: &Path, pid: libc::pid_t) -> Result<(), RdtError> {
    write_file(&dir.join("tasks"), &pid.to_string())
}

/// One write(2) of `value`, as resctrl wants each schema and pid.
fn write_file(path: &Path, value: &str) -> Result<(), RdtError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io(path))?;
    f.write_all(format!("{value}\n").as_bytes())
        .map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdt(json: serde_json::Value) -> LinuxIntelRdt {
        serde_json::from_value(json).unwrap()
    }

    /// A directory laid out like a resctrl root (what mkdir of a group
    /// gives there is an empty directory here).
    fn fake_root(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("skiff-resctrl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("mon_groups")).unwrap();
        std::fs::write(
            d.join("schemata"),
            "    L3:0=7ff;1=7ff\n    MB:0=100;1=100\n",
        )
        .unwrap();
        std::fs::write(d.join("tasks"), "").unwrap();
        d
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn finds_the_mount_in_mountinfo() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    40 22 0:36 / /sys/fs/resctrl rw,relatime - resctrl resctrl rw\n";
        assert_eq!(mount_point(info), Some(PathBuf::from("/sys/fs/resctrl")));
        assert_eq!(mount_point("22 1 0:21 / /proc rw - proc proc rw\n"), None);
        let escaped = "40 22 0:36 / /mnt/res\\040ctrl rw - resctrl resctrl rw\n";
        assert_eq!(mount_point(escaped), Some(PathBuf::from("/mnt/res ctrl")));
    }

    #[test]
    fn schemata_are_combined_and_the_1_3_lines_come_last() {
        let p = plan(
            &rdt(serde_json::json!({
                "l3CacheSchema": "L3:0=f0;1=1f\nMB:0=10",
                "memBwSchema": "MB:0=20;1=70",
                "schemata": ["L2:0=f;1=f", "MB:0=30;1=30"]
            })),
            "c1",
        )
        .unwrap();
        assert_eq!(p.group, "c1");
        assert!(!p.named);
        assert_eq!(
            p.schemata,
            vec!["L3:0=f0;1=1f\nMB:0=20;1=70", "L2:0=f;1=f\nMB:0=30;1=30"]
        );
        let only_mb = plan(&rdt(serde_json::json!({"memBwSchema": "MB:0=20"})), "c1").unwrap();
        assert_eq!(only_mb.schemata, vec!["MB:0=20"]);
        assert_eq!(only_mb.compare, Some(("memBwSchema", "MB:0=20".into())));
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = |j| plan(&rdt(j), "c1").unwrap_err().to_string();
        assert!(err(serde_json::json!({"memBwSchema": "L3:0=1"}))
            .starts_with("linux.intelRdt.memBwSchema: must be one line"));
        assert!(err(serde_json::json!({"closID": "../x"})).starts_with("linux.intelRdt.closID"));
        assert!(
            err(serde_json::json!({"closID": "/", "l3CacheSchema": "L3:0=1"}))
                .contains("default class")
        );
        assert!(err(serde_json::json!({"schemata": ["L3:0=1\nMB:0=2"]}))
            .starts_with("linux.intelRdt.schemata[0]"));
    }

    #[test]
    fn a_group_of_its_own_is_made_written_and_removed() {
        let root = fake_root("own");
        let p = plan(
            &rdt(serde_json::json!({"l3CacheSchema": "L3:0=f0", "schemata": ["MB:0=30"]})),
            "c1",
        )
        .unwrap();
        let record = apply(&root, &p, "c1", 4242).unwrap();
        assert_eq!(record.group, root.join("c1"));
        assert!(record.created_group);
        // Written last, so the file shows the 1.3 lines.
        assert_eq!(read(&root.join("c1/schemata")), "MB:0=30\n");
        assert_eq!(read(&root.join("c1/tasks")), "4242\n");
        // An exec'd process joins the same group.
        record.add(4343).unwrap();
        assert_eq!(read(&root.join("c1/tasks")), "4343\n");
        // (The kernel removes a group's files with it; here they go first.)
        for f in ["schemata", "tasks"] {
            std::fs::remove_file(root.join("c1").join(f)).unwrap();
        }
        record.remove().unwrap();
        assert!(!root.join("c1").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn monitoring_gets_a_mon_group_and_a_failure_removes_what_was_made() {
        let root = fake_root("mon");
        std::fs::create_dir_all(root.join("gold/mon_groups")).unwrap();
        std::fs::write(root.join("gold/schemata"), "L3:0=ff\n").unwrap();
        let p = plan(
            &rdt(serde_json::json!({"closID": "gold", "enableMonitoring": true})),
            "c1",
        )
        .unwrap();
        let record = apply(&root, &p, "c1", 9).unwrap();
        let mon = root.join("gold/mon_groups/c1");
        assert_eq!(record.mon_group.as_ref(), Some(&mon));
        assert_eq!(read(&mon.join("tasks")), "9\n");
        std::fs::remove_file(mon.join("tasks")).unwrap();
        record.remove().unwrap();
        assert!(!mon.exists() && root.join("gold").is_dir());

        // A group of its own, whose monitoring group cannot be made (the
        // kernel makes mon_groups in a new group; this directory has none):
        // the group made goes again.
        let p = plan(&rdt(serde_json::json!({"enableMonitoring": true})), "c2").unwrap();
        let err = apply(&root, &p, "c2", 5).unwrap_err().to_string();
        assert!(err.contains("mon_groups"), "{err}");
        assert!(!root.join("c2").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_existing_clos_is_joined_compared_and_kept() {
        let root = fake_root("clos");
        std::fs::create_dir(root.join("gold")).unwrap();
        std::fs::write(
            root.join("gold/schemata"),
            "    L3:0=0f0;1=01f\n    MB:0= 20;1= 70\n",
        )
        .unwrap();
        let p = plan(
            &rdt(serde_json::json!({"closID": "gold", "l3CacheSchema": "L3:1=1f;0=f0"})),
            "c1",
        )
        .unwrap();
        let record = apply(&root, &p, "c1", 77).unwrap();
        assert!(!record.created_group);
        assert_eq!(read(&root.join("gold/tasks")), "77\n");
        record.remove().unwrap();
        assert!(root.join("gold").is_dir(), "not ours: kept");

        let other = plan(
            &rdt(serde_json::json!({"closID": "gold", "l3CacheSchema": "L3:0=ff;1=1f"})),
            "c1",
        )
        .unwrap();
        let err = apply(&root, &other, "c1", 77).unwrap_err().to_string();
        assert!(
            err.starts_with("linux.intelRdt.l3CacheSchema: the existing group \"gold\""),
            "{err}"
        );

        let missing = plan(&rdt(serde_json::json!({"closID": "silver"})), "c1").unwrap();
        assert!(apply(&root, &missing, "c1", 77)
            .unwrap_err()
            .to_string()
            .contains("\"silver\" is not a resctrl group here"));

        // "/": the default class, at the root.
        let default = plan(&rdt(serde_json::json!({"closID": "/"})), "c1").unwrap();
        let record = apply(&root, &default, "c1", 78).unwrap();
        assert_eq!(record.group, root.join(""));
        assert_eq!(read(&root.join("tasks")), "78\n");
        assert!(!record.created_group);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
