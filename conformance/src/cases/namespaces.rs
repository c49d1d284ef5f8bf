//! config-linux.md#namespaces and #user-namespace-mappings, hostname,
//! domainname, sysctl, time offsets.

use serde_json::{json, Value};

use super::{create_fails, expect_eq, output_with, report_with};
use crate::ctx::{Check, Ctx, Failure};
use crate::suite::{case, Case, Level::*};
use crate::{ensure, skip};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "namespaces.new.pid",
            "config-linux.md#namespaces",
            Must,
            |c| new_ns(c, "pid", "pid"),
        ),
        case(
            "namespaces.new.network",
            "config-linux.md#namespaces",
            Must,
            |c| new_ns(c, "network", "net"),
        ),
        case(
            "namespaces.new.ipc",
            "config-linux.md#namespaces",
            Must,
            |c| new_ns(c, "ipc", "ipc"),
        ),
        case(
            "namespaces.new.uts",
            "config-linux.md#namespaces",
            Must,
            |c| new_ns(c, "uts", "uts"),
        ),
        case(
            "namespaces.new.mount",
            "config-linux.md#namespaces",
            Must,
            |c| new_ns(c, "mount", "mnt"),
        ),
        case(
            "namespaces.new.cgroup",
            "config-linux.md#namespaces",
            Must,
            |c| new_ns(c, "cgroup", "cgroup"),
        ),
        case(
            "namespaces.new.time",
            "config-linux.md#namespaces",
            Must,
            |c| new_ns(c, "time", "time"),
        ),
        case(
            "namespaces.new.user",
            "config-linux.md#namespaces",
            Must,
            new_user,
        ),
        case(
            "namespaces.absent_is_shared",
            "config-linux.md#namespaces",
            Must,
            absent_shared,
        ),
        case(
            "namespaces.join.network",
            "config-linux.md#namespaces (path)",
            Must,
            |c| join(c, "network", "net"),
        ),
        case(
            "namespaces.join.ipc",
            "config-linux.md#namespaces (path)",
            Must,
            |c| join(c, "ipc", "ipc"),
        ),
        case(
            "namespaces.join.uts",
            "config-linux.md#namespaces (path)",
            Must,
            |c| join(c, "uts", "uts"),
        ),
        case(
            "namespaces.join.pid",
            "config-linux.md#namespaces (path)",
            Must,
            |c| join(c, "pid", "pid"),
        ),
        case(
            "namespaces.join.wrong_type_fails",
            "config-linux.md#namespaces",
            Must,
            wrong_type,
        ),
        case(
            "namespaces.join.missing_path_fails",
            "config-linux.md#namespaces",
            Must,
            missing_path,
        ),
        case(
            "namespaces.duplicate_type_fails",
            "config-linux.md#namespaces",
            Must,
            duplicate,
        ),
        case(
            "user.uid_map",
            "config-linux.md#user-namespace-mappings",
            Must,
            uid_map,
        ),
        case(
            "user.gid_map",
            "config-linux.md#user-namespace-mappings",
            Must,
            gid_map,
        ),
        case(
            "user.root_inside",
            "config-linux.md#user-namespace-mappings",
            Must,
            root_inside,
        ),
        case("hostname", "config.md#hostname", Must, hostname),
        case("domainname", "config.md#domainname", Must, domainname),
        case(
            "hostname.without_uts_fails",
            "config.md#hostname",
            Runc,
            hostname_without_uts,
        ),
        case("sysctl.network", "config-linux.md#sysctl", Must, sysctl_net),
        case("sysctl.ipc", "config-linux.md#sysctl", Must, sysctl_ipc),
        case(
            "sysctl.user_in_own_user_namespace",
            "config-linux.md#sysctl (runc 1.4: user.* with a user namespace)",
            Runc,
            sysctl_user,
        ),
        case(
            "sysctl.host_unchanged",
            "config-linux.md#sysctl",
            Must,
            sysctl_host,
        ),
        case(
            "time.offsets",
            "config-linux.md#offset-for-time-namespace",
            Must,
            time_offsets,
        ),
        case(
            "net_devices.moved",
            "config-linux.md#network-devices (runtime-spec 1.3)",
            Must,
            net_devices_moved,
        ),
        case(
            "net_devices.without_network_namespace_fails",
            "config-linux.md#network-devices (runtime-spec 1.3)",
            Must,
            net_devices_without_netns,
        ),
    ]
}

