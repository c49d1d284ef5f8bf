//! `checkpoint`: CRIU dumps (or pre-dumps) the container's process tree
//! into the image directory. A full dump without `--leave-running` ends
//! the container: CRIU kills its processes, and skiff deletes it, as runc
//! does, so its id can be restored into.

use std::path::PathBuf;

use super::rpc::{Req, ReqType};
use super::swrk::{self, Swrk};
use super::{base_opts, config_file, externals, failure, Common, CriuError, Dir, Dirs};
use crate::cgroups;
use crate::container::{Container, ContainerError};
use crate::state::{self, Status};

/// Options of `checkpoint`.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub common: Common,
    pub leave_running: bool,
    pub pre_dump: bool,
    /// `--parent-path`: the previous (pre-)dump, relative to the image
    /// directory.
    pub parent_path: Option<PathBuf>,
    pub auto_dedup: bool,
}

/// Checkpoints a running container.
pub fn checkpoint(container: &Container, opts: &CheckpointOptions) -> Result<(), CriuError> {
    // A paused container is dumped as it is, and left paused when it is
    // left running (runc's rule): CRIU freezes through its freezer
    // cgroup and puts back the state it found.
    match container.status() {
        Status::Running | Status::Paused => {}
        _ => return Err(ContainerError::NotRunning.into()),
    }
    let version = swrk::check_version(&opts.common.criu)?;
    let image = Dir::create(&opts.common.image_path)?;
    let work = match &opts.common.work_path {
        Some(p) => Dir::create(p)?,
        None => Dir::open(&opts.common.image_path)?,
    };
    let dirs = Dirs { image, work };
    let spec = state::load_spec(&container.dir).map_err(ContainerError::from)?;
    let pid = container.stored.pid;
    let mut external = externals::for_dump(&spec, pid, &container.stored.cgroup)?;
    let stdio = externals::describe_stdio(pid);
    external.extend(stdio.external);
    for (file, value) in [
        (super::DESCRIPTORS, serde_json::to_vec(&stdio.names)),
        (super::STDIO_KINDS, serde_json::to_vec(&stdio.kinds)),
    ] {
        let path = dirs.image.path.join(file);
        std::fs::write(&path, value.unwrap_or_default()).map_err(|e| CriuError::ImageDir {
            path,
            why: e.to_string(),
        })?;
    }

    let mut rpc_opts = base_opts(&opts.common, &dirs, "dump.log");
    rpc_opts.pid = Some(pid);
    rpc_opts.root = Some(container.stored.rootfs.to_string_lossy().into_owned());
    rpc_opts.leave_running = opts.leave_running;
    rpc_opts.auto_dedup = opts.auto_dedup;
    // A dump on top of a parent finds the pages left clean since in it
    // only while CRIU tracks memory: without, it writes them all again.
    rpc_opts.track_mem = opts.pre_dump || opts.parent_path.is_some();
    rpc_opts.parent_img = opts
        .parent_path
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    rpc_opts.external = external;
    rpc_opts.freeze_cgroup = freezer(&container.stored.cgroup, version);
    rpc_opts.config_file = config_file(Some(&container.stored.annotations));
    let kind = if opts.pre_dump {
        ReqType::PreDump
    } else {
        ReqType::Dump
    };
    let req = Req {
        kind,
        opts: Some(rpc_opts),
        notify_success: false,
    };
    let mut inherit = dirs.fds().to_vec();
    inherit.extend(opts.common.status_fd);
    let resp = Swrk::start(&opts.common.criu, &inherit)?.call(&req, |_, _, _| Ok(()))?;
    if !resp.success {
        let action = if opts.pre_dump { "pre-dump" } else { "dump" };
        return Err(failure(action, &resp, dirs.work.path.join("dump.log")));
    }
    if !opts.leave_running && !opts.pre_dump {
        container.delete(true)?;
    }
    Ok(())
}

/// CRIU freezes through a cgroup2 directory (`cgroup.freeze`) from 3.14
/// on; before, it knows only the v1 `freezer.state`.
const V2_FREEZER: (i32, i32, i32) = (3, 14, 0);

/// The directory CRIU freezes the container through: the v1 freezer's
/// where the host has one (hybrid hosts pause there), else the cgroup2
/// directory of a unified host (a systemd unit's included) when this CRIU
/// can freeze there. Without one CRIU stops the processes with ptrace,
/// as runc leaves it to on cgroup v2 with an older CRIU.
fn freezer(record: &cgroups::Record, criu: (i32, i32, i32)) -> Option<String> {
    let v1 = record
        .dirs
        .iter()
        .find(|d| d.subsystems.split(',').any(|s| s == "freezer"));
    let v2 = || {
        record
            .dirs
            .first()
            .filter(|_| record.unified && criu >= V2_FREEZER)
    };
    let dir = v1.or_else(v2)?;
    Some(dir.path.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(path: &str, subsystems: &str) -> cgroups::Dir {
        cgroups::Dir {
            path: path.into(),
            mount: "/sys/fs/cgroup".into(),
            subsystems: subsystems.into(),
            created: vec![],
        }
    }

    #[test]
    fn freezer_of_a_hybrid_and_a_unified_host() {
        let hybrid = cgroups::Record {
            path: "/c1".into(),
            unified: false,
            dirs: vec![
                dir("/sys/fs/cgroup/unified/c1", ""),
                dir("/sys/fs/cgroup/freezer/c1", "freezer"),
            ],
            unit: None,
        };
        let criu = (4, 2, 1);
        assert_eq!(
            freezer(&hybrid, criu).as_deref(),
            Some("/sys/fs/cgroup/freezer/c1")
        );
        assert_eq!(
            freezer(&hybrid, (3, 0, 0)).as_deref(),
            Some("/sys/fs/cgroup/freezer/c1")
        );
        let unified = cgroups::Record {
            path: "/c1".into(),
            unified: true,
            dirs: vec![dir("/sys/fs/cgroup/c1", "")],
            unit: None,
        };
        assert_eq!(
            freezer(&unified, criu).as_deref(),
            Some("/sys/fs/cgroup/c1")
        );
        let none = cgroups::Record {
            dirs: vec![dir("/sys/fs/cgroup/unified/c1", "")],
            ..hybrid
        };
        assert_eq!(freezer(&none, criu), None);
    }

    /// On cgroup v2 CRIU freezes through `cgroup.freeze` only from 3.14:
    /// an older one gets no freeze cgroup (it would look for the v1
    /// `freezer.state` there and fail) and uses ptrace, as with runc.
    #[test]
    fn cgroup2_freezer_only_for_criu_3_14_and_newer() {
        let unified = cgroups::Record {
            path: "/c1".into(),
            unified: true,
            dirs: vec![dir("/sys/fs/cgroup/c1", "")],
            unit: None,
        };
        assert_eq!(freezer(&unified, (3, 13, 0)), None);
        assert_eq!(
            freezer(&unified, (3, 14, 0)).as_deref(),
            Some("/sys/fs/cgroup/c1")
        );
        // A systemd unit's cgroup (--systemd-cgroup) is frozen where the
        // unit is.
        let unit = cgroups::Record {
            path: "/system.slice/skiff-c1.scope".into(),
            unified: true,
            dirs: vec![dir("/sys/fs/cgroup/system.slice/skiff-c1.scope", "")],
            unit: Some("skiff-c1.scope".into()),
        };
        assert_eq!(
            freezer(&unit, (4, 2, 1)).as_deref(),
            Some("/sys/fs/cgroup/system.slice/skiff-c1.scope")
        );
    }
}
