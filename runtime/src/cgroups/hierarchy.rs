//! Finding the host's cgroup hierarchies and this process's place in them,
//! from `/proc/self/cgroup` and where each hierarchy is mounted. The
//! parsing is pure (the layouts of other hosts are unit-tested here); the
//! mounts come from the kernel one of two ways.
//!
//! First, each hierarchy at the place hosts mount it (`/sys/fs/cgroup`,
//! `/sys/fs/cgroup/unified`, `/sys/fs/cgroup/<controllers>`), checked and
//! read with `statmount` (Linux 6.8; the options need 6.11): two syscalls
//! per hierarchy, whatever else is mounted. Otherwise, from
//! `/proc/self/mountinfo`, whose every line the kernel formats for every
//! reader: a node's containers add a mount or more each (an overlay
//! rootfs, shm, secrets), so reading it made every create cost more the
//! more containers ran.
//!
//! mountinfo is parsed here, not by procfs-core: its `MountInfo` keeps the
//! mount point as the kernel escapes it (`\040` for a space), and builds
//! two maps of options per line.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::syscalls::{self, MountStat};

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

/// Where a host mounts the hierarchy of a `/proc/self/cgroup` line: v2 on
/// `/sys/fs/cgroup`, or beside v1 on `/sys/fs/cgroup/unified`; v1 under its
/// controllers' names (`cpu,cpuacct`; `systemd` for `name=systemd`).
fn usual_mounts(v2: bool, controllers: &[String]) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if v2 {
        return vec![base.to_path_buf(), base.join("unified")];
    }
    let names: Vec<&str> = controllers
        .iter()
        .map(|c| c.strip_prefix("name=").unwrap_or(c))
        .collect();
    vec![base.join(names.join(","))]
}

/// The hierarchies of `proc_cgroup` when every one of them is mounted at
/// its usual place, as `stat` (statmount of the mount a path is on) shows;
/// None otherwise, for mountinfo to decide.
fn at_usual_mounts(
    proc_cgroup: &str,
    stat: &dyn Fn(&Path) -> Option<MountStat>,
) -> Option<Vec<Hierarchy>> {
    use procfs_core::FromBufRead;
    let lines = procfs_core::ProcessCGroups::from_buf_read(proc_cgroup.as_bytes()).ok()?;
    let mut out = Vec::new();
    for line in lines {
        let v2 = line.hierarchy == 0 && line.controllers.is_empty();
        let (mount, root) = usual_mounts(v2, &line.controllers)
            .into_iter()
            .find_map(|mount| {
                let m = stat(&mount)?;
                // The path must be the mount itself, not a directory in the
                // filesystem above it.
                let fits = Path::new(&m.point) == mount
                    && if v2 {
                        m.fs_type == "cgroup2"
                    } else {
                        let options = m.options.as_deref()?;
                        m.fs_type == "cgroup"
                            && line
                                .controllers
                                .iter()
                                .all(|c| options.split(',').any(|o| o == c))
                    };
                fits.then(|| (mount, PathBuf::from(m.root)))
            })?;
        out.push(Hierarchy {
            mount,
            mount_root: root,
            subsystems: line.controllers.join(","),
            own: PathBuf::from(line.pathname),
        });
    }
    Some(out)
}

/// statmount of the mount `path` is on.
fn stat_mount(path: &Path) -> Option<MountStat> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    syscalls::statmount(syscalls::mount_id_unique(&path).ok()?).ok()
}

/// The hierarchies as statmount finds them at their usual mounts; None
/// where the kernel (before 6.8, or 6.11 for v1's options) or the layout
/// leaves it to mountinfo.
pub fn found_by_statmount() -> Option<Vec<Hierarchy>> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    at_usual_mounts(&cgroup, &stat_mount)
}

