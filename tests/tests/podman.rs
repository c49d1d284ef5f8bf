//! Podman (4.3, or 5.8 with SKIFF_ENGINES=sid; with conmon) drives skiff as
//! its OCI runtime
//! (`--runtime skiff --cgroup-manager cgroupfs`), with private storage,
//! run and tmp directories and `--network none`. Every scenario also runs
//! with runc for comparison. Checkpoint and restore run with the sid
//! engines only: they need CRIU 4 (Debian 12's 3.17 fails on this kernel).

use std::path::PathBuf;
use std::process::Command;

use skiff_e2e::cli::{self, Engine};
use skiff_e2e::engines::Generation;
use skiff_e2e::{check, expect, require, stdout, wait_for, Report, Workdir};

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
        if Generation::current() == Generation::Sid {
            checkpoint_scenarios(&podman, rt, &mut report);
        }
    }
    cli::status_matches_runc(&podman, &mut report);
    let _ = podman.cmd("skiff", &["rm", "-a", "-f", "-t", "0"]).output();
    drop(work);
    skiff_e2e::remove_parent_cgroup("libpod_parent");
    report.finish();
}

const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done";

/// The numbers in a container's log, which must be 1, 2, ... with none
/// missing or repeated: a counter that went on across checkpoint and
/// restore (one started again would count from 1 a second time).
fn counted(podman: &Podman, rt: &str, name: &str) -> Result<u64, String> {
    let o = podman.cmd(rt, &["logs", name]).output().unwrap();
    let numbers: Vec<u64> = stdout(&o)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    expect!(
        numbers.iter().zip(1..).all(|(n, want)| *n == want),
        "{name}: the log does not count 1, 2, ...: {numbers:?}"
    );
    Ok(numbers.len() as u64)
}

/// Waits until the counter in `name` passes `n`.
fn counts_past(podman: &Podman, rt: &str, name: &str, n: u64) -> Result<u64, String> {
    let mut last = 0;
    wait_for(10, || {
        last = counted(podman, rt, name).unwrap_or(0);
        last > n
    });
    counted(podman, rt, name)?;
    expect!(last > n, "{name}: counter stuck at {last} (waited for {n})");
    Ok(last)
}

fn inspect(podman: &Podman, rt: &str, name: &str, format: &str) -> String {
    let o = podman
        .cmd(rt, &["inspect", "--format", format, name])
        .output()
        .unwrap();
    stdout(&o).trim().to_string()
}

/// `podman container checkpoint` and `restore`, in place and through an
/// exported archive imported as a new container.
fn checkpoint_scenarios(podman: &Podman, rt: &str, report: &mut Report) {
    let c = format!("ckpt-{rt}");
    let imported = format!("ckpt-imported-{rt}");
    let archive = podman.work.join(format!("ckpt-{rt}.tar.gz"));
    let remove = |name: &str| {
        let _ = podman.cmd(rt, &["rm", "-f", "-t", "0", name]).output();
    };
    report.run("checkpoint and restore a counter in place", rt, || {
        check(&mut podman.cmd(
            rt,
            &[
                "run",
                "-d",
                "--network",
                "none",
                "--name",
                &c,
                IMAGE,
                "sh",
                "-c",
                COUNTER,
            ],
        ));
        counts_past(podman, rt, &c, 3)?;
        check(&mut podman.cmd(rt, &["container", "checkpoint", &c]));
        expect!(
            inspect(podman, rt, &c, "{{.State.Status}} {{.State.Checkpointed}}") == "exited true",
            "after checkpoint: {}",
            inspect(podman, rt, &c, "{{.State.Status}}")
        );
        let dumped = counted(podman, rt, &c)?;
        check(&mut podman.cmd(rt, &["container", "restore", &c]));
        expect!(
            inspect(podman, rt, &c, "{{.State.Status}} {{.State.Restored}}") == "running true",
            "after restore: {}",
            inspect(podman, rt, &c, "{{.State.Status}}")
        );
        counts_past(podman, rt, &c, dumped + 2)?;
        let o = podman.cmd(rt, &["exec", &c, "true"]).output().unwrap();
        expect!(
            o.status.success(),
            "exec into the restored container: {o:?}"
        );
        Ok(())
    });
    report.run(
        "checkpoint --export, restore --import as a new container",
        rt,
        || {
            let dumped = counted(podman, rt, &c)?;
            check(&mut podman.cmd(
                rt,
                &[
                    "container",
                    "checkpoint",
                    "--export",
                    archive.to_str().unwrap(),
                    &c,
                ],
            ));
            check(&mut podman.cmd(
                rt,
                &[
                    "container",
                    "restore",
                    "--import",
                    archive.to_str().unwrap(),
                    "--name",
                    &imported,
                ],
            ));
            expect!(
                inspect(podman, rt, &imported, "{{.State.Status}}") == "running",
                "imported: {}",
                inspect(podman, rt, &imported, "{{.State.Status}}")
            );
            counts_past(podman, rt, &imported, dumped + 2)?;
            Ok(())
        },
    );
    remove(&c);
    remove(&imported);
    let _ = std::fs::remove_file(&archive);
}
