//! config-linux.md#control-groups: where the container's cgroup is and
//! that each resource reaches the kernel, on cgroup v1 and v2 hosts. The
//! cgroup is found from the outside: /proc/<pid>/cgroup of the container's
//! process and the host's mountinfo.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::{expect_eq, output_with, report_with};
use crate::ctx::{fail, Bundle, Check, Ctx, Failure};
use crate::suite::{case, Case, Level::*};
use crate::{ensure, skip};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "cgroups.path.absolute",
            "config-linux.md#cgroups-path",
            Must,
            path_absolute,
        ),
        case(
            "cgroups.path.relative",
            "config-linux.md#cgroups-path",
            Should,
            path_relative,
        ),
        case(
            "cgroups.namespace_root",
            "config-linux.md#namespaces (cgroup)",
            Must,
            namespace_root,
        ),
        case(
            "cgroups.removed_on_delete",
            "runtime.md#delete",
            Should,
            removed,
        ),
        case(
            "cgroups.memory.limit",
            "config-linux.md#memory",
            Must,
            memory_limit,
        ),
        case(
            "cgroups.memory.reservation",
            "config-linux.md#memory",
            Must,
            memory_reservation,
        ),
        case(
            "cgroups.memory.swap",
            "config-linux.md#memory",
            Must,
            memory_swap,
        ),
        case(
            "cgroups.memory.swappiness",
            "config-linux.md#memory",
            Must,
            swappiness,
        ),
        case(
            "cgroups.memory.disable_oom_killer",
            "config-linux.md#memory",
            Must,
            oom_killer,
        ),
        case(
            "cgroups.memory.enforced",
            "config-linux.md#memory",
            Must,
            memory_enforced,
        ),
        case(
            "cgroups.cpu.shares",
            "config-linux.md#cpu",
            Must,
            cpu_shares,
        ),
        case(
            "cgroups.cpu.quota_period",
            "config-linux.md#cpu",
            Must,
            cpu_quota,
        ),
        case(
            "cgroups.cpuset.cpus",
            "config-linux.md#cpu",
            Must,
            cpuset_cpus,
        ),
        case(
            "cgroups.cpuset.mems",
            "config-linux.md#cpu",
            Must,
            cpuset_mems,
        ),
        case(
            "cgroups.pids.limit",
            "config-linux.md#pids",
            Must,
            pids_limit,
        ),
        case(
            "cgroups.pids.limit_zero",
            "config-linux.md#pids (runtime-spec 1.3, runc 1.4: 0 is a limit)",
            Runc,
            pids_limit_zero,
        ),
        case(
            "cgroups.pids.enforced",
            "config-linux.md#pids",
            Must,
            pids_enforced,
        ),
        case(
            "cgroups.blkio.weight",
            "config-linux.md#block-io",
            Must,
            blkio_weight,
        ),
        case(
            "cgroups.devices.denied",
            "config-linux.md#allowed-device-list",
            Must,
            devices_denied,
        ),
        case(
            "cgroups.devices.allowed",
            "config-linux.md#allowed-device-list",
            Must,
            devices_allowed,
        ),
        case(
            "cgroups.devices.config_device_denied",
            "config-linux.md#allowed-device-list",
            Must,
            config_device_denied,
        ),
    ]
}

/// True when the host has only the unified hierarchy.
fn pure_v2() -> bool {
    !std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|r| r.starts_with("cgroup "))
        })
}

/// The host path of `file` in the cgroup of `pid` for `controller`.
fn cgroup_file(pid: i64, controller: &str, file: &str) -> Option<PathBuf> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let v2 = pure_v2();
    for line in cg.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = if v2 {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        if !wanted {
            continue;
        }
        for m in mountinfo.lines() {
            let (left, right) = m.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let rf: Vec<&str> = right.split(' ').collect();
            let matches = if v2 {
                rf[0] == "cgroup2"
            } else {
                rf[0] == "cgroup"
                    && rf
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|x| x == controller))
            };
            if matches && fields.get(3) == Some(&"/") {
                return Some(
                    PathBuf::from(fields[4])
                        .join(path.trim_start_matches('/'))
                        .join(file),
                );
            }
        }
    }
    None
}

