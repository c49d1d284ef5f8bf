//! Rootless `--systemd-cgroup` on a real systemd host (the guest of
//! scripts/systemd-guest.sh; ignored anywhere else): the test user's own
//! systemd instance (`user@UID.service`, started by logind for the user
//! made to linger), reached on the user's session bus with
//! `AUTH EXTERNAL` as the user, and the cgroup systemd delegates to that
//! instance. The commands run as a service of the user's instance
//! (`systemd-run --user`), where a user's login shell runs them. Every
//! scenario runs with runc, the reference, and skiff:
//! - `run --systemd-cgroup`: a transient scope in the user's instance
//!   (`systemctl --user show`: Delegate=yes, user.slice, the limits), the
//!   container in it, its limits in the cgroup files, `exec` joining it,
//!   and nothing left after `delete`;
//! - rootless Podman with `--cgroup-manager systemd`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use skiff_e2e::engines::{self, runtime_bin};
use skiff_e2e::rootless::user;
use skiff_e2e::{check, expect, require, stdout, wait_for, Report, Workdir};

const RUNTIMES: &[&str] = &["runc", "skiff"];
const IMAGE: &str = "localhost/busybox:e2e";
const MEMORY: u64 = 64 << 20;
const PIDS: u64 = 64;

/// The test user's systemd instance, started for the suite and stopped
/// after, with everything it ran.
struct Instance {
    uid: u32,
    /// Its XDG_RUNTIME_DIR, where its bus is.
    xdg: PathBuf,
}

impl Instance {
    fn start() -> Instance {
        let uid = user().uid;
        let unit = format!("user@{uid}.service");
        // The guest boots without logind (scripts/systemd-guest.sh masks
        // it): the instance needs the session logind opens for it, with
        // its XDG_RUNTIME_DIR. Lingering starts it as for a login.
        check(Command::new("systemctl").args(["unmask", "systemd-logind.service"]));
        check(Command::new("systemctl").args(["start", "systemd-logind.service"]));
        let started = Command::new("loginctl")
            .args(["enable-linger", &user().name])
            .output()
            .unwrap();
        let active = wait_for(60, || {
            Command::new("systemctl")
                .args(["is-active", "--quiet", &unit])
                .status()
                .is_ok_and(|s| s.success())
        });
        if !started.status.success() || !active {
            let journal = Command::new("journalctl")
                .args(["--no-pager", "-n", "60", "-u", &unit])
                .args(["-u", &format!("user-runtime-dir@{uid}.service")])
                .output()
                .unwrap();
            panic!(
                "loginctl enable-linger: {started:?}, {unit} active: {active}\n{}",
                String::from_utf8_lossy(&journal.stdout)
            );
        }
        let xdg = PathBuf::from(format!("/run/user/{uid}"));
        let bus = xdg.join("bus");
        assert!(
            wait_for(60, || bus.exists()),
            "{} never appeared (the user's bus comes with dbus-user-session)",
            bus.display()
        );
        Instance { uid, xdg }
    }

    /// `cmd` as the user, with its session's environment.
    fn as_user(&self, mut cmd: Command) -> Command {
        user().login(&mut cmd, &self.xdg);
        cmd.env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", self.xdg.join("bus").display()),
        )
        .stdin(Stdio::null());
        cmd
    }

    /// `cmd` (and its environment) run by the user's instance as a
    /// transient service, bounded in time: in the cgroup systemd gives
    /// the user, as its login shell's commands run. Its exit status and
    /// output come back (`--wait --pipe`).
    fn in_session(&self, cmd: &Command) -> Command {
        let mut run = Command::new("timeout");
        run.args(["-k", "5", "180", "systemd-run", "--user", "--quiet"])
            .args(["--pipe", "--wait", "--collect"]);
        for (key, value) in cmd.get_envs() {
            if let Some(value) = value {
                let (k, v) = (key.to_string_lossy(), value.to_string_lossy());
                run.arg(format!("--setenv={k}={v}"));
            }
        }
        run.arg("--").arg(cmd.get_program()).args(cmd.get_args());
        self.as_user(run)
    }

    /// `systemctl --user show UNIT -p PROP...` as a map.
    fn unit_props(&self, unit: &str, props: &[&str]) -> BTreeMap<String, String> {
        let mut c = Command::new("systemctl");
        c.args(["--user", "show", unit]);
        for p in props {
            c.arg("-p").arg(p);
        }
        stdout(&check(&mut self.as_user(c)))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("loginctl")
            .args(["disable-linger", &user().name])
            .output();
        let _ = Command::new("systemctl")
            .args(["stop", &format!("user@{}.service", self.uid)])
            .output();
    }
}

