//! `restore`: a new container from a bundle whose process tree CRIU brings
//! back from an image directory instead of skiff spawning an init. The
//! result is an ordinary skiff container (state, exec, kill, delete,
//! events); a failure leaves nothing behind, as a failed `create` does.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::LinuxNamespaceType;

use super::rpc::{Req, ReqType};
use super::swrk::{self, Swrk};
use super::{base_opts, config_file, externals, failure, sys, Common, CriuError, Dir, Dirs};
use crate::bundle::Bundle;
use crate::cgroups::{self, Manager};
use crate::container::{Container, ContainerError};
use crate::state::{self, Root};

/// Options of `restore`.
pub struct RestoreOptions<'a> {
    pub common: Common,
    pub pid_file: Option<&'a Path>,
    /// `--parent-path`: where the images' parent is now, relative to the
    /// image directory.
    pub parent_path: Option<&'a Path>,
    /// The console socket the pty master goes to, for a container with a
    /// terminal.
    pub console: Option<OwnedFd>,
    /// `--systemd-cgroup`: the new cgroup comes from systemd.
    pub systemd_cgroup: bool,
}

/// Restores container `id` from `bundle` and the image directory.
pub fn restore(
    root: &Root,
    id: &str,
    bundle: &Bundle,
    opts: &RestoreOptions<'_>,
) -> Result<Container, CriuError> {
    // First: every directory CRIU gets by fd must be opened in the
    // namespace it works in (it mounts its cgroup yard in the work
    // directory).
    private_root(&bundle.rootfs)?;
    let image = Dir::open(&opts.common.image_path)?;
    if !image.path.join("inventory.img").exists() {
        return Err(CriuError::ImageDir {
            path: image.path,
            why: "not a CRIU image directory (no inventory.img)".into(),
        });
    }
    let work = match &opts.common.work_path {
        Some(p) => Dir::create(p)?,
        None => Dir::open(&opts.common.image_path)?,
    };
    if opts.parent_path.is_some() {
        unlink_parent(&image.path)?;
    }
    let dirs = Dirs { image, work };
    let stdio = read_descriptors(&dirs.image.path)?;
    let stand_ins = stdio_stand_ins(&dirs.image.path)?;
    swrk::check_version(&opts.common.criu)?;
    let dir = root.claim(id).map_err(ContainerError::from)?;
    let linux = bundle.spec.linux().as_ref();
    // CRIU restores only as root, so the cgroup is never a rootless one.
    // Exec'd processes join the container's session keyring as usual
    // (CRIU does not restore keyrings).
    let mut cgroup = Container::plan_cgroup(bundle, id, opts.systemd_cgroup, false)
        .map_err(ContainerError::from)?;
    let created = crate::timestamp::now_nanos();
    let mut stored = Container::initial_record(id, bundle, &created, cgroup.as_ref(), false);
    let made = state::save(&dir, &stored)
        .map_err(ContainerError::from)
        .and_then(|()| {
            cgroup.create()?;
            let res = cgroups::devices::at_create(linux.and_then(|l| l.resources().as_ref()));
            Ok(cgroup.apply(&res)?)
        });
    let outcome = made
        .map_err(CriuError::from)
        .and_then(|()| run_criu(bundle, &dirs, (&stdio, &stand_ins), cgroup.as_ref(), opts));
    let pid = match outcome {
        Ok(pid) => pid,
        Err(e) => {
            let _ = cgroup.destroy();
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    stored.pid = pid;
    stored.start_time = crate::procfs::stat(pid).map_or(0, |s| s.start_time);
    stored.cgroup = cgroup.record().clone();
    stored.own_pid_ns = externals::creates_namespace(&bundle.spec, LinuxNamespaceType::Pid);
    let container = Container {
        dir: dir.clone(),
        stored,
    };
    let written = state::save_config(&dir, &bundle.config)
        .and_then(|()| state::save(&dir, &container.stored))
        .and_then(|()| match opts.pid_file {
            Some(p) => state::write_pid_file(p, pid),
            None => Ok(()),
        });
    if let Err(e) = written {
        let _ = container.delete(true);
        return Err(ContainerError::from(e).into());
    }
    Ok(container)
}

/// Removes the image directory's parent link, for CRIU to make it again
/// where `--parent-path` says (CRIU keeps a link it finds, even one that
/// no longer resolves).
fn unlink_parent(image: &Path) -> Result<(), CriuError> {
    let link = image.join("parent");
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(&link).map_err(|e| CriuError::ImageDir {
                path: link,
                why: e.to_string(),
            })
        }
        Ok(_) => Err(CriuError::ImageDir {
            path: link,
            why: "not a symbolic link: cannot point it elsewhere".into(),
        }),
        Err(_) => Ok(()),
    }
}