/// Creates a sleeping container edited by `edit`, and returns its pid.
fn sleeping(ctx: &mut Ctx, edit: impl FnOnce(&mut Bundle)) -> Check<i64> {
    let mut b = ctx.bundle();
    b.args(&["/checker", "sleep", "600"]);
    edit(&mut b);
    let id = ctx.create(&b, &[])?;
    Ok(ctx.state(&id)?["pid"].as_i64().unwrap_or(0))
}

fn read_cg(pid: i64, controller: &str, file: &str) -> Check<String> {
    let path = cgroup_file(pid, controller, file)
        .ok_or_else(|| Failure::Fail(format!("no {controller} cgroup for pid {pid}")))?;
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::Skip(format!(
            "{} does not exist on this host",
            path.display()
        ))),
        Err(e) => fail(format!("{}: {e}", path.display())),
    }
}

fn resources(b: &mut Bundle, r: Value) {
    b.config["linux"]["resources"] = r;
}

fn path_absolute(ctx: &mut Ctx) -> Check {
    let name = format!("/cf-conformance-{}", std::process::id());
    let n = name.clone();
    let pid = sleeping(ctx, |b| b.config["linux"]["cgroupsPath"] = json!(n))?;
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    ensure!(
        cg.lines().any(|l| l.ends_with(&format!(":{name}"))),
        "/proc/{pid}/cgroup:\n{cg}"
    );
    Ok(())
}

fn path_relative(ctx: &mut Ctx) -> Check {
    let name = format!("cf-relative-{}", std::process::id());
    let n = name.clone();
    let pid = sleeping(ctx, |b| b.config["linux"]["cgroupsPath"] = json!(n))?;
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    ensure!(
        cg.lines().any(|l| l.ends_with(&format!("/{name}"))),
        "/proc/{pid}/cgroup:\n{cg}"
    );
    Ok(())
}

fn namespace_root(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
            ns.push(json!({"type": "cgroup"}));
        }
    })?;
    let cg = r["cgroup"].as_str().unwrap_or("");
    ensure!(
        cg.lines().all(|l| l.ends_with(":/")),
        "inside a cgroup namespace: {cg}"
    );
    Ok(())
}

fn removed(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "sleep", "600"]);
    let id = ctx.create(&b, &[])?;
    let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
    let dir = cgroup_file(pid, "pids", "").ok_or_else(|| Failure::Fail("no cgroup".into()))?;
    ctx.rt(&["delete", "--force", &id]).ok("delete")?;
    ensure!(!dir.exists(), "{} survived delete", dir.display());
    Ok(())
}

const MIB: u64 = 1024 * 1024;

fn memory_limit(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| {
        resources(b, json!({"memory": {"limit": 64 * MIB}}))
    })?;
    let file = if pure_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    expect_eq(file, read_cg(pid, "memory", file)?, (64 * MIB).to_string())
}

fn memory_reservation(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| {
        resources(
            b,
            json!({"memory": {"limit": 64 * MIB, "reservation": 32 * MIB}}),
        )
    })?;
    let file = if pure_v2() {
        "memory.low"
    } else {
        "memory.soft_limit_in_bytes"
    };
    expect_eq(file, read_cg(pid, "memory", file)?, (32 * MIB).to_string())
}

fn memory_swap(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| {
        resources(b, json!({"memory": {"limit": 64 * MIB, "swap": 96 * MIB}}))
    })?;
    if pure_v2() {
        // v2 counts swap alone: swap - limit.
        expect_eq(
            "memory.swap.max",
            read_cg(pid, "memory", "memory.swap.max")?,
            (32 * MIB).to_string(),
        )
    } else {
        expect_eq(
            "memory.memsw.limit_in_bytes",
            read_cg(pid, "memory", "memory.memsw.limit_in_bytes")?,
            (96 * MIB).to_string(),
        )
    }
}