/// Panics unless this is a systemd host on pure cgroup v2.
fn assert_systemd_host() {
    let why = "needs a systemd host: scripts/systemd-tests.sh runs it in its guest";
    assert!(Path::new("/run/systemd/system").is_dir(), "{why}");
    assert!(
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "{why}"
    );
}

/// The cgroup v2 path of a process (its `0::` line).
fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("")
        .to_string()
}

fn cgroup_file(cgroup: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup{cgroup}/{file}"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A runtime run by the user in its session, its state in `root`.
struct Runtime<'a> {
    name: &'a str,
    root: PathBuf,
    instance: &'a Instance,
}

impl Runtime<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(runtime_bin(self.name));
        c.arg("--root")
            .arg(&self.root)
            .arg("--systemd-cgroup")
            .args(args);
        self.instance.in_session(&c)
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// The rootless config `runc spec --rootless` writes for the user,
    /// with the limits, running `args` on the shared rootfs; no
    /// cgroupsPath (the default unit: user.slice, RUNTIME-ID.scope).
    fn bundle(&self, work: &Workdir, id: &str, args: &[&str]) -> PathBuf {
        let dir = work.join(&format!("bundle-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        user().own(&dir);
        let mut spec = Command::new(runtime_bin("runc"));
        spec.args(["spec", "--rootless", "--bundle"]).arg(&dir);
        check(&mut self.instance.as_user(spec));
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.into();
        config["root"]["path"] = work.join("rootfs").display().to_string().into();
        config["linux"]["resources"] = serde_json::json!({
            "memory": {"limit": MEMORY},
            "pids": {"limit": PIDS},
        });
        std::fs::write(&path, config.to_string()).unwrap();
        dir
    }
}

/// The scope of a detached container in the user's instance, and
/// nothing left of it after delete.
fn scope(r: &Runtime<'_>, work: &Workdir) -> Result<(), String> {
    let id = format!("{}-user", r.name);
    let unit = format!("{}-{id}.scope", r.name);
    let bundle = r.bundle(work, &id, &["sleep", "1000"]);
    // The container keeps the stdio systemd-run passes it: none of ours,
    // or the pipes would never end.
    let log = work.join(&format!("run-{id}.err"));
    let status = r
        .cmd(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    expect!(status.success(), "run -d: {status}: {err}");
    let result = (|| {
        let state: serde_json::Value = serde_json::from_slice(&r.output(&["state", &id]).stdout)
            .map_err(|e| format!("state: {e}"))?;
        let pid = state["pid"].as_u64().unwrap_or(0) as u32;
        let props = r.instance.unit_props(
            &unit,
            &[
                "ActiveState",
                "Delegate",
                "Slice",
                "ControlGroup",
                "MemoryMax",
                "TasksMax",
            ],
        );
        let uid = r.instance.uid;
        let cgroup = format!("/user.slice/user-{uid}.slice/user@{uid}.service/user.slice/{unit}");
        let want = [
            ("ActiveState", "active".to_string()),
            ("Delegate", "yes".into()),
            ("Slice", "user.slice".into()),
            ("ControlGroup", cgroup.clone()),
            ("MemoryMax", MEMORY.to_string()),
            ("TasksMax", PIDS.to_string()),
        ];
        for (k, v) in &want {
            expect!(
                props.get(*k) == Some(v),
                "{unit}: {k}={:?}, want {v}",
                props.get(*k)
            );
        }
        expect!(cgroup_of(pid) == cgroup, "init {pid} in {}", cgroup_of(pid));
        for (file, value) in [("memory.max", MEMORY), ("pids.max", PIDS)] {
            let got = cgroup_file(&cgroup, file);
            expect!(got == value.to_string(), "{cgroup}/{file}: {got}");
        }
        // In the scope: its path, or "/" in a cgroup namespace rooted there
        // (runc 1.3's exec).
        let o = r.output(&["exec", &id, "cat", "/proc/self/cgroup"]);
        let seen = stdout(&o);
        expect!(
            seen == format!("0::{cgroup}\n") || seen == "0::/\n",
            "exec'd process: {o:?}"
        );
        Ok(cgroup)
    })();
    let o = r.output(&["delete", "--force", &id]);
    let cgroup = result?;
    expect!(o.status.success(), "delete --force: {o:?}");
    let unloaded = wait_for(20, || {
        r.instance
            .unit_props(&unit, &["LoadState"])
            .get("LoadState")
            == Some(&"not-found".to_string())
    });
    expect!(unloaded, "{unit} is still loaded after delete");
    expect!(
        !Path::new(&format!("/sys/fs/cgroup{cgroup}")).exists(),
        "{cgroup} is left behind"
    );
    Ok(())
}

/// Rootless Podman with `--cgroup-manager systemd`: the runtime makes the
/// container's scope in the user's instance, with the limit.
fn podman(instance: &Instance, rt: &str, work: &Workdir) -> Result<(), String> {
    let mut c = engines::podman_with(&work.path, &runtime_bin(rt), "systemd");
    c.args(["run", "--rm", "--network", "none", "--cgroupns", "host"])
        .args(["--memory", &MEMORY.to_string(), IMAGE])
        .args([
            "sh",
            "-c",
            // Without a cgroup namespace skiff binds the container's own
            // cgroup at /sys/fs/cgroup, runc the whole tree.
            "cg=$(cut -d: -f3 /proc/self/cgroup); echo $cg; \
             f=/sys/fs/cgroup; [ -e $f/memory.max ] || f=$f$cg; cat $f/memory.max",
        ]);
    let o = instance.in_session(&c).output().unwrap();
    expect!(o.status.success(), "podman run: {o:?}");
    let out = stdout(&o);
    let uid = instance.uid;
    let lines: Vec<&str> = out.lines().collect();
    expect!(
        lines.len() == 2
            && lines[0].starts_with(&format!(
                "/user.slice/user-{uid}.slice/user@{uid}.service/user.slice/libpod-"
            ))
            && lines[1] == MEMORY.to_string(),
        "the container's cgroup and memory.max: {out:?}"
    );
    Ok(())
}

#[test]
#[ignore = "needs a systemd host: scripts/systemd-tests.sh runs it in its guest"]
fn rootless_systemd_cgroup() {
    require!(
        "runc",
        "systemctl",
        "systemd-run",
        "podman",
        "conmon",
        "newuidmap"
    );
    assert_systemd_host();
    let instance = Instance::start();
    let work = Workdir::new("systemd-rootless");
    skiff_e2e::rootless::configure_podman(&work);
    let image = skiff_e2e::busybox_image(&work, IMAGE);
    user().own(&work.path);
    let mut import = engines::podman_with(&work.path, &runtime_bin("skiff"), "systemd");
    import.args(["import", image.tar.to_str().unwrap(), IMAGE]);
    check(&mut instance.in_session(&import));
    let mut report = Report::new("rootless --systemd-cgroup");
    for rt in RUNTIMES {
        let r = Runtime {
            name: rt,
            root: work.join(&format!("state-{rt}")),
            instance: &instance,
        };
        report.run(
            "run --systemd-cgroup: a scope with Delegate=yes and the limits in the user's instance; exec; delete leaves nothing",
            rt,
            || scope(&r, &work),
        );
        report.run(
            "rootless podman --cgroup-manager systemd: the container's scope in the user's instance",
            rt,
            || podman(&instance, rt, &work),
        );
    }
    drop(instance);
    drop(work);
    report.finish_all();
}
