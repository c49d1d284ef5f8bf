//! Podman (4.3, or 5.8 with SKIFF_ENGINES=sid; with conmon) drives skiff as
//! its OCI runtime
//! (`--runtime skiff --cgroup-manager cgroupfs`), with private storage,
//! run and tmp directories and `--network none`. Every scenario also runs
//! with runc for comparison.

use std::path::PathBuf;
use std::process::Command;

use skiff_e2e::cli::{self, Engine};
use skiff_e2e::{check, require, Report, Workdir};

const IMAGE: &str = "localhost/busybox:e2e";

struct Podman {
    work: PathBuf,
}

impl Engine for Podman {
    fn cmd(&self, runtime: &str, args: &[&str]) -> Command {
        let bin = skiff_e2e::engines::runtime_bin(runtime);
        let mut c = skiff_e2e::engines::podman(&self.work, &bin);
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

#[test]
fn podman_runs_skiff() {
    require!("podman", "conmon", "runc");
    // Podman keeps its blob-info cache in /var/lib/containers/cache
    // whatever --root says.
    let _outside = skiff_e2e::CreatedOutside::watch(&["/var/lib/containers"]);
    let work = Workdir::new("podman");
    skiff_e2e::engines::configure_podman(&work);
    let tar = skiff_e2e::busybox_image(&work, IMAGE).tar;
    let podman = Podman {
        work: work.path.clone(),
    };
    check(&mut podman.cmd("skiff", &["import", tar.to_str().unwrap(), IMAGE]));
    let mut report = Report::new("podman");
    for rt in ["skiff", "runc"] {
        cli::scenarios(&podman, rt, &mut report);
    }
    cli::status_matches_runc(&podman, &mut report);
    let _ = podman.cmd("skiff", &["rm", "-a", "-f", "-t", "0"]).output();
    drop(work);
    skiff_e2e::remove_parent_cgroup("libpod_parent");
    report.finish();
}