/// The stdio names `checkpoint` wrote (none for an image from elsewhere).
fn read_descriptors(image: &Path) -> Result<Vec<String>, CriuError> {
    let path = image.join(super::DESCRIPTORS);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CriuError::ImageDir {
            path,
            why: format!("corrupt: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CriuError::ImageDir {
            path,
            why: e.to_string(),
        }),
    }
}

/// What takes the place of each host file among the container's stdio:
/// our own stdio when it is the same kind of file (None), /dev/null where
/// /dev/null was and ours is something else (runc's restore reopens
/// /dev/null too). Any other difference (a fifo where a log file was) is
/// refused before anything exists: CRIU reopens the file and would fail
/// on its mode or position.
fn stdio_stand_ins(image: &Path) -> Result<Vec<Option<OwnedFd>>, CriuError> {
    let Ok(bytes) = std::fs::read(image.join(super::STDIO_KINDS)) else {
        return Ok(Vec::new());
    };
    let kinds: Vec<Option<String>> = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut stand_ins = Vec::new();
    for (fd, (was, stream)) in kinds
        .into_iter()
        .zip(["stdin", "stdout", "stderr"])
        .enumerate()
    {
        let now = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .map_or("closed descriptor", |m| externals::file_kind(&m));
        let stand_in = match was {
            Some(was) if was == now => None,
            Some(was) if was == "null device" => Some(
                nix::fcntl::open(
                    "/dev/null",
                    nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(sys("opening /dev/null"))?,
            ),
            Some(was) => return Err(CriuError::StdioKind { stream, was, now }),
            None => None,
        };
        stand_ins.push(stand_in);
    }
    Ok(stand_ins)
}

/// Gives this process a mount namespace of its own, slave to the host's
/// so nothing made here propagates back, with the rootfs bind-mounted on
/// itself: CRIU wants the new root to be a mount point. Everything goes
/// away with the process.
fn private_root(rootfs: &Path) -> Result<(), CriuError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(sys("unshare(CLONE_NEWNS)"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(sys("making / a slave mount"))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!("bind-mounting {}", rootfs.display())))
}

/// The cgroup roots: the container's new cgroup stands in for the one it
/// was dumped from, in every hierarchy (by controller where a relative
/// cgroupsPath put it elsewhere in one of them).
fn cgroup_roots(record: &cgroups::Record) -> Vec<(Option<String>, String)> {
    let default = record.path.to_string_lossy().into_owned();
    let mut roots = vec![(None, default.clone())];
    for d in &record.dirs {
        let rel = Path::new("/").join(d.path.strip_prefix(&d.mount).unwrap_or(&d.path));
        let rel = rel.to_string_lossy().into_owned();
        if rel != default && !d.subsystems.is_empty() {
            roots.push((Some(d.subsystems.clone()), rel));
        }
    }
    roots
}