fn swappiness(ctx: &mut Ctx) -> Check {
    if pure_v2() {
        skip!("cgroup v2 has no per-cgroup swappiness");
    }
    let pid = sleeping(ctx, |b| resources(b, json!({"memory": {"swappiness": 17}})))?;
    expect_eq(
        "memory.swappiness",
        read_cg(pid, "memory", "memory.swappiness")?,
        "17".to_string(),
    )
}

fn oom_killer(ctx: &mut Ctx) -> Check {
    if pure_v2() {
        skip!("cgroup v2 cannot disable the OOM killer");
    }
    let pid = sleeping(ctx, |b| {
        resources(
            b,
            json!({"memory": {"limit": 64 * MIB, "disableOOMKiller": true}}),
        )
    })?;
    let oc = read_cg(pid, "memory", "memory.oom_control")?;
    ensure!(
        oc.lines().any(|l| l == "oom_kill_disable 1"),
        "memory.oom_control: {oc}"
    );
    Ok(())
}

fn memory_enforced(ctx: &mut Ctx) -> Check {
    // dd fills a 128 MiB buffer: under a 32 MiB limit (swap included) the
    // OOM killer ends it with SIGKILL, and the shell reports 137.
    let out = output_with(
        ctx,
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=128M count=1 2>/dev/null; echo $?",
        ],
        |b| {
            resources(b, json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}}));
        },
    )?;
    expect_eq("dd's exit status", out.as_str(), "137")
}

fn cpu_shares(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| resources(b, json!({"cpu": {"shares": 512}})))?;
    if pure_v2() {
        // runc's conversion: 1 + ((shares - 2) * 9999) / 262142.
        expect_eq(
            "cpu.weight",
            read_cg(pid, "cpu", "cpu.weight")?,
            (1 + ((512 - 2) * 9999) / 262142).to_string(),
        )
    } else {
        expect_eq(
            "cpu.shares",
            read_cg(pid, "cpu", "cpu.shares")?,
            "512".to_string(),
        )
    }
}

fn cpu_quota(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| {
        resources(b, json!({"cpu": {"quota": 50000, "period": 200000}}))
    })?;
    if pure_v2() {
        expect_eq(
            "cpu.max",
            read_cg(pid, "cpu", "cpu.max")?,
            "50000 200000".to_string(),
        )
    } else {
        expect_eq(
            "cfs quota/period",
            (
                read_cg(pid, "cpu", "cpu.cfs_quota_us")?,
                read_cg(pid, "cpu", "cpu.cfs_period_us")?,
            ),
            ("50000".to_string(), "200000".to_string()),
        )
    }
}

fn cpuset_cpus(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| resources(b, json!({"cpu": {"cpus": "0"}})))?;
    expect_eq(
        "cpuset.cpus",
        read_cg(pid, "cpuset", "cpuset.cpus")?,
        "0".to_string(),
    )
}

fn cpuset_mems(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| resources(b, json!({"cpu": {"mems": "0"}})))?;
    expect_eq(
        "cpuset.mems",
        read_cg(pid, "cpuset", "cpuset.mems")?,
        "0".to_string(),
    )
}

fn pids_limit(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| resources(b, json!({"pids": {"limit": 42}})))?;
    expect_eq(
        "pids.max",
        read_cg(pid, "pids", "pids.max")?,
        "42".to_string(),
    )
}

fn pids_limit_zero(ctx: &mut Ctx) -> Check {
    let pid = sleeping(ctx, |b| resources(b, json!({"pids": {"limit": 0}})))?;
    expect_eq(
        "pids.max",
        read_cg(pid, "pids", "pids.max")?,
        "0".to_string(),
    )
}

