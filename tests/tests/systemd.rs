//! The systemd cgroup driver on a real systemd host: systemd as PID 1 on
//! pure cgroup v2 with D-Bus, which here only the guest of
//! scripts/systemd-guest.sh is (scripts/systemd-tests.sh runs this suite
//! there; anywhere else it is ignored). Every scenario runs with each
//! runtime of RUNTIMES, runc being the reference:
//! - `run --systemd-cgroup` itself: the transient scope systemd made for
//!   `cgroupsPath` `slice:prefix:id` (`systemctl show`: Delegate=yes, the
//!   slice, the limits, the device policy, `org.systemd.property.*`
//!   annotations), the container's processes in it (exec's too), the
//!   limits in the cgroup files and enforced, `update` and pause/resume,
//!   and nothing left after delete (no unit, no failed unit, no cgroup);
//!   nested slices, the root slice and a unit that is a slice; the same
//!   name again right after delete; a failed unit of that name reset; and
//!   systemd out of reach;
//! - containerd with the runc options' `SystemdCgroup` (`ctr run
//!   --runc-systemd-cgroup`), through the runc shim calling the runtime and,
//!   for skiff, through skiff's own shim;
//! - Podman with `--cgroup-manager systemd`;
//! - Docker with `native.cgroupdriver=systemd`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use skiff_e2e::ctr::{Ctr, IMAGE};
use skiff_e2e::engines::{self, DOCKER};
use skiff_e2e::{check, expect, require, stdout, wait_for, Report, Workdir};

/// The runtimes every scenario runs with: runc as the reference, and
/// skiff (under containerd also through skiff's own shim).
const RUNTIMES: &[&str] = &["runc", "skiff"];

/// The limits every scenario sets, and what systemd shows for them (the
/// tasks limit leaves room for the threads of runc's own `runc init`).
const MEMORY: u64 = 64 << 20;
const PIDS: u64 = 64;
/// 20 ms of CPU time per 100 ms: CPUQuotaPerSecUSec=200ms.
const CPU_QUOTA: u64 = 20_000;
const CPU_PERIOD: u64 = 100_000;

const WHY_IGNORED: &str = "needs a systemd host: scripts/systemd-tests.sh runs it in its guest";

fn runtime_bin(rt: &str) -> PathBuf {
    if rt == "skiff" {
        skiff_e2e::skiff_bin()
    } else {
        skiff_e2e::which(rt).unwrap_or_else(|| panic!("{rt} is not installed"))
    }
}

/// Panics unless this is a systemd host on pure cgroup v2: the suite is
/// only run where it can pass.
fn assert_systemd_host() {
    assert!(
        Path::new("/run/systemd/system").is_dir(),
        "systemd is not PID 1 here ({WHY_IGNORED})"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
            && !mounts
                .lines()
                .any(|l| l.split(' ').nth(2) == Some("cgroup")),
        "cgroups are not cgroup v2 only here ({WHY_IGNORED})"
    );
}