/// Runs the restore request; returns the restored init's pid (a child of
/// this process: CRIU restores it as its own sibling).
fn run_criu(
    bundle: &Bundle,
    dirs: &Dirs,
    (stdio, stand_ins): (&[String], &[Option<OwnedFd>]),
    cgroup: &dyn Manager,
    opts: &RestoreOptions<'_>,
) -> Result<libc::pid_t, CriuError> {
    externals::make_mountpoints(&bundle.spec, &bundle.dir, &bundle.rootfs)?;
    let mut rpc_opts = base_opts(&opts.common, dirs, "restore.log");
    rpc_opts.root = Some(bundle.rootfs.to_string_lossy().into_owned());
    rpc_opts.rst_sibling = true;
    rpc_opts.parent_img = opts.parent_path.map(|p| p.to_string_lossy().into_owned());
    rpc_opts.external = externals::for_restore(&bundle.spec, &bundle.dir, cgroup.record());
    rpc_opts.cg_root = cgroup_roots(cgroup.record());
    rpc_opts.config_file = config_file(bundle.spec.annotations().as_ref());
    // CRIU runs with our stdio: the container's pipes and host files are
    // replaced by them (or by their stand-ins).
    for (fd, name) in stdio.iter().enumerate() {
        if externals::inherited(name) {
            let own = match stand_ins.get(fd) {
                Some(Some(stand_in)) => stand_in.as_raw_fd(),
                _ => fd as i32,
            };
            rpc_opts.inherit_fd.push((name.clone(), own));
        }
    }
    let mut ns_fds: Vec<OwnedFd> = Vec::new();
    for (key, path) in externals::namespace_keys(&bundle.spec) {
        let fd = nix::fcntl::open(
            &path,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys(format!("opening namespace {}", path.display())))?;
        rpc_opts.inherit_fd.push((key.to_string(), fd.as_raw_fd()));
        ns_fds.push(fd);
    }
    let mut inherit = dirs.fds().to_vec();
    inherit.extend(ns_fds.iter().map(AsRawFd::as_raw_fd));
    inherit.extend(stand_ins.iter().flatten().map(AsRawFd::as_raw_fd));
    inherit.extend(opts.common.status_fd);
    let req = Req {
        kind: ReqType::Restore,
        opts: Some(rpc_opts),
        notify_success: false,
    };
    let criu = Swrk::start(&opts.common.criu, &inherit)?;
    if let Err(e) = place_criu(cgroup, criu.pid()) {
        criu.abort();
        return Err(ContainerError::from(e).into());
    }
    let console = opts.console.as_ref().map(AsFd::as_fd);
    let own_netns = externals::creates_namespace(&bundle.spec, LinuxNamespaceType::Network);
    let resp = criu.call(&req, |script, pid, fd| match (script, pid, fd) {
        // The namespaces exist, nothing is restored into them yet: the
        // restored sockets may need lo.
        ("setup-namespaces", Some(pid), _) if own_netns => loopback_up_in(pid),
        // Sent under the script's name, as runc sends it.
        ("orphan-pts-master", _, Some(master)) => {
            let sock = console.ok_or_else(|| CriuError::Option {
                option: "--console-socket",
                why: "the container has a terminal: a console socket is needed".into(),
            })?;
            crate::terminal::send_fd(sock, "orphan-pts-master", master.as_fd())
                .map_err(sys("sending the pty master to the console socket"))
        }
        _ => Ok(()),
    })?;
    drop(ns_fds);
    if !resp.success {
        return Err(failure("restore", &resp, log_path(dirs)));
    }
    resp.restored_pid
        .ok_or_else(|| CriuError::Exited("restore answered without a pid".into()))
}

/// Puts CRIU's process in the container's cgroup, as create puts its
/// init: the restored processes are forked by CRIU and start in its
/// cgroup. Under systemd the unit is started with CRIU in it, and its
/// answer (a failed start included) and the resources applied once it
/// runs must come before CRIU forks anything.
fn place_criu(cgroup: &dyn Manager, pid: libc::pid_t) -> Result<(), cgroups::CgroupError> {
    cgroup.add(pid, false)?;
    cgroup.adopt(pid)?;
    cgroup.settle()
}

/// Brings lo up in the network namespace of `pid` (CRIU restored it
/// empty), as create does in a new one; this process goes back to its
/// own namespace after.
fn loopback_up_in(pid: i32) -> Result<(), CriuError> {
    use nix::sched::{setns, CloneFlags};
    let open = |path: String| {
        std::fs::File::open(&path).map_err(|e| CriuError::Sys {
            what: path,
            source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })
    };
    let own = open("/proc/self/ns/net".into())?;
    let target = open(format!("/proc/{pid}/ns/net"))?;
    setns(&target, CloneFlags::CLONE_NEWNET)
        .map_err(sys("entering the restored network namespace"))?;
    let up = crate::netdev::loopback_up().map_err(sys("bringing lo up in the restored container"));
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(sys("returning to skiff's network namespace"))?;
    up
}