fn pids_enforced(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait; echo done",
    ]);
    resources(&mut b, json!({"pids": {"limit": 5}}));
    let out = ctx.run(&b);
    let all = format!("{}{}", out.stdout, out.stderr);
    ensure!(
        all.contains("can't fork") || all.contains("Resource temporarily unavailable"),
        "10 forks under a limit of 5: {all}"
    );
    Ok(())
}

/// Whether this kernel has a blkio weight at all (CFQ's, or BFQ's when
/// that scheduler is built): a cgroup of our own shows which files a
/// container's cgroup gets (BFQ's are not offered on the root).
fn v1_blkio_weight_file() -> Option<&'static str> {
    let probe = std::path::Path::new("/sys/fs/cgroup/blkio")
        .join(format!("skiff-conformance-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).ok()?;
    let found = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| probe.join(f).exists());
    let _ = std::fs::remove_dir(&probe);
    found
}

fn blkio_weight(ctx: &mut Ctx) -> Check {
    if !pure_v2() && v1_blkio_weight_file().is_none() {
        return Err(Failure::Skip(
            "this kernel has no blkio weight (neither CFQ's blkio.weight nor BFQ's blkio.bfq.weight)"
                .into(),
        ));
    }
    let pid = sleeping(ctx, |b| resources(b, json!({"blockIO": {"weight": 300}})))?;
    if pure_v2() {
        let w = read_cg(pid, "io", "io.weight").or_else(|_| read_cg(pid, "io", "io.bfq.weight"))?;
        ensure!(w.contains(' ') || !w.is_empty(), "io weight {w}");
        Ok(())
    } else {
        let w = read_cg(pid, "blkio", "blkio.weight")
            .or_else(|_| read_cg(pid, "blkio", "blkio.bfq.weight"))?;
        expect_eq("blkio weight", w, "300".to_string())
    }
}

/// /dev/kmsg (1:11) bound in from the host: not on the default allow list.
fn kmsg_bundle(b: &mut Bundle) {
    b.mount(json!({"destination": "/dev/kmsg-bound", "type": "bind", "source": "/dev/kmsg", "options": ["bind"]}));
}

fn devices_denied(ctx: &mut Ctx) -> Check {
    if !std::path::Path::new("/dev/kmsg").exists() {
        skip!("the host has no /dev/kmsg to test with");
    }
    let out = output_with(ctx, &["/checker", "cat", "/dev/kmsg-bound"], |b| {
        kmsg_bundle(b);
        resources(b, json!({"devices": [{"allow": false, "access": "rwm"}]}));
    })?;
    expect_eq(
        "opening a device the cgroup denies",
        out.as_str(),
        "error EPERM",
    )
}

fn devices_allowed(ctx: &mut Ctx) -> Check {
    if !std::path::Path::new("/dev/kmsg").exists() {
        skip!("the host has no /dev/kmsg to test with");
    }
    let out = output_with(
        ctx,
        &["/checker", "write", "/dev/kmsg-bound", "conformance\n"],
        |b| {
            kmsg_bundle(b);
            resources(
                b,
                json!({"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"}]}),
            );
            b.config["process"]["capabilities"]["bounding"] = json!(["CAP_SYSLOG", "CAP_KILL"]);
            b.config["process"]["capabilities"]["effective"] = json!(["CAP_SYSLOG", "CAP_KILL"]);
            b.config["process"]["capabilities"]["permitted"] = json!(["CAP_SYSLOG", "CAP_KILL"]);
        },
    )?;
    expect_eq("writing a device the cgroup allows", out.as_str(), "ok")
}

/// A device the config creates (`linux.devices`) is no exception: the
/// allow list decides for it as for any other.
fn config_device_denied(ctx: &mut Ctx) -> Check {
    let out = output_with(
        ctx,
        &["/checker", "write", "/dev/kmsg", "conformance\n"],
        |b| {
            b.config["linux"]["devices"] =
                json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]);
            resources(b, json!({"devices": [{"allow": false, "access": "rwm"}]}));
        },
    )?;
    expect_eq(
        "opening a config device the cgroup denies",
        out.as_str(),
        "EPERM",
    )
}