fn host_ns(file: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{file}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn new_ns(ctx: &mut Ctx, typ: &str, file: &str) -> Check {
    let r = report_with(ctx, |b| {
        let ns = b.config["linux"]["namespaces"].as_array_mut();
        if let Some(ns) = ns {
            if !ns.iter().any(|n| n["type"] == typ) {
                ns.push(json!({"type": typ}));
            }
        }
    })?;
    let inside = r["namespaces"][file].as_str().unwrap_or("").to_string();
    ensure!(!inside.is_empty(), "no {file} namespace link");
    ensure!(inside != host_ns(file), "{typ} namespace is the host's");
    Ok(())
}

fn with_user(b: &mut crate::ctx::Bundle) {
    if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
        ns.push(json!({"type": "user"}));
    }
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
}

fn new_user(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, with_user)?;
    ensure!(
        r["namespaces"]["user"].as_str() != Some(host_ns("user").as_str()),
        "user namespace is the host's"
    );
    Ok(())
}

fn absent_shared(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.namespaces(&["mount", "pid"]);
    })?;
    for file in ["net", "ipc", "uts"] {
        expect_eq(
            file,
            r["namespaces"][file].as_str().unwrap_or(""),
            host_ns(file).as_str(),
        )?;
    }
    Ok(())
}

fn owner(ctx: &mut Ctx) -> Check<i64> {
    let mut b = ctx.bundle();
    b.args(&["/checker", "sleep", "600"]);
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    Ok(ctx.state(&id)?["pid"].as_i64().unwrap_or(0))
}

fn join(ctx: &mut Ctx, typ: &str, file: &str) -> Check {
    let pid = owner(ctx)?;
    let path = format!("/proc/{pid}/ns/{file}");
    let want = std::fs::read_link(&path)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let r = report_with(ctx, |b| {
        if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
            for n in ns.iter_mut() {
                if n["type"] == typ {
                    *n = json!({"type": typ, "path": path});
                }
            }
        }
    })?;
    expect_eq(
        file,
        r["namespaces"][file].as_str().unwrap_or(""),
        want.as_str(),
    )
}

fn wrong_type(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
        for n in ns.iter_mut() {
            if n["type"] == "network" {
                *n = json!({"type": "network", "path": "/proc/self/ns/ipc"});
            }
        }
    }
    create_fails(ctx, &b)
}

fn missing_path(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": "/no/such/ns"}));
    }
    create_fails(ctx, &b)
}

fn duplicate(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
        ns.push(json!({"type": "ipc"}));
    }
    create_fails(ctx, &b)
}

fn uid_map(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, with_user)?;
    let words: Vec<&str> = r["uid_map"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    expect_eq("uid_map", words, vec!["0", "100000", "65536"])
}

fn gid_map(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, with_user)?;
    let words: Vec<&str> = r["gid_map"]
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    expect_eq("gid_map", words, vec!["0", "200000", "65536"])
}

fn root_inside(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, with_user)?;
    expect_eq(
        "uid/gid inside",
        (r["uid"].as_u64(), r["gid"].as_u64()),
        (Some(0), Some(0)),
    )
}

fn hostname(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| b.config["hostname"] = json!("box.example"))?;
    expect_eq("hostname", r["hostname"].as_str(), Some("box.example"))
}

fn domainname(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| b.config["domainname"] = json!("example.org"))?;
    expect_eq("domainname", r["domainname"].as_str(), Some("example.org"))
}

fn hostname_without_uts(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.namespaces(&["mount", "pid"]);
    b.config["hostname"] = json!("nope");
    create_fails(ctx, &b)
}

fn sysctl_net(ctx: &mut Ctx) -> Check {
    let out = output_with(
        ctx,
        &["/checker", "cat", "/proc/sys/net/ipv4/ip_forward"],
        |b| {
            b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
            b.config["linux"]["readonlyPaths"] = json!([]);
        },
    )?;
    expect_eq("net.ipv4.ip_forward", out.as_str(), "1")
}

fn sysctl_ipc(ctx: &mut Ctx) -> Check {
    let out = output_with(ctx, &["/checker", "cat", "/proc/sys/kernel/shmmni"], |b| {
        b.config["linux"]["sysctl"] = json!({"kernel.shmmni": "1234"});
    })?;
    expect_eq("kernel.shmmni", out.as_str(), "1234")
}