fn log_path(dirs: &Dirs) -> PathBuf {
    dirs.work.path.join("restore.log")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::os::fd::BorrowedFd;

    /// A cgroup manager that only records how CRIU is placed.
    struct Recorder {
        record: cgroups::Record,
        calls: RefCell<Vec<String>>,
    }

    impl Manager for Recorder {
        fn record(&self) -> &cgroups::Record {
            &self.record
        }
        fn create(&mut self) -> Result<(), cgroups::CgroupError> {
            unimplemented!()
        }
        fn attach(&mut self) -> Result<(), cgroups::CgroupError> {
            unimplemented!()
        }
        fn clone_target(&self) -> Option<BorrowedFd<'_>> {
            unimplemented!()
        }
        fn add(&self, pid: libc::pid_t, _: bool) -> Result<(), cgroups::CgroupError> {
            self.calls.borrow_mut().push(format!("add {pid}"));
            Ok(())
        }
        fn join_current(&self, _: bool) -> Result<(), cgroups::CgroupError> {
            unimplemented!()
        }
        fn adopt(&self, pid: libc::pid_t) -> Result<(), cgroups::CgroupError> {
            self.calls.borrow_mut().push(format!("adopt {pid}"));
            Ok(())
        }
        fn settle(&self) -> Result<(), cgroups::CgroupError> {
            self.calls.borrow_mut().push("settle".into());
            Ok(())
        }
        fn procs(&self) -> Result<Vec<libc::pid_t>, cgroups::CgroupError> {
            unimplemented!()
        }
        fn destroy(&self) -> Result<(), cgroups::CgroupError> {
            unimplemented!()
        }
        fn apply(&self, _: &oci_spec::runtime::LinuxResources) -> Result<(), cgroups::CgroupError> {
            unimplemented!()
        }
        fn freeze(&self, _: bool) -> Result<(), cgroups::CgroupError> {
            unimplemented!()
        }
        fn frozen(&self) -> bool {
            unimplemented!()
        }
        fn stats(&self) -> cgroups::stats::Stats {
            unimplemented!()
        }
        fn oom_kills(&self) -> u64 {
            unimplemented!()
        }
        fn oom_watch(&self) -> Option<OwnedFd> {
            unimplemented!()
        }
        fn signal_all(&self, _: libc::c_int) -> Result<(), cgroups::CgroupError> {
            unimplemented!()
        }
    }

    /// With --systemd-cgroup the unit is started with CRIU in it and
    /// waited for (systemd's answer collected) before CRIU is asked to
    /// restore anything, as create waits for its init's unit.
    #[test]
    fn criu_is_placed_and_the_unit_waited_for() {
        let recorder = Recorder {
            record: cgroups::Record {
                path: "/system.slice/skiff-c1.scope".into(),
                unified: true,
                dirs: vec![],
                unit: Some("skiff-c1.scope".into()),
            },
            calls: RefCell::new(Vec::new()),
        };
        place_criu(&recorder, 42).unwrap();
        assert_eq!(*recorder.calls.borrow(), ["add 42", "adopt 42", "settle"]);
    }

    #[test]
    fn cgroup_roots_name_controllers_only_where_they_differ() {
        let record = cgroups::Record {
            path: "/skiff/c2".into(),
            unified: false,
            unit: None,
            dirs: vec![
                cgroups::Dir {
                    path: "/sys/fs/cgroup/memory/skiff/c2".into(),
                    mount: "/sys/fs/cgroup/memory".into(),
                    subsystems: "memory".into(),
                    created: vec![],
                },
                cgroups::Dir {
                    path: "/sys/fs/cgroup/cpu,cpuacct/user.slice/skiff/c2".into(),
                    mount: "/sys/fs/cgroup/cpu,cpuacct".into(),
                    subsystems: "cpu,cpuacct".into(),
                    created: vec![],
                },
            ],
        };
        assert_eq!(
            cgroup_roots(&record),
            [
                (None, "/skiff/c2".to_string()),
                (
                    Some("cpu,cpuacct".to_string()),
                    "/user.slice/skiff/c2".to_string()
                )
            ]
        );
    }
}