/// `systemctl show UNIT -p PROP...` as a map.
fn unit_props(unit: &str, props: &[&str]) -> BTreeMap<String, String> {
    let mut c = Command::new("systemctl");
    c.arg("show").arg(unit);
    for p in props {
        c.arg("-p").arg(p);
    }
    stdout(&check(&mut c))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every value `systemctl show` gives for a list property of `unit`
/// (DeviceAllow: one line per entry).
fn unit_prop_all(unit: &str, prop: &str) -> Vec<String> {
    let o = check(Command::new("systemctl").args(["show", unit, "-p", prop]));
    stdout(&o)
        .lines()
        .filter_map(|l| l.strip_prefix(prop)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// Checks that `unit` is an active scope with Delegate=yes in `slice`
/// and has the properties `want`; returns its cgroup (ControlGroup).
fn check_scope(unit: &str, slice: &str, want: &[(&str, String)]) -> Result<String, String> {
    let mut expected = vec![("Delegate", "yes".to_string())];
    expected.extend(want.iter().cloned());
    check_unit(unit, slice, &expected)
}

/// Checks that `unit` is active in `slice` and has the properties
/// `want`; returns its cgroup (ControlGroup).
fn check_unit(unit: &str, slice: &str, want: &[(&str, String)]) -> Result<String, String> {
    let mut names = vec!["ActiveState", "Slice", "ControlGroup"];
    names.extend(want.iter().map(|(k, _)| *k));
    let got = unit_props(unit, &names);
    let mut expected: Vec<(&str, String)> =
        vec![("ActiveState", "active".into()), ("Slice", slice.into())];
    expected.extend(want.iter().cloned());
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}={} (want {v})", got.get(*k).map_or("?", |s| s)))
        .collect();
    expect!(wrong.is_empty(), "{unit}: {}", wrong.join(", "));
    let cgroup = got.get("ControlGroup").cloned().unwrap_or_default();
    expect!(
        cgroup.ends_with(&format!("/{unit}")),
        "{unit}: ControlGroup={cgroup}"
    );
    Ok(cgroup)
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

fn ppid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: the fields follow its last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn cgroup_file(cgroup: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup{cgroup}/{file}"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Checks that the cgroup files of `cgroup` hold `want`.
fn check_files(cgroup: &str, want: &[(&str, String)]) -> Result<(), String> {
    for (file, value) in want {
        let got = cgroup_file(cgroup, file);
        expect!(&got == value, "{cgroup}/{file}: {got:?}, want {value:?}");
    }
    Ok(())
}

/// Checks that nothing is left of `unit` and its cgroup: systemd holds no
/// unit of that name (not active, not failed, not merely stopped) and the
/// cgroup is removed. Asked with `list-units`, which lists only what
/// systemd holds (`systemctl show` would load a slice of any name to
/// answer); given a moment, since systemd ends a unit asynchronously.
fn check_gone(unit: &str, cgroup: &str) -> Result<(), String> {
    let listed = || {
        stdout(&check(Command::new("systemctl").args([
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            unit,
        ])))
        .trim()
        .to_string()
    };
    let dir = format!("/sys/fs/cgroup{cgroup}");
    if wait_for(20, || listed().is_empty() && !Path::new(&dir).exists()) {
        return Ok(());
    }
    let left = listed();
    expect!(left.is_empty(), "{unit} is still there: {left}");
    expect!(!Path::new(&dir).exists(), "{cgroup} is left behind");
    Ok(())
}

/// The properties systemd shows for the limits of every scenario.
fn limit_props() -> Vec<(&'static str, String)> {
    vec![
        ("MemoryMax", MEMORY.to_string()),
        ("TasksMax", PIDS.to_string()),
        ("CPUQuotaPerSecUSec", "200ms".into()),
    ]
}

/// A runtime called directly, with its state under the work directory.
struct Direct {
    name: String,
    bin: PathBuf,
    root: PathBuf,
}

impl Direct {
    /// The runtime with `args`, bounded in time: a hang fails the
    /// scenario (`timeout` exits 124) instead of stalling the guest.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "120"])
            .arg(&self.bin)
            .arg("--root")
            .arg(&self.root)
            .arg("--systemd-cgroup")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// The runtime's `args` (with `--systemd-cgroup`) in a mount
    /// namespace of their own where the shell commands `hide` first put
    /// tmpfs over sockets.
    fn hiding(&self, hide: &str, args: &[&str]) -> Output {
        let inner = self.cmd(args);
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!("{hide} && exec \"$@\""))
            .arg("sh")
            .arg(inner.get_program())
            .args(inner.get_args())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `run -d`: the container keeps the stdio it is given, so it gets
    /// none of ours (a pipe would never reach its end); the runtime's
    /// errors go to a file.
    fn run_detached(&self, work: &Workdir, bundle: &Path, id: &str) -> Result<(), String> {
        let log = work.join(&format!("run-{id}.err"));
        let status = self
            .cmd(&["run", "-d", "--bundle", bundle.to_str().unwrap(), id])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        expect!(status.success(), "run -d: {status}: {err}");
        Ok(())
    }

    fn pid(&self, id: &str) -> Result<u32, String> {
        let o = self.output(&["state", id]);
        let state: serde_json::Value =
            serde_json::from_slice(&o.stdout).map_err(|e| format!("state {id}: {e}: {o:?}"))?;
        state["pid"]
            .as_u64()
            .map(|p| p as u32)
            .ok_or(format!("state {id}: no pid: {state}"))
    }

    /// Container `NAME-what` in a scope of system.slice: its id, its unit
    /// and a bundle running `args` there.
    fn in_system_slice(
        &self,
        work: &Workdir,
        what: &str,
        args: &[&str],
    ) -> (String, String, PathBuf) {
        let id = format!("{}-{what}", self.name);
        let unit = format!("{}-{id}.scope", self.name);
        let path = format!("system.slice:{}:{id}", self.name);
        let bundle = self.bundle(work, &id, &path, args);
        (id, unit, bundle)
    }

    /// A bundle running `args` in cgroup `cgroups_path` with the limits,
    /// from the config `runc spec` writes, on the shared busybox rootfs.
    fn bundle(&self, work: &Workdir, id: &str, cgroups_path: &str, args: &[&str]) -> PathBuf {
        let dir = work.join(&format!("bundle-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let runc = skiff_e2e::which("runc").unwrap();
        check(Command::new(runc).arg("spec").arg("--bundle").arg(&dir));
        let path = dir.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = args.into();
        spec["root"]["path"] = work.join("rootfs").display().to_string().into();
        spec["linux"]["cgroupsPath"] = cgroups_path.into();
        let resources = &mut spec["linux"]["resources"];
        resources["memory"] = serde_json::json!({"limit": MEMORY, "swap": MEMORY});
        resources["pids"] = serde_json::json!({"limit": PIDS});
        resources["cpu"] = serde_json::json!({"quota": CPU_QUOTA, "period": CPU_PERIOD});
        std::fs::write(&path, spec.to_string()).unwrap();
        dir
    }
}

/// Adds `annotations` to the config of `bundle`.
fn annotate(bundle: &Path, annotations: &[(&str, &str)]) {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for (k, v) in annotations {
        spec["annotations"][*k] = (*v).into();
    }
    std::fs::write(&path, spec.to_string()).unwrap();
}

/// `run --systemd-cgroup` itself: the scope, its properties, the processes
/// in it, the limits set and enforced, a nested slice, and nothing left.
#[test]
#[ignore = "needs a systemd host: scripts/systemd-tests.sh runs it in its guest"]
fn runtime_systemd_cgroup() {
    require!("runc", "systemctl");
    assert_systemd_host();
    let work = Workdir::new("systemd-runtime");
    skiff_e2e::busybox_rootfs(&work.join("rootfs"));
    let mut report = Report::new("runtime --systemd-cgroup");
    for rt in RUNTIMES {
        let r = Direct {
            name: rt.to_string(),
            bin: runtime_bin(rt),
            root: work.join(&format!("state-{rt}")),
        };
        report.run(
            "a scope with Delegate=yes and the limits; exec, update, pause/resume; limits enforced; delete leaves nothing",
            rt,
            || scope_lifecycle(&r, &work),
        );
        report.run(
            "memory limit enforced (OOM kill); no failed unit left",
            rt,
            || oom_kill(&r, &work),
        );
        report.run(
            "placement: a nested slice (a-b.slice), the root slice (-), a slice of its own (name *.slice)",
            rt,
            || placement(&r, &work),
        );
        report.run("the same name again right after delete", rt, || {
            same_name_again(&r, &work)
        });
        report.run(
            "a failed unit of the same name is reset and the start retried",
            rt,
            || failed_unit_reset(&r, &work),
        );
        report.run(
            "systemd's sockets out of reach: create fails, nothing left",
            rt,
            || bus_unreachable(&r, &work),
        );
        report.run("no system bus: systemd's private socket (root)", rt, || {
            private_socket_only(&r, &work)
        });
    }
    drop(work);
    report.finish_all();
}

fn scope_lifecycle(r: &Direct, work: &Workdir) -> Result<(), String> {
    let (id, unit, bundle) = r.in_system_slice(work, "scope", &["sleep", "1000"]);
    // runc's rules: a value in GVariant text, `...Sec` in seconds.
    annotate(
        &bundle,
        &[
            ("org.systemd.property.TimeoutStopUSec", "uint64 123456789"),
            ("org.systemd.property.CollectMode", "'inactive'"),
        ],
    );
    r.run_detached(work, &bundle, &id)?;
    let result = (|| {
        let pid = r.pid(&id)?;
        let mut want = limit_props();
        want.extend([
            ("TimeoutStopUSec", "2min 3.456789s".to_string()),
            ("CollectMode", "inactive".to_string()),
            // runc spec's devices: deny all, then the default devices.
            ("DevicePolicy", "strict".to_string()),
        ]);
        let cgroup = check_scope(&unit, "system.slice", &want)?;
        let allowed = unit_prop_all(&unit, "DeviceAllow");
        expect!(
            allowed.iter().any(|a| a == "/dev/char/1:3 rwm"),
            "DeviceAllow has no /dev/null: {allowed:?}"
        );
        if r.name == "skiff" {
            // As crun: `state` names the unit.
            let state: serde_json::Value =
                serde_json::from_slice(&r.output(&["state", &id]).stdout).unwrap_or_default();
            expect!(
                state["systemd-scope"] == unit.as_str(),
                "state: systemd-scope {}",
                state["systemd-scope"]
            );
        }
        expect!(
            cgroup == format!("/system.slice/{unit}"),
            "ControlGroup={cgroup}"
        );
        expect!(cgroup_of(pid) == cgroup, "init {pid} in {}", cgroup_of(pid));
        check_files(
            &cgroup,
            &[
                ("memory.max", MEMORY.to_string()),
                ("pids.max", PIDS.to_string()),
                ("cpu.max", format!("{CPU_QUOTA} {CPU_PERIOD}")),
            ],
        )?;
        // update: the unit's property and the file.
        let half = (MEMORY / 2).to_string();
        let o = r.output(&["update", "--memory", &half, &id]);
        expect!(o.status.success(), "update --memory: {o:?}");
        check_scope(&unit, "system.slice", &[("MemoryMax", half.clone())])?;
        check_files(&cgroup, &[("memory.max", half)])?;
        // pause/resume freeze and thaw the unit's cgroup.
        for (cmd, status, frozen) in [("pause", "paused", "1"), ("resume", "running", "0")] {
            let o = r.output(&[cmd, &id]);
            expect!(o.status.success(), "{cmd}: {o:?}");
            let state = stdout(&r.output(&["state", &id]));
            expect!(
                state.contains(&format!("\"status\": \"{status}\""))
                    || state.contains(&format!("\"status\":\"{status}\"")),
                "after {cmd}: {state}"
            );
            let events = cgroup_file(&cgroup, "cgroup.events");
            expect!(
                events.contains(&format!("frozen {frozen}")),
                "after {cmd}: cgroup.events {events:?}"
            );
        }
        // In the container's cgroup namespace, its own cgroup is "/".
        let o = r.output(&["exec", &id, "cat", "/proc/self/cgroup"]);
        expect!(stdout(&o) == "0::/\n", "exec'd process: {o:?}");
        let o = r.output(&[
            "exec",
            &id,
            "sh",
            "-c",
            "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done",
        ]);
        expect!(o.status.success(), "busy loop: {o:?}");
        let throttled = cgroup_file(&cgroup, "cpu.stat")
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        expect!(throttled > 0, "a busy loop was never throttled by cpu.max");
        let o = r.output(&[
            "exec",
            &id,
            "sh",
            "-c",
            // Last: the tasks a failed fork leaves on their way out would
            // still count against the next exec (runc's Go threads).
            "sh -c 'for i in $(seq 80); do sleep 1 & done; wait' 2>&1 | grep -c \"can't fork\"",
        ]);
        expect!(
            stdout(&o).trim().parse::<u32>().unwrap_or(0) > 0,
            "forks beyond TasksMax: {o:?}"
        );
        Ok(cgroup)
    })();
    let o = r.output(&["delete", "--force", &id]);
    let cgroup = result?;
    expect!(o.status.success(), "delete --force: {o:?}");
    check_gone(&unit, &cgroup)
}

fn oom_kill(r: &Direct, work: &Workdir) -> Result<(), String> {
    let args = ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"];
    let (id, unit, bundle) = r.in_system_slice(work, "oom", &args);
    let o = r.output(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    let _ = r.output(&["delete", "--force", &id]);
    expect!(o.status.code() == Some(137), "dd past MemoryMax: {o:?}");
    check_gone(&unit, &format!("/system.slice/{unit}"))
}

fn placement(r: &Direct, work: &Workdir) -> Result<(), String> {
    let rt = &r.name;
    // (id, cgroupsPath, unit, its slice, its cgroup)
    let cases = [
        (
            format!("{rt}-nested"),
            format!("skiff_e2e-nested.slice:{rt}:{rt}-nested"),
            format!("{rt}-{rt}-nested.scope"),
            "skiff_e2e-nested.slice",
            format!("/skiff_e2e.slice/skiff_e2e-nested.slice/{rt}-{rt}-nested.scope"),
        ),
        (
            format!("{rt}-root"),
            // runc 1.3.6 takes only the long form ("invalid slice name: -").
            format!(
                "{}:{rt}:{rt}-root",
                if rt == "runc" { "-.slice" } else { "-" }
            ),
            format!("{rt}-{rt}-root.scope"),
            "-.slice",
            format!("/{rt}-{rt}-root.scope"),
        ),
        (
            format!("{rt}-slice"),
            format!("skiff_e2e.slice:{rt}:skiff_e2e-{rt}.slice"),
            format!("skiff_e2e-{rt}.slice"),
            "skiff_e2e.slice",
            format!("/skiff_e2e.slice/skiff_e2e-{rt}.slice"),
        ),
    ];
    let mut result = Ok(());
    let mut started = Vec::new();
    for (id, path, unit, slice, want) in &cases {
        if rt == "runc" && unit.ends_with(".slice") {
            // runc 1.3.6 gives a slice the init's PID too, which systemd
            // refuses ("Cannot set property PIDs"): no such container.
            continue;
        }
        let bundle = r.bundle(work, id, path, &["sleep", "1000"]);
        result = r.run_detached(work, &bundle, id);
        if result.is_err() {
            break;
        }
        started.push(id);
        result = (|| {
            let cgroup = if unit.ends_with(".slice") {
                // A slice holds the init itself: no Delegate, no PIDs.
                check_unit(unit, slice, &[("MemoryMax", MEMORY.to_string())])?
            } else {
                check_scope(unit, slice, &[("MemoryMax", MEMORY.to_string())])?
            };
            expect!(
                &cgroup == want,
                "{unit}: ControlGroup={cgroup}, want {want}"
            );
            let pid = r.pid(id)?;
            expect!(cgroup_of(pid) == cgroup, "init {pid} in {}", cgroup_of(pid));
            if id.ends_with("-nested") {
                // The slice did not exist: the init was not started in
                // its cgroup but moved there, before it made its cgroup
                // namespace.
                let o = r.output(&["exec", id, "cat", "/proc/self/cgroup"]);
                expect!(stdout(&o) == "0::/\n", "exec'd process: {o:?}");
            }
            Ok(())
        })();
        if result.is_err() {
            break;
        }
    }
    for id in started {
        let o = r.output(&["delete", "--force", id]);
        if result.is_ok() && !o.status.success() {
            result = Err(format!("delete --force {id}: {o:?}"));
        }
    }
    for (_, _, unit, _, cgroup) in &cases {
        if result.is_ok() {
            result = check_gone(unit, cgroup);
        }
    }
    // The slices systemd made for the units stay until stopped.
    let _ = Command::new("systemctl")
        .args(["stop", "skiff_e2e.slice"])
        .output();
    result
}

/// `run` of the same container twice in a row: the second finds the
/// first's unit gone, or on its way out, and starts its own.
fn same_name_again(r: &Direct, work: &Workdir) -> Result<(), String> {
    let (id, unit, bundle) = r.in_system_slice(work, "again", &["true"]);
    for round in 1..=2 {
        let o = r.output(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
        expect!(o.status.success(), "run {round}: {o:?}");
    }
    check_gone(&unit, &format!("/system.slice/{unit}"))
}

/// A unit of the container's name that systemd keeps as failed (a scope
/// it stopped when its RuntimeMaxSec ran out) is in the way of the new
/// one: the runtime resets it and starts its own.
fn failed_unit_reset(r: &Direct, work: &Workdir) -> Result<(), String> {
    let (id, unit, bundle) = r.in_system_slice(work, "retry", &["sleep", "1000"]);
    let o = Command::new("systemd-run")
        .args([
            "--scope",
            "--unit",
            &unit,
            "-p",
            "RuntimeMaxSec=1",
            "sleep",
            "60",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let state = unit_props(&unit, &["ActiveState", "Result"]);
    expect!(
        state.get("ActiveState").map(String::as_str) == Some("failed"),
        "the failed {unit} to start with: {state:?} ({o:?})"
    );
    let result = r
        .run_detached(work, &bundle, &id)
        .and_then(|()| check_scope(&unit, "system.slice", &[]));
    let _ = r.output(&["delete", "--force", &id]);
    // A runtime that failed left the old unit: not this test's to keep.
    let _ = Command::new("systemctl")
        .args(["reset-failed", &unit])
        .output();
    check_gone(&unit, &result?)
}

/// systemd runs (/run/systemd/system is there) but neither its private
/// socket nor the system bus can be reached: both are hidden in a mount
/// namespace of the runtime's own. `create` fails, naming the cause for
/// skiff, and leaves no state, unit or cgroup.
fn bus_unreachable(r: &Direct, work: &Workdir) -> Result<(), String> {
    let (id, unit, bundle) = r.in_system_slice(work, "nobus", &["true"]);
    let hide = "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system \
        && mount -t tmpfs tmpfs /run/dbus";
    let o = r.hiding(hide, &["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&o.stderr);
    expect!(!o.status.success(), "create without a bus: {o:?}");
    if r.name == "skiff" {
        expect!(
            err.contains("--systemd-cgroup: cannot reach systemd") && err.lines().count() == 1,
            "create without a bus: {err}"
        );
    }
    let state = r.output(&["state", &id]);
    expect!(!state.status.success(), "state of {id} left: {state:?}");
    check_gone(&unit, &format!("/system.slice/{unit}"))
}

/// Without the system bus (no dbus-daemon), root reaches systemd on its
/// private socket.
fn private_socket_only(r: &Direct, work: &Workdir) -> Result<(), String> {
    let (id, unit, bundle) = r.in_system_slice(work, "private", &["true"]);
    let hide = "mount -t tmpfs tmpfs /run/dbus";
    let o = r.hiding(hide, &["run", "--bundle", bundle.to_str().unwrap(), &id]);
    expect!(o.status.success(), "run without the system bus: {o:?}");
    check_gone(&unit, &format!("/system.slice/{unit}"))
}

/// containerd with SystemdCgroup in the runc options (`ctr run
/// --runc-systemd-cgroup --cgroup system.slice:ctr:ID`): the runc shim
/// calling each runtime and, for skiff, skiff's own shim.
#[test]
#[ignore = "needs a systemd host: scripts/systemd-tests.sh runs it in its guest"]
fn containerd_systemd_cgroup() {
    require!(
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "runc",
        "systemctl"
    );
    assert_systemd_host();
    let _outside = skiff_e2e::CreatedOutside::watch(&["/run/containerd"]);
    let mut report = Report::new("containerd SystemdCgroup");
    // The runc shim, then skiff's: ctr gives the runc options (binary,
    // root, SystemdCgroup) only to io.containerd.runc.v2, so skiff's shim
    // is what that name finds on its containerd's PATH.
    let mut shims = vec![("runc shim", None)];
    if RUNTIMES.contains(&"skiff") {
        shims.push((
            "skiff shim",
            Some(skiff_e2e::skiff_bin().with_file_name("containerd-shim-skiff-v2")),
        ));
    }
    for (shim, bin) in shims {
        let work = Workdir::new(&format!("systemd-containerd-{}", shim.replace(' ', "-")));
        let archive = skiff_e2e::busybox_image(&work, IMAGE).archive;
        let dir = bin.map(|b| {
            let dir = work.join("shims");
            std::fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(b, dir.join("containerd-shim-runc-v2")).unwrap();
            dir
        });
        let daemon = engines::start_containerd(&work, dir.as_deref());
        let runtimes = RUNTIMES
            .iter()
            .filter(|rt| dir.is_none() || **rt == "skiff")
            .map(|rt| {
                let flags = [
                    "--runtime",
                    "io.containerd.runc.v2",
                    "--runc-systemd-cgroup",
                    "--runc-binary",
                ];
                let mut flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
                flags.push(runtime_bin(rt).display().to_string());
                flags.push("--runc-root".into());
                flags.push(work.join(&format!("runc-root-{rt}")).display().to_string());
                (rt.to_string(), flags)
            })
            .collect();
        let ctr = Ctr {
            sock: work.join("containerd.sock"),
            runtimes,
        };
        check(&mut ctr.cmd(&["images", "import", archive.to_str().unwrap()]));
        for (rt, _) in &ctr.runtimes {
            let label = format!("{rt} ({shim})");
            report.run(
                "a scope with Delegate=yes and the memory limit; the shim stays in containerd's cgroup; nothing left",
                &label,
                || containerd_scope(&ctr, rt, daemon.pid()),
            );
        }
        drop(ctr);
        drop(daemon);
    }
    report.finish_all();
}

fn containerd_scope(ctr: &Ctr, rt: &str, containerd: u32) -> Result<(), String> {
    let id = format!("ctr-{rt}");
    let unit = format!("ctr-{id}.scope");
    let memory = MEMORY.to_string();
    let o = ctr.output(ctr.run(
        rt,
        &[
            "-d",
            "--cgroup",
            &format!("system.slice:ctr:{id}"),
            "--memory-limit",
            &memory,
        ],
        &id,
        &["sleep", "1000"],
    ));
    expect!(o.status.success(), "ctr run: {o:?}");
    let result = (|| {
        let pid = ctr.task_pid(&id).ok_or("no task pid")?;
        let cgroup = check_scope(&unit, "system.slice", &[("MemoryMax", memory.clone())])?;
        expect!(cgroup_of(pid) == cgroup, "task {pid} in {}", cgroup_of(pid));
        check_files(&cgroup, &[("memory.max", memory.clone())])?;
        // The runc shim makes no unit of its own: it stays where
        // containerd started it (ShimCgroup, a cgroupfs path, is the only
        // placement it knows).
        let shim = ppid(pid);
        expect!(
            cgroup_of(shim) == cgroup_of(containerd),
            "shim {shim} in {}, containerd in {}",
            cgroup_of(shim),
            cgroup_of(containerd)
        );
        Ok(cgroup)
    })();
    ctr.cleanup(&id);
    check_gone(&unit, &result?)
}

/// Podman with `--cgroup-manager systemd --runtime PATH`.
#[test]
#[ignore = "needs a systemd host: scripts/systemd-tests.sh runs it in its guest"]
fn podman_systemd_cgroup() {
    require!("podman", "conmon", "runc", "systemctl");
    assert_systemd_host();
    let _outside = skiff_e2e::CreatedOutside::watch(&["/var/lib/containers"]);
    let work = Workdir::new("systemd-podman");
    engines::configure_podman(&work);
    let tar = skiff_e2e::busybox_image(&work, "localhost/busybox:e2e").tar;
    let podman = |rt: &str| engines::podman_with(&work.path, &runtime_bin(rt), "systemd");
    check(
        podman(RUNTIMES[0])
            .arg("import")
            .arg(&tar)
            .arg("localhost/busybox:e2e"),
    );
    let mut report = Report::new("podman --cgroup-manager systemd");
    for rt in RUNTIMES {
        report.run(
            "a scope with Delegate=yes and the memory limit in machine.slice; conmon outside it; nothing left",
            rt,
            || {
                let name = format!("podman-{rt}");
                let o = podman(rt)
                    .args(["run", "-d", "--name", &name, "--network", "none", "--memory"])
                    .arg(MEMORY.to_string())
                    .args(["localhost/busybox:e2e", "sleep", "1000"])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                expect!(o.status.success(), "podman run: {o:?}");
                let inspect = |format: &str| {
                    let o = podman(rt).args(["inspect", "--format", format, &name]).output().unwrap();
                    stdout(&o).trim().to_string()
                };
                let id = inspect("{{.Id}}");
                let pid: u32 = inspect("{{.State.Pid}}").parse().unwrap_or(0);
                let conmon: u32 = inspect("{{.State.ConmonPid}}").parse().unwrap_or(0);
                let unit = format!("libpod-{id}.scope");
                let result = (|| {
                    let cgroup =
                        check_scope(&unit, "machine.slice", &[("MemoryMax", MEMORY.to_string())])?;
                    expect!(cgroup_of(pid) == cgroup, "init {pid} in {}", cgroup_of(pid));
                    // Where conmon goes is Podman's choice (started from a
                    // service, as here, it stays in the service's cgroup,
                    // with runc too); it must not be in the container's.
                    let conmon_cgroup = cgroup_of(conmon);
                    expect!(
                        conmon > 0 && !conmon_cgroup.starts_with(&cgroup),
                        "conmon {conmon} in {conmon_cgroup}"
                    );
                    Ok(cgroup)
                })();
                let _ = podman(rt).args(["rm", "-f", "-t", "0", &name]).output();
                check_gone(&unit, &result?)
            },
        );
    }
    let _ = podman(RUNTIMES[0])
        .args(["rm", "-a", "-f", "-t", "0"])
        .output();
    drop(work);
    report.finish_all();
}

/// Docker with `native.cgroupdriver=systemd`, each runtime added with
/// `--add-runtime` (runc is Docker's own default).
#[test]
#[ignore = "needs a systemd host: scripts/systemd-tests.sh runs it in its guest"]
fn docker_systemd_cgroup() {
    require!("dockerd", "runc", "systemctl");
    assert_systemd_host();
    assert!(Path::new(DOCKER).exists(), "{DOCKER} missing");
    let _outside = skiff_e2e::CreatedOutside::watch(&["/etc/docker"]);
    let work = Workdir::new("systemd-docker");
    let tar = skiff_e2e::busybox_image(&work, "busybox:e2e").tar;
    let mut args: Vec<String> = vec!["--exec-opt".into(), "native.cgroupdriver=systemd".into()];
    // skiff comes with start_dockerd; runc is Docker's own default.
    for rt in RUNTIMES.iter().filter(|rt| !["runc", "skiff"].contains(rt)) {
        args.push("--add-runtime".into());
        args.push(format!("{rt}={}", runtime_bin(rt).display()));
    }
    let daemon = engines::start_dockerd(&work, &args);
    let sock = work.join("docker.sock");
    let docker = |args: &[&str]| {
        engines::docker(&sock)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    check(
        engines::docker(&sock)
            .arg("import")
            .arg(&tar)
            .arg("busybox:e2e"),
    );
    let mut report = Report::new("docker native.cgroupdriver=systemd");
    report.run("docker info names the systemd driver", "runc", || {
        let o = docker(&["info", "--format", "{{.CgroupDriver}}"]);
        expect!(stdout(&o).trim() == "systemd", "{o:?}");
        Ok(())
    });
    for rt in RUNTIMES {
        report.run(
            "a scope with Delegate=yes and the memory limit; the shim stays in containerd's cgroup; nothing left",
            rt,
            || {
                let name = format!("docker-{rt}");
                let memory = MEMORY.to_string();
                let o = docker(&[
                    "run", "-d", "--runtime", rt, "--name", &name, "--network", "none", "--memory",
                    &memory, "busybox:e2e", "sleep", "1000",
                ]);
                expect!(o.status.success(), "docker run: {o:?}");
                let inspect = |format: &str| stdout(&docker(&["inspect", "--format", format, &name])).trim().to_string();
                let id = inspect("{{.Id}}");
                let pid: u32 = inspect("{{.State.Pid}}").parse().unwrap_or(0);
                let unit = format!("docker-{id}.scope");
                let result = (|| {
                    let cgroup = check_scope(&unit, "system.slice", &[("MemoryMax", memory.clone())])?;
                    expect!(cgroup_of(pid) == cgroup, "init {pid} in {}", cgroup_of(pid));
                    // dockerd's containerd starts the shims: they stay in
                    // its cgroup, as under containerd itself.
                    let shim = ppid(pid);
                    expect!(
                        cgroup_of(shim) == cgroup_of(daemon.pid()),
                        "shim {shim} in {}, dockerd in {}",
                        cgroup_of(shim),
                        cgroup_of(daemon.pid())
                    );
                    Ok(cgroup)
                })();
                let _ = docker(&["rm", "-f", &name]);
                check_gone(&unit, &result?)
            },
        );
    }
    drop(daemon);
    drop(work);
    report.finish_all();
}
