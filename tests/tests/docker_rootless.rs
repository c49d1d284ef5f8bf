//! Rootless Docker (20.10, or 28 with SKIFF_ENGINES=sid): dockerd started
//! by an ordinary user (scripts/rootless-user.sh) through docker.io's
//! contrib dockerd-rootless.sh, in RootlessKit's user and mount namespaces
//! (`--net=host`: slirp4netns and vpnkit need a /dev/net/tun the user may
//! open; containers run with `--network none`), with `--add-runtime
//! skiff=...`. Every scenario also runs with runc for comparison.

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_e2e::cli::{self, Engine};
use skiff_e2e::rootless::user;
use skiff_e2e::{check, require, Daemon, Report, Workdir};

const IMAGE: &str = "busybox:e2e";
/// The Debian client; /usr/local/bin may hold another.
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD_ROOTLESS: &str = "/usr/share/docker.io/contrib/dockerd-rootless.sh";

struct Docker {
    sock: PathBuf,
}

impl Engine for Docker {
    fn cmd(&self, _runtime: &str, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        c
    }

    fn run_flags(&self, runtime: &str) -> Vec<String> {
        vec!["--runtime".into(), runtime.into()]
    }

    fn image(&self) -> &str {
        IMAGE
    }
}

fn start_dockerd(work: &Workdir) -> Daemon {
    let sock = work.join("docker.sock");
    let xdg = work.join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::create_dir_all(work.join("volume")).unwrap();
    user().own(&work.path);
    std::fs::set_permissions(&xdg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut cmd = Command::new(DOCKERD_ROOTLESS);
    user().login(&mut cmd, &xdg);
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("DOCKERD_ROOTLESS_ROOTLESSKIT_NET", "host")
        .env("DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER", "none")
        .arg("--data-root")
        .arg(work.join("data"))
        .arg("--exec-root")
        .arg(work.join("exec"))
        .arg("--pidfile")
        .arg(work.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
        .arg("--add-runtime")
        .arg(format!("skiff={}", skiff_e2e::skiff_bin().display()))
        // The bounding set lacks CAP_SYS_RESOURCE (see docker.rs).
        .args(["--default-ulimit", "nofile=1024:1024"]);
    Daemon::start(
        "dockerd-rootless",
        &mut cmd,
        work.join("dockerd.log"),
        || {
            Command::new(DOCKER)
                .arg("-H")
                .arg(format!("unix://{}", sock.display()))
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        },
    )
}

#[test]
fn rootless_docker_runs_skiff() {
    require!("dockerd", "runc", "rootlesskit", "newuidmap", "newgidmap");
    for needed in [DOCKER, DOCKERD_ROOTLESS] {
        if !Path::new(needed).exists() {
            assert!(
                std::env::var_os("SKIFF_REQUIRE_ALL").is_none(),
                "{needed} missing"
            );
            eprintln!("SKIPPED rootless docker: {needed} missing (apt install docker.io)");
            return;
        }
    }
    let work = Workdir::new("docker-rootless");
    let tar = skiff_e2e::busybox_image(&work, IMAGE).tar;
    let daemon = start_dockerd(&work);
    let docker = Docker {
        sock: work.join("docker.sock"),
    };
    check(&mut docker.cmd("skiff", &["import", tar.to_str().unwrap(), IMAGE]));
    let mut report = Report::new("rootless docker");
    let volume = work.join("volume");
    for rt in ["skiff", "runc"] {
        cli::rootless_scenarios(&docker, rt, user().uid, &volume, &mut report);
    }
    cli::status_matches_runc(&docker, &mut report);
    let ids = docker.cmd("skiff", &["ps", "-aq"]).output().unwrap();
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        let _ = docker.cmd("skiff", &["rm", "-f", id]).output();
    }
    drop(daemon);
    drop(work);
    report.finish();
}
