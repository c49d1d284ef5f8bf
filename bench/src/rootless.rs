//! `skiff-bench --rootless USER`: `run` of /bin/true by each runtime as
//! root and as USER (an ordinary user with its own state root, running
//! the rootless config `skiff spec --rootless` writes for it), all
//! interleaved in one loop, so the two ratios to crun are taken under the
//! same load.
//!
//! crun 1.8.1 refuses this hybrid cgroup host, rootless too, and a user
//! cannot make the mount namespace that hides the cgroup2 mount from it
//! (scripts/crun-without-unified.sh needs root). So the benchmark makes
//! that namespace as root, as for the root rows, and only then takes the
//! user's ids for the rootless runs: every runtime, as root or not, sees
//! the same v1-only cgroups. Without delegation none of them gets a
//! cgroup as the user (runc and crun ignore the refusal, as skiff does).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{
    build_bundle, print_header, print_scenario, private_namespace, runtime_cmd, timed, Runtime,
};

/// The benchmark's ordinary user, from the host's /etc/passwd (the
/// benchmark is static: no NSS).
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl User {
    fn lookup(name: &str) -> User {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 6 && f[0] == name)
            .map(|f| User {
                name: name.to_string(),
                uid: f[2].parse().unwrap(),
                gid: f[3].parse().unwrap(),
                home: PathBuf::from(f[5]),
            })
            .unwrap_or_else(|| {
                eprintln!("skiff-bench: no user {name} (scripts/rootless-user.sh makes one)");
                std::process::exit(1);
            })
    }

    /// `cmd` to run as the user, with a login's environment and
    /// `XDG_RUNTIME_DIR` at `xdg`.
    fn command(&self, mut cmd: Command, xdg: &Path) -> Command {
        cmd.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("XDG_RUNTIME_DIR", xdg);
        cmd
    }

    /// `dir`, made and owned by the user, private to it.
    fn private_dir(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid)).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
}

/// Rewrites the bundle's config as `skiff spec --rootless` writes it for
/// the user (its own ids mapped to root, no network namespace, /sys
/// bound), with the bundle's process arguments.
fn make_rootless(bundle: &Path, skiff: &Path, user: &User, xdg: &Path) {
    let spec_dir = xdg.join("spec");
    user.private_dir(&spec_dir);
    let mut spec = Command::new(skiff);
    spec.args(["spec", "--rootless", "--bundle"]).arg(&spec_dir);
    let out = user.command(spec, xdg).output().unwrap();
    assert!(out.status.success(), "skiff spec --rootless: {out:?}");
    let mut rootless: serde_json::Value =
        serde_json::from_slice(&std::fs::read(spec_dir.join("config.json")).unwrap()).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    rootless["process"]["terminal"] = serde_json::json!(false);
    rootless["process"]["args"] = config["process"]["args"].clone();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&rootless).unwrap(),
    )
    .unwrap();
    std::fs::remove_dir_all(&spec_dir).unwrap();
}

pub fn bench(runtimes: &[Runtime], user_name: &str, runs: usize, busybox: &Path) {
    let user = User::lookup(user_name);
    let work = std::env::temp_dir().join(format!("skiff-bench-rootless-{}", std::process::id()));
    let bundle = work.join("bundle");
    build_bundle(&bundle, busybox, &["/bin/true"], false);
    let rootless_bundle = work.join("rootless");
    build_bundle(&rootless_bundle, busybox, &["/bin/true"], false);
    let state = work.join("state");
    private_namespace(&state);
    let root_state = state.join("root");
    let xdg = state.join("user");
    user.private_dir(&xdg);
    make_rootless(&rootless_bundle, &runtimes[0].path, &user, &xdg);

    let n = runtimes.len();
    let mut root_ms = vec![Vec::new(); n];
    let mut user_ms = vec![Vec::new(); n];
    let warmup = 5;
    for i in 0..runs + warmup {
        for (r, rt) in runtimes.iter().enumerate() {
            let id = format!("{}-{i}", rt.name);
            let (root, _) = timed(runtime_cmd(
                rt,
                &root_state,
                &["run", "--bundle", bundle.to_str().unwrap(), &id],
            ));
            let run = runtime_cmd(
                rt,
                &xdg,
                &["run", "--bundle", rootless_bundle.to_str().unwrap(), &id],
            );
            let (rootless, _) = timed(user.command(run, &xdg));
            if i >= warmup {
                root_ms[r].push(root.as_secs_f64() * 1e3);
                user_ms[r].push(rootless.as_secs_f64() * 1e3);
            }
        }
    }
    println!(
        "{runs} interleaved runs each (after {warmup} warm-up), state on tmpfs, busybox /bin/true, \
         as root and as {user_name}"
    );
    print_header();
    print_scenario("run, root", runtimes, &mut root_ms);
    print_scenario("run, rootless", runtimes, &mut user_ms);
    let _ = nix::mount::umount2(&state, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&work);
}