/// Reads the host's hierarchies: at their usual mounts when they are all
/// there, from mountinfo otherwise.
pub fn detect() -> std::io::Result<Vec<Hierarchy>> {
    if let Some(found) = found_by_statmount() {
        return Ok(found);
    }
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
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

    /// statmount answers made from a mountinfo text: what the kernel would
    /// say of the mount a path is on (a path that is no mount point is
    /// answered for the mount above it, as statx resolves it).
    fn stat_from(mountinfo: &str) -> impl Fn(&Path) -> Option<MountStat> + '_ {
        move |path: &Path| {
            mountinfo
                .lines()
                .filter_map(|line| {
                    let (left, right) = line.split_once(" - ")?;
                    let left: Vec<&str> = left.split(' ').collect();
                    let right: Vec<&str> = right.split(' ').collect();
                    let options = right[2]
                        .split(',')
                        .filter(|o| *o != "rw" && *o != "ro")
                        .collect::<Vec<_>>()
                        .join(",");
                    Some(MountStat {
                        fs_type: right[0].to_string(),
                        root: left[3].to_string(),
                        point: left[4].to_string(),
                        options: Some(options),
                    })
                })
                .filter(|m| path.starts_with(&m.point))
                .max_by_key(|m| m.point.len())
        }
    }

    #[test]
    fn usual_mounts_read_as_mountinfo_does() {
        let cgroup = HYBRID_CGROUP.replace("7:blkio:/not-mounted\n", "");
        let fast = at_usual_mounts(&cgroup, &stat_from(HYBRID_MOUNTINFO)).unwrap();
        assert_eq!(fast, parse(HYBRID_MOUNTINFO, &cgroup));
        assert_eq!(fast[3].mount, PathBuf::from("/sys/fs/cgroup/unified"));
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let fast = at_usual_mounts("0::/a\n", &stat_from(v2)).unwrap();
        assert_eq!(fast, parse(v2, "0::/a\n"));
        let nested =
            "1 0 0:1 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let fast = at_usual_mounts("2:cpu,cpuacct:/docker/abc\n", &stat_from(nested)).unwrap();
        assert_eq!(fast[0].mount_root, PathBuf::from("/docker/abc"));
    }

    #[test]
    fn anything_unusual_is_left_to_mountinfo() {
        let stat = stat_from(HYBRID_MOUNTINFO);
        // A hierarchy not mounted at all (mountinfo skips it).
        assert_eq!(at_usual_mounts(HYBRID_CGROUP, &stat), None);
        // memory mounted elsewhere: /sys/fs/cgroup/memory is a directory
        // of the tmpfs.
        let elsewhere = HYBRID_MOUNTINFO.replace("/sys/fs/cgroup/memory ", "/mnt/memory ");
        assert_eq!(
            at_usual_mounts("4:memory:/\n", &stat_from(&elsewhere)),
            None
        );
        // The directory named after cpu holds another controller.
        let wrong = HYBRID_MOUNTINFO.replace("rw,cpu\n", "rw,cpuset\n");
        assert_eq!(at_usual_mounts("1:cpu:/\n", &stat_from(&wrong)), None);
        // A kernel without statmount's options (6.8-6.10).
        let no_options = |p: &Path| stat(p).map(|m| MountStat { options: None, ..m });
        assert_eq!(at_usual_mounts("1:cpu:/\n", &no_options), None);
        assert!(at_usual_mounts("0::/\n", &no_options).is_some());
        // No statmount at all.
        assert_eq!(at_usual_mounts("0::/\n", &|_: &Path| None), None);
    }

    /// This host, both ways: statmount's answer, where the kernel gives one,
    /// is mountinfo's.
    #[test]
    fn this_host_reads_the_same_both_ways() {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        match found_by_statmount() {
            Some(fast) => assert_eq!(fast, parse(&mountinfo, &cgroup)),
            None => eprintln!("statmount found not every hierarchy here: mountinfo is read"),
        }
    }

    #[test]
    fn escaped_mount_points() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
