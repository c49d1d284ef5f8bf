//! Docker (20.10, or 28 with SKIFF_ENGINES=sid) drives skiff: a private dockerd (`--add-runtime skiff=...
//! --default-runtime skiff`, no iptables, no bridge, its own data, exec
//! root and socket), containers with `--network none`. Every scenario also
//! runs with runc (`--runtime runc`) for comparison.

use skiff_e2e::cli::{self, Engine};
use skiff_e2e::engines::{self, Docker, DOCKER};
use skiff_e2e::{check, require, Report, Workdir};

const IMAGE: &str = Docker::IMAGE;

#[test]
fn docker_runs_skiff() {
    require!("dockerd", "runc");
    if !std::path::Path::new(DOCKER).exists() {
        assert!(
            std::env::var_os("SKIFF_REQUIRE_ALL").is_none(),
            "{DOCKER} missing"
        );
        eprintln!("SKIPPED docker: {DOCKER} missing (apt install docker.io)");
        return;
    }
    // dockerd writes its trust key under /etc/docker whatever --data-root
    // says.
    let _outside = skiff_e2e::CreatedOutside::watch(&["/etc/docker"]);
    let work = Workdir::new("docker");
    let tar = skiff_e2e::busybox_image(&work, IMAGE).tar;
    let daemon = engines::start_dockerd(&work, &["--default-runtime".into(), "skiff".into()]);
    let docker = Docker {
        sock: work.join("docker.sock"),
    };
    check(&mut docker.cmd("skiff", &["import", tar.to_str().unwrap(), IMAGE]));
    let mut report = Report::new("docker");
    // The default runtime is skiff: a container without --runtime uses it.
    report.run("skiff is the default runtime", "skiff", || {
        let out = docker
            .cmd(
                "skiff",
                &["run", "--rm", "--network", "none", IMAGE, "true"],
            )
            .output()
            .unwrap();
        let info = docker
            .cmd("skiff", &["info", "--format", "{{.DefaultRuntime}}"])
            .output()
            .unwrap();
        let default = String::from_utf8_lossy(&info.stdout).trim().to_string();
        skiff_e2e::expect!(
            out.status.success() && default == "skiff",
            "{out:?} default={default}"
        );
        Ok(())
    });
    for rt in ["skiff", "runc"] {
        cli::scenarios(&docker, rt, &mut report);
    }
    cli::status_matches_runc(&docker, &mut report);
    let ids = docker.cmd("skiff", &["ps", "-aq"]).output().unwrap();
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        let _ = docker.cmd("skiff", &["rm", "-f", id]).output();
    }
    drop(daemon);
    drop(work);
    skiff_e2e::remove_parent_cgroup("docker");
    report.finish();
}
