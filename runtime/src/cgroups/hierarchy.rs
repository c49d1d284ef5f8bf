//! Finding the host's cgroup hierarchies and this process's place in them,
//! from `/proc/self/mountinfo` and `/proc/self/cgroup`. Pure parsing, so the
//! layouts of other hosts are unit-tested here.
//!
//! mountinfo is parsed here, not by procfs-core: its `MountInfo` keeps the
//! mount point as the kernel escapes it (`\040` for a space), and builds
//! two maps of options per line, where a node with thousands of mounts
//! reads this on every create.

use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted on the host.
    pub mount: PathBuf,
    /// The cgroup the mount's root shows (usually `/`).
    pub mount_root: PathBuf,
    /// v1: the comma-separated subsystems as `/proc/self/cgroup` names them
    /// (`memory`, `cpu,cpuacct`, `name=systemd`); empty for cgroup2.
    pub subsystems: String,
    /// This process's cgroup in the hierarchy.
    pub own: PathBuf,
}

impl Hierarchy {
    /// True for the cgroup2 (unified) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.subsystems.is_empty()
    }

    /// The directory of cgroup `path` (absolute within the hierarchy).
    pub fn dir_of(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix(&self.mount_root).unwrap_or(path);
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.mount.join(rel)
    }
}

/// A mount entry of type cgroup or cgroup2.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    mount: PathBuf,
    root: PathBuf,
    v2: bool,
    super_options: Vec<String>,
}

/// Unescapes the octal escapes (`\040`) mountinfo uses in paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let v2 = match right[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        mounts.push(CgroupMount {
            mount: PathBuf::from(unescape(left[4])),
            root: PathBuf::from(unescape(left[3])),
            v2,
            super_options: right[2].split(',').map(str::to_string).collect(),
        });
    }
    mounts
}

/// Matches each line of `/proc/self/cgroup` (parsed by procfs-core) with
/// its mount. Hierarchies that are not mounted are skipped: nothing can be
/// created in them.
pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Vec<Hierarchy> {
    use procfs_core::FromBufRead;
    let mounts = cgroup_mounts(mountinfo);
    let Ok(lines) = procfs_core::ProcessCGroups::from_buf_read(proc_cgroup.as_bytes()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in lines {
        let v2 = line.hierarchy == 0 && line.controllers.is_empty();
        let found = mounts.iter().find(|m| {
            if v2 {
                return m.v2;
            }
            !m.v2
                && line
                    .controllers
                    .iter()
                    .all(|c| m.super_options.iter().any(|o| o == c))
        });
        if let Some(m) = found {
            out.push(Hierarchy {
                mount: m.mount.clone(),
                mount_root: m.root.clone(),
                subsystems: line.controllers.join(","),
                own: PathBuf::from(line.pathname),
            });
        }
    }
    out
}

/// Reads the host's hierarchies.
pub fn detect() -> std::io::Result<Vec<Hierarchy>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")?;
    Ok(parse(&mountinfo, &cgroup))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/abc
1:cpu:/
7:blkio:/not-mounted
0::/
";

    #[test]
    fn hybrid_layout() {
        let h = parse(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let names: Vec<_> = h.iter().map(|h| h.subsystems.as_str()).collect();
        assert_eq!(names, ["name=systemd", "memory", "cpu", ""]);
        assert_eq!(h[1].own, PathBuf::from("/process_api/abc"));
        assert_eq!(h[3].mount, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(h[3].is_v2() && !h[0].is_v2());
    }

    #[test]
    fn pure_v2_layout() {
        let h = parse(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/user.slice/session-1.scope\n",
        );
        assert_eq!(h.len(), 1);
        assert_eq!(
            h[0].dir_of(Path::new("/skiff/x")),
            PathBuf::from("/sys/fs/cgroup/skiff/x")
        );
    }

    #[test]
    fn comounted_and_nested_roots() {
        let h = parse(
            "1 0 0:1 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
            "2:cpu,cpuacct:/docker/abc\n",
        );
        assert_eq!(h[0].subsystems, "cpu,cpuacct");
        assert_eq!(
            h[0].dir_of(Path::new("/docker/abc/skiff/x")),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/skiff/x")
        );
    }

    #[test]
    fn escaped_mount_points() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
