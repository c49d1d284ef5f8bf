//! Private instances of the engines: a containerd with its own config,
//! root, state and sockets; Podman with its own storage, run and tmp
//! directories and configuration. Shared by the suites and the benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::Engine;
use crate::{Daemon, Workdir};

/// Which engines the suites drive: Debian 12's, installed on the host, or
/// Debian unstable's, from the root scripts/sid-root.sh builds, where
/// scripts/in-sid.sh runs the same test executables with
/// SKIFF_ENGINES=sid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// containerd 1.6, Docker 20.10, Podman 4.3, runc 1.1.
    Bookworm,
    /// containerd 2.1, Docker 28, Podman 5.8, runc 1.3.
    Sid,
}

impl Generation {
    /// The generation SKIFF_ENGINES names (bookworm when unset).
    pub fn current() -> Generation {
        match std::env::var("SKIFF_ENGINES").as_deref() {
            Err(_) | Ok("" | "bookworm") => Generation::Bookworm,
            Ok("sid") => Generation::Sid,
            Ok(other) => panic!("SKIFF_ENGINES={other}: expected bookworm or sid"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Generation::Bookworm => "bookworm",
            Generation::Sid => "sid",
        }
    }
}

/// Starts containerd with everything under `work` and the CRI plugin off;
/// `shims` (if any) goes first on its PATH, where containerd looks for
/// `containerd-shim-NAME-v2` binaries.
pub fn start_containerd(work: &Workdir, shims: Option<&Path>) -> Daemon {
    // containerd 2 splits CRI into three plugins and reads its own config
    // version (an older one is migrated, with a warning).
    let (version, cri) = match Generation::current() {
        Generation::Bookworm => (2, r#""io.containerd.grpc.v1.cri""#),
        Generation::Sid => (
            3,
            r#""io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images""#,
        ),
    };
    start_containerd_with(work, shims, version, &format!("{cri}, "), "")
}

/// Starts containerd as `start_containerd` does, with config `version`,
/// `disabled` plugins before the snapshotters this host cannot use, and
/// `extra` config at the end.
pub fn start_containerd_with(
    work: &Workdir,
    shims: Option<&Path>,
    version: u32,
    disabled: &str,
    extra: &str,
) -> Daemon {
    let w = work.path.display();
    let config = format!(
        r#"version = {version}
root = "{w}/root"
state = "{w}/state"
disabled_plugins = [{disabled}"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{w}/containerd.sock"
[ttrpc]
  address = "{w}/containerd.sock.ttrpc"
[debug]
  address = "{w}/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/opt"
{extra}"#
    );
    let cfg = work.join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let sock = work.join("containerd.sock");
    let _ = std::fs::remove_file(&sock);
    let mut cmd = Command::new("containerd");
    cmd.arg("--config").arg(&cfg);
    if let Some(dir) = shims {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    Daemon::start("containerd", &mut cmd, work.join("containerd.log"), || {
        sock.exists()
    })
}

/// A directory holding only `shim` under its own name, for the front of
/// containerd's PATH (containerd runs `containerd-shim-NAME-v2` from it).
pub fn shim_dir(work: &Workdir, shim: &Path) -> std::path::PathBuf {
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let name = shim.file_name().unwrap();
    std::os::unix::fs::symlink(shim, bin.join(name)).unwrap();
    bin
}

/// Writes Podman's configuration under `work`.
pub fn configure_podman(work: &Workdir) {
    let w = work.path.display();
    // The bounding set here lacks CAP_SYS_RESOURCE: Podman's default
    // rlimits (1048576) cannot be set, so the suite asks for lower ones.
    std::fs::write(
        work.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             events_logfile_path = \"{w}/events.log\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("storage.conf"),
        format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{w}/root\"\nrunroot = \"{w}/runroot\"\n"),
    )
    .unwrap();
}

/// `podman` with the private configuration of `work` and `runtime`, on
/// the cgroupfs cgroup manager.
pub fn podman(work: &Path, runtime: &Path) -> Command {
    podman_with(work, runtime, "cgroupfs")
}

/// `podman` as `podman` makes it, with `cgroup_manager` (`cgroupfs`, or
/// `systemd` on a systemd host).
pub fn podman_with(work: &Path, runtime: &Path, cgroup_manager: &str) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", work.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", work.join("storage.conf"))
        .arg("--root")
        .arg(work.join("root"))
        .arg("--runroot")
        .arg(work.join("runroot"))
        .arg("--tmpdir")
        .arg(work.join("tmp"))
        .arg("--runtime")
        .arg(runtime)
        .args([
            "--cgroup-manager",
            cgroup_manager,
            "--events-backend",
            "file",
        ]);
    c
}

/// The path of `runtime` for an engine: the skiff under test, or the peer
/// (runc) found on PATH.
pub fn runtime_bin(runtime: &str) -> PathBuf {
    if runtime == "skiff" {
        crate::skiff_bin()
    } else {
        crate::which(runtime).unwrap()
    }
}

/// dockerd's flags for a private daemon with everything under `work`,
/// listening on `work/docker.sock`: no iptables, no bridge (containers
/// run with `--network none`), skiff added as the runtime `skiff`.
pub fn dockerd_flags(cmd: &mut Command, work: &Workdir) {
    cmd.arg("--data-root")
        .arg(work.join("data"))
        .arg("--exec-root")
        .arg(work.join("exec"))
        .arg("--pidfile")
        .arg(work.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", work.join("docker.sock").display()))
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .arg("--add-runtime")
        .arg(format!("skiff={}", crate::skiff_bin().display()))
        // Podman-like rlimit defaults would fail here: the bounding set
        // lacks CAP_SYS_RESOURCE (Docker keeps the host's by default).
        .args(["--default-ulimit", "nofile=1024:1024"]);
}

/// The Debian Docker client; /usr/local/bin may hold another.
pub const DOCKER: &str = "/usr/bin/docker";

/// A private dockerd listening on `sock`, whose containers pick their
/// runtime with `--runtime`, running the image `busybox:e2e`.
pub struct Docker {
    pub sock: PathBuf,
}

impl Docker {
    pub const IMAGE: &'static str = "busybox:e2e";

    /// True once the daemon answers. (Not `version`: Docker 28 in
    /// RootlessKit without a port driver panics serving it.)
    pub fn is_up(&self) -> bool {
        self.cmd("", &["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Engine for Docker {
    fn cmd(&self, _runtime: &str, args: &[&str]) -> Command {
        let mut c = docker(&self.sock);
        c.args(args);
        c
    }

    fn run_flags(&self, runtime: &str) -> Vec<String> {
        vec!["--runtime".into(), runtime.into()]
    }

    fn image(&self) -> &str {
        Docker::IMAGE
    }
}

/// The Docker client talking to the dockerd of `sock`.
pub fn docker(sock: &Path) -> Command {
    let mut c = Command::new(DOCKER);
    c.arg("-H").arg(format!("unix://{}", sock.display()));
    c
}

/// Starts dockerd as `dockerd_flags` sets it up (skiff added as `skiff`),
/// with an empty config file of its own and `args` (more runtimes, exec
/// options).
pub fn start_dockerd(work: &Workdir, args: &[String]) -> Daemon {
    let config = work.join("daemon.json");
    std::fs::write(&config, "{}").unwrap();
    let mut cmd = Command::new("dockerd");
    cmd.arg("--config-file").arg(&config);
    dockerd_flags(&mut cmd, work);
    cmd.args(args);
    let docker = Docker {
        sock: work.join("docker.sock"),
    };
    Daemon::start("dockerd", &mut cmd, work.join("dockerd.log"), || {
        docker.is_up()
    })
}