/// The ucounts limits (`user.*`) belong to the user namespace that
/// writes them, so a container with its own may set them.
fn sysctl_user(ctx: &mut Ctx) -> Check {
    let out = output_with(
        ctx,
        &["/checker", "cat", "/proc/sys/user/max_user_namespaces"],
        |b| {
            with_user(b);
            b.config["linux"]["sysctl"] = json!({"user.max_user_namespaces": "7"});
        },
    )?;
    expect_eq("user.max_user_namespaces", out.as_str(), "7")
}

fn sysctl_host(ctx: &mut Ctx) -> Check {
    let before = std::fs::read_to_string("/proc/sys/kernel/msgmnb").unwrap_or_default();
    let r = report_with(ctx, |b| {
        b.config["linux"]["sysctl"] = json!({"kernel.msgmnb": "12345"})
    })?;
    let _: &Value = &r;
    expect_eq(
        "host kernel.msgmnb",
        std::fs::read_to_string("/proc/sys/kernel/msgmnb").unwrap_or_default(),
        before,
    )
}

fn time_offsets(ctx: &mut Ctx) -> Check {
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        skip!("the kernel has no time namespaces");
    }
    let r = report_with(ctx, |b| {
        if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
            ns.push(json!({"type": "time"}));
        }
        b.config["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 1000, "nanosecs": 5}, "boottime": {"secs": 2000, "nanosecs": 0}});
    })?;
    let offsets = r["timens_offsets"]
        .as_str()
        .ok_or_else(|| Failure::Fail("no timens_offsets".into()))?;
    ensure!(
        offsets
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["monotonic", "1000", "5"]),
        "offsets {offsets:?}"
    );
    ensure!(
        offsets
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["boottime", "2000", "0"]),
        "offsets {offsets:?}"
    );
    Ok(())
}

/// A network namespace of the case's own, held by a sleeping process,
/// with a veth pair `v0`/`v1` and 10.9.8.7/24 on `v0`: the runtime runs in
/// it, so moving a device never touches the host's network.
struct PrivateNetwork {
    holder: std::process::Child,
    ns: std::fs::File,
}

impl PrivateNetwork {
    fn new() -> Check<PrivateNetwork> {
        use std::io::BufRead;
        let mut holder = std::process::Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link add v0 type veth peer name v1 && ip addr add 10.9.8.7/24 dev v0 \
                 && echo ready && exec sleep 300",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Skip(format!("unshare: {e}")))?;
        let mut line = String::new();
        if let Some(out) = holder.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            skip!("no veth pair in a private network namespace (ip, veth module)");
        }
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", holder.id()))
            .map_err(|e| Failure::Fail(e.to_string()))?;
        Ok(PrivateNetwork { holder, ns })
    }

    /// Makes `cmd` run in this namespace.
    fn enter(&self, cmd: &mut std::process::Command) {
        use std::os::fd::AsRawFd;
        let fd = self.ns.as_raw_fd();
        // SAFETY: only setns between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
}

impl Drop for PrivateNetwork {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The named device is in the container, renamed, with its address.
fn net_devices_moved(ctx: &mut Ctx) -> Check {
    let net = PrivateNetwork::new()?;
    let mut b = ctx.bundle();
    b.args(&["sh", "-c", "ip -o addr show dev eth7"]);
    b.config["linux"]["netDevices"] = json!({"v0": {"name": "eth7"}});
    b.write();
    let id = ctx.id();
    let out = ctx.rt_with(
        &["run", "--bundle", &b.dir.display().to_string(), &id],
        std::time::Duration::from_secs(60),
        |c| net.enter(c),
    );
    let out = out.ok("run")?;
    ensure!(
        out.stdout.contains("10.9.8.7/24"),
        "eth7 in the container: {:?}",
        out.stdout
    );
    Ok(())
}

/// Without a network namespace of its own a device would stay on the
/// host: an error (the device named does not exist, so a runtime that
/// moved it anyway would still move nothing).
fn net_devices_without_netns(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "report"]);
    if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
    b.config["linux"]["netDevices"] = json!({"skiffnodev0": {}});
    create_fails(ctx, &b)
}
