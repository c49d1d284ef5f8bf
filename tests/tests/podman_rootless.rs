//! Rootless Podman (4.3, or 5.8 with SKIFF_ENGINES=sid) run by an ordinary
//! user (scripts/rootless-user.sh) drives skiff as its OCI runtime: vfs
//! storage, `--network none` (slirp4netns and pasta need a /dev/net/tun the
//! user may open), cgroupfs without delegation, so no cgroup. Every
//! scenario also runs with runc for comparison.

use std::path::PathBuf;
use std::process::Command;

use skiff_e2e::cli::{self, Engine};
use skiff_e2e::rootless::user;
use skiff_e2e::{check, expect, require, stdout, Report, Workdir};

const IMAGE: &str = "localhost/busybox:e2e";

struct RootlessPodman {
    work: PathBuf,
}

impl RootlessPodman {
    fn runtime_dir(&self) -> PathBuf {
        self.work.join("xdg")
    }

    /// The pause process rootless Podman keeps to hold its user namespace
    /// outlives every command: ended with the suite. Podman 4 notes it
    /// in its --tmpdir, Podman 5 under $XDG_RUNTIME_DIR.
    fn stop_pause_process(&self) {
        let files = [
            self.work.join("tmp/pause.pid"),
            self.runtime_dir().join("libpod/tmp/pause.pid"),
        ];
        for file in files {
            if let Some(pid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                // SAFETY: kill with a pid read from the file Podman wrote.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Engine for RootlessPodman {
    fn cmd(&self, runtime: &str, args: &[&str]) -> Command {
        let bin = skiff_e2e::engines::runtime_bin(runtime);
        let mut c = skiff_e2e::engines::podman(&self.work, &bin);
        user().login(&mut c, &self.runtime_dir());
        c.args(args);
        c
    }

    fn run_flags(&self, _runtime: &str) -> Vec<String> {
        Vec::new()
    }

    fn image(&self) -> &str {
        IMAGE
    }
}

/// Podman's files of the suite, for the user: vfs storage (no mounts to
/// make or leave behind) and a runtime directory of its own.
fn configure(work: &Workdir) {
    skiff_e2e::engines::configure_podman(work);
    let w = work.path.display();
    std::fs::write(
        work.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{w}/root\"\nrunroot = \"{w}/runroot\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(work.join("xdg")).unwrap();
    std::fs::create_dir_all(work.join("volume")).unwrap();
    user().own(&work.path);
    std::fs::set_permissions(
        work.join("xdg"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
}

#[test]
fn rootless_podman_runs_skiff() {
    require!("podman", "conmon", "runc", "newuidmap", "newgidmap");
    let work = Workdir::new("podman-rootless");
    configure(&work);
    let podman = RootlessPodman {
        work: work.path.clone(),
    };
    let tar = skiff_e2e::busybox_image(&work, IMAGE).tar;
    user().own(&tar);
    check(&mut podman.cmd("skiff", &["import", tar.to_str().unwrap(), IMAGE]));
    let mut report = Report::new("rootless podman");
    let volume = work.join("volume");
    for rt in ["skiff", "runc"] {
        cli::rootless_scenarios(&podman, rt, user().uid, &volume, &mut report);
        keep_id(&podman, rt, &mut report);
    }
    cli::status_matches_runc(&podman, &mut report);
    let _ = podman.cmd("skiff", &["rm", "-a", "-f", "-t", "0"]).output();
    podman.stop_pause_process();
    drop(work);
    report.finish();
}

/// `--userns=keep-id`: the user's own uid inside, mapped through
/// newuidmap by Podman.
fn keep_id(podman: &RootlessPodman, rt: &str, report: &mut Report) {
    report.run("--userns=keep-id", rt, || {
        let o = podman
            .cmd(
                rt,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--userns=keep-id",
                    IMAGE,
                ],
            )
            .args(["sh", "-c", "id -u; id -g"])
            .output()
            .unwrap();
        let (uid, gid) = (user().uid, user().gid);
        expect!(stdout(&o) == format!("{uid}\n{gid}\n"), "{o:?}");
        Ok(())
    });
}
