//! Rootless Docker (20.10, or 28 with SKIFF_ENGINES=sid): dockerd started
//! by an ordinary user (scripts/rootless-user.sh) in RootlessKit's user and
//! mount namespaces, through docker.io's contrib dockerd-rootless.sh (20.10;
//! 28's refuses the host network, so RootlessKit is started with the
//! script's flags), `--net=host` (slirp4netns, pasta and vpnkit need a
//! /dev/net/tun the user may open; containers run with `--network none`),
//! with `--add-runtime skiff=...`. Every scenario also runs with runc for
//! comparison.

use std::path::Path;
use std::process::Command;

use skiff_e2e::cli::{self, Engine};
use skiff_e2e::engines::{self, Docker, Generation, DOCKER};
use skiff_e2e::rootless::user;
use skiff_e2e::{check, require, Daemon, Report, Workdir};

const IMAGE: &str = Docker::IMAGE;
const DOCKERD_ROOTLESS: &str = "/usr/share/docker.io/contrib/dockerd-rootless.sh";

fn start_dockerd(work: &Workdir) -> Daemon {
    let sock = work.join("docker.sock");
    let xdg = work.join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::create_dir_all(work.join("volume")).unwrap();
    user().own(&work.path);
    std::fs::set_permissions(&xdg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut cmd = match Generation::current() {
        Generation::Bookworm => {
            let mut cmd = Command::new(DOCKERD_ROOTLESS);
            cmd.env("DOCKERD_ROOTLESS_ROOTLESSKIT_NET", "host")
                .env("DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER", "none");
            cmd
        }
        // Docker 28's script refuses RootlessKit's host network: start
        // RootlessKit as the script does, with it.
        Generation::Sid => {
            let mut cmd = Command::new("rootlesskit");
            cmd.args([
                "--net=host",
                "--port-driver=none",
                "--copy-up=/etc",
                "--copy-up=/run",
                "--propagation=rslave",
                "dockerd",
            ]);
            cmd
        }
    };
    user().login(&mut cmd, &xdg);
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    engines::dockerd_flags(&mut cmd, work);
    Daemon::start(
        "dockerd-rootless",
        &mut cmd,
        work.join("dockerd.log"),
        || Docker { sock: sock.clone() }.is_up(),
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
