//! Namespaces: each type new, joined by path, user namespace mappings on
//! both the one-clone path and the slow path, time namespace offsets.

mod support;

use serde_json::json;
use support::{Bundle, Skiff};

const TYPES: [(&str, &str); 7] = [
    ("pid", "pid"),
    ("network", "net"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("mount", "mnt"),
    ("cgroup", "cgroup"),
    ("time", "time"),
];

fn host_ns(name: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{name}"))
        .unwrap()
        .display()
        .to_string()
}

fn ns_script() -> String {
    TYPES
        .iter()
        .map(|(_, f)| format!("readlink /proc/self/ns/{f};"))
        .collect()
}

#[test]
fn every_type_new() {
    require_root!();
    let skiff = Skiff::new();
    let mut b = Bundle::sh(&ns_script());
    b.namespaces(&["pid", "network", "ipc", "uts", "mount", "cgroup", "time"]);
    let id = support::unique_id("allns");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    for (line, (_, file)) in out.lines().zip(TYPES) {
        assert!(line.starts_with(&format!("{file}:[")), "{line}");
        assert_ne!(line, host_ns(file), "{file} namespace is the host's");
    }
    support::assert_nothing_left(&skiff, &id);
}

#[test]
fn only_what_is_asked() {
    require_root!();
    let skiff = Skiff::new();
    let mut b = Bundle::sh(&ns_script());
    b.namespaces(&["mount"]);
    let id = support::unique_id("mntonly");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    for (line, (_, file)) in out.lines().zip(TYPES) {
        if file == "mnt" {
            assert_ne!(line, host_ns(file));
        } else {
            assert_eq!(line, host_ns(file), "{file} should be shared with the host");
        }
    }
}

#[test]
fn join_by_path() {
    require_root!();
    let skiff = Skiff::new();
    let a = support::unique_id("nsowner");
    skiff.create(&Bundle::sh("sleep 1000"), &a).ok();
    skiff.run(&["start", &a]).ok();
    let pid = skiff.state(&a)["pid"].as_i64().unwrap();
    let owner = |f: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{f}"))
            .unwrap()
            .display()
            .to_string()
    };

    let mut b = Bundle::sh("readlink /proc/self/ns/net /proc/self/ns/ipc /proc/self/ns/uts /proc/self/ns/pid; ps -o comm | grep -c sleep");
    b.config["linux"]["namespaces"] = json!([
        {"type": "mount"},
        {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")},
        {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
        {"type": "pid", "path": format!("/proc/{pid}/ns/pid")}
    ]);
    b.config["process"]["args"] = json!([
        "sh",
        "-c",
        "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done; ps -o comm | grep -c sleep"
    ]);
    let id = support::unique_id("joiner");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], owner("net"));
    assert_eq!(lines[1], owner("ipc"));
    assert_eq!(lines[2], owner("uts"));
    assert_eq!(lines[3], owner("pid"));
    assert_eq!(lines[4], "1", "the joiner sees the owner's processes");
    skiff.cleanup(&a);
    support::assert_nothing_left(&skiff, &id);
    support::assert_nothing_left(&skiff, &a);
}

fn userns_bundle(script: &str) -> Bundle {
    let mut b = Bundle::sh(script);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b
}

#[test]
fn user_namespace_with_mappings() {
    require_root!();
    let skiff = Skiff::new();
    let b = userns_bundle("cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox; ls /dev/null /proc/1 >/dev/null && echo ok");
    let id = support::unique_id("userns");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(lines[2], "0", "root inside the namespace");
    assert_eq!(lines[3], "65534", "host root is unmapped inside");
    assert_eq!(lines[4], "ok");
    support::assert_nothing_left(&skiff, &id);
}

#[test]
fn user_namespace_joining_a_network_namespace() {
    require_root!();
    // A new user namespace while joining a namespace the host owns cannot be
    // done in one clone: the slow path joins first, then unshares and forks
    // for the pid namespace.
    let skiff = Skiff::new();
    let a = support::unique_id("netowner");
    skiff.create(&Bundle::sh("sleep 1000"), &a).ok();
    let pid = skiff.state(&a)["pid"].as_i64().unwrap();
    let mut b = userns_bundle("readlink /proc/self/ns/net; echo $$; id -u; cat /proc/self/uid_map");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    for n in ns.iter_mut() {
        if n["type"] == "network" {
            *n = json!({"type": "network", "path": format!("/proc/{pid}/ns/net")});
        }
    }
    let id = support::unique_id("slowpath");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines[0],
        std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .unwrap()
            .display()
            .to_string()
    );
    assert_eq!(lines[1], "1", "the init is pid 1 of its new pid namespace");
    assert_eq!(lines[2], "0");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    skiff.cleanup(&a);
    support::assert_nothing_left(&skiff, &id);
    support::assert_nothing_left(&skiff, &a);
}

#[test]
fn time_namespace_offsets() {
    require_root!();
    let skiff = Skiff::new();
    let mut b = Bundle::sh("cut -d. -f1 /proc/uptime");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400000, "nanosecs": 0}, "monotonic": {"secs": 3600, "nanosecs": 0}});
    let id = support::unique_id("timens");
    let before = host_ns("time");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    let inside: u64 = out.trim().parse().unwrap();
    let host: u64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside >= host + 86_400_000 - 5,
        "uptime {inside} should be shifted by a thousand days from {host}"
    );
    // The test process (like the runtime) stayed in its time namespace.
    assert_eq!(host_ns("time"), before);
}

#[test]
fn idmapped_bind_mounts() {
    require_root!();
    let skiff = Skiff::new();
    let host = std::env::temp_dir().join(support::unique_id("idmap"));
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "x").unwrap();
    // In a user namespace mapping 0 -> 100000: the host's root-owned file is
    // nobody through a plain bind, and root through an id-mapped one.
    let mut b = userns_bundle("stat -c %u /plain/f /mapped/f");
    // Root of a user namespace cannot create mount points in a rootfs the
    // host's root owns: they exist in the image.
    for d in ["plain", "mapped"] {
        std::fs::create_dir_all(support::shared_rootfs().join(d)).unwrap();
    }
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/plain", "type": "bind", "source": host, "options": ["rbind"]}),
    );
    mounts.push(json!({"destination": "/mapped", "type": "bind", "source": host, "options": ["rbind", "idmap"]}));
    let id = support::unique_id("idmapped");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    assert_eq!(out, "65534\n0\n");
    support::assert_nothing_left(&skiff, &id);

    // Without a user namespace, the mount's own mappings apply.
    let mut b = Bundle::sh("stat -c %u /mapped/f");
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/mapped", "type": "bind", "source": host, "options": ["bind", "idmap"],
        "uidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}]
    }));
    let id = support::unique_id("idmapped2");
    assert_eq!(skiff.run_bundle(&b, &id).ok().stdout, "1234\n");
    std::fs::remove_dir_all(&host).unwrap();
}

/// The mount table of the namespace `pid` is in (ids, parents, devices,
/// roots and mount points) and that process's root, as the host sees them.
fn mount_view(pid: u32) -> (String, String) {
    let table = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .map(|l| l.split(' ').take(5).collect::<Vec<_>>().join(" ") + "\n")
        .collect();
    let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    (table, root.display().to_string())
}

/// A process killed and reaped when the test ends, even by a panic.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A container deleted when the test ends, even by a panic.
struct Deleted<'a>(&'a Skiff, String);

impl Drop for Deleted<'_> {
    fn drop(&mut self) {
        self.0.cleanup(&self.1);
    }
}

/// Creates and starts a container with its own rootfs holding /marker,
/// running `sleep 1000` in a new pid namespace and a mount namespace as
/// `mount` says (none if None). Returns the init's pid and mount namespace.
fn start_marked(skiff: &Skiff, id: &str, mount: Option<serde_json::Value>) -> (i64, String) {
    let mut b = Bundle::own_rootfs(&["sleep", "1000"]);
    std::fs::write(b.rootfs.join("marker"), "rootfs\n").unwrap();
    b.namespaces(&["pid"]);
    if let Some(m) = mount {
        b.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(m);
    }
    skiff.create(&b, id).ok();
    let init = skiff.state(id)["pid"].as_i64().unwrap();
    let ns = std::fs::read_link(format!("/proc/{init}/ns/mnt")).unwrap();
    skiff.run(&["start", id]).ok();
    (init, ns.display().to_string())
}

/// What `exec` sees in a container: its mount namespace and /marker.
fn exec_view(skiff: &Skiff, id: &str) -> String {
    skiff
        .run(&[
            "exec",
            id,
            "sh",
            "-c",
            "readlink /proc/self/ns/mnt; cat /marker",
        ])
        .ok()
        .stdout
}

/// A mount namespace given by path is joined, and the container still runs
/// on its rootfs (as runc and crun; runtime-tools' linux_ns_path), but the
/// namespace is left as it was: the root is built in a private namespace
/// and the container gets a detached copy, so neither the namespace's
/// mounts nor the root of the processes already in it change.
#[test]
fn mount_namespace_joined_by_path() {
    require_root!();
    let holder = Reaped(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "1000"])
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    let ns = || {
        std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .unwrap()
            .display()
            .to_string()
    };
    for _ in 0..500 {
        if ns() != host_ns("mnt") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let before = mount_view(pid);
    let skiff = Skiff::new();
    let id = support::unique_id("joinmnt");
    let container = Deleted(&skiff, id.clone());
    let joined = json!({"type": "mount", "path": format!("/proc/{pid}/ns/mnt")});
    let (_, init_ns) = start_marked(&skiff, &id, Some(joined));
    assert_eq!(init_ns, ns(), "the init's mount namespace");
    assert_eq!(exec_view(&skiff, &id), format!("{}\nrootfs\n", ns()));
    assert_eq!(mount_view(pid), before, "the joined namespace changed");
    drop(container);
    support::assert_nothing_left(&skiff, &id);
}

/// Without a mount namespace the container shares the runtime's (as runc;
/// runtime-tools' linux_ns_itype), yet nothing is mounted there: its root
/// is a detached copy of one built in a private namespace, which the
/// host's mount table never shows.
#[test]
fn no_mount_namespace() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("nomntns");
    let container = Deleted(&skiff, id.clone());
    let (init, init_ns) = start_marked(&skiff, &id, None);
    assert_eq!(init_ns, host_ns("mnt"));
    assert_eq!(
        exec_view(&skiff, &id),
        format!("{}\nrootfs\n", host_ns("mnt"))
    );
    let root = std::fs::read_to_string(format!("/proc/{init}/root/marker"));
    assert_eq!(root.unwrap(), "rootfs\n", "the init's root");
    let bundle = skiff.state(&id)["bundle"].as_str().unwrap().to_string();
    let ours: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&bundle))
        .map(str::to_string)
        .collect();
    assert!(ours.is_empty(), "mounted in the host's namespace: {ours:?}");
    drop(container);
    support::assert_nothing_left(&skiff, &id);
}

#[test]
fn user_sysctls_in_an_own_user_namespace() {
    require_root!();
    let skiff = Skiff::new();
    let host = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    let mut b = userns_bundle(
        "cat /proc/sys/user/max_user_namespaces /proc/sys/user/max_inotify_instances",
    );
    b.config["linux"]["sysctl"] =
        json!({"user.max_user_namespaces": "7", "user.max_inotify_instances": "33"});
    let id = support::unique_id("usersysctl");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    assert_eq!(out, "7\n33\n");
    support::assert_nothing_left(&skiff, &id);
    // The limits were the container's namespace's, not the host's.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap(),
        host
    );
    // Without a user namespace they would change the host's: refused.
    let mut b = Bundle::sh("true");
    b.config["linux"]["sysctl"] = json!({"user.max_user_namespaces": "7"});
    let id = support::unique_id("usersysctl");
    skiff.run_bundle(&b, &id).fails_with(&[
        "linux.sysctl",
        "user.max_user_namespaces",
        "needs a private user namespace",
    ]);
    support::assert_nothing_left(&skiff, &id);
}

/// Runs `script` in a private network namespace of its own (the host's
/// network is never touched) holding a veth pair `v0`/`v1`, `v0` with an
/// IPv4 and an IPv6 address, and a bridge `br0`; `$SKIFF` runs skiff with
/// the test's root. Returns stdout and stderr.
fn in_private_network(skiff: &Skiff, script: &str) -> (String, String) {
    let setup = "ip link add v0 type veth peer name v1 && \
                 ip addr add 10.9.8.7/24 dev v0 && ip addr add fd00::7/64 dev v0 && \
                 ip link add br0 type bridge";
    let out = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", &format!("{setup} && {script}")])
        .env(
            "SKIFF",
            format!("{} --root {}", skiff.bin.display(), skiff.root.display()),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare (util-linux) and ip (iproute2)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn net_devices_move_into_the_container() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("netdev");
    let mut b = Bundle::sh("ip -o addr show dev eth7; ip -o link show dev eth7; sleep 1000");
    b.namespaces(&["mount", "pid", "network"]);
    b.config["linux"]["netDevices"] = json!({"v0": {"name": "eth7"}});
    b.write();
    let bundle = b.dir.display();
    let (out, err) = in_private_network(
        &skiff,
        &format!(
            "$SKIFF run -d --bundle {bundle} {id} > {bundle}/inside 2>&1 && \
             for i in $(seq 100); do grep -q eth7: {bundle}/inside && break; sleep 0.05; done; \
             ip -o link show v0 2>&1 | head -1; echo left:; ip -o link show; \
             $SKIFF delete --force {id}"
        ),
    );
    let inside = std::fs::read_to_string(b.dir.join("inside")).unwrap_or_default();
    // Inside: renamed, with the addresses it had on the host, and up.
    assert!(inside.contains("inet 10.9.8.7/24"), "{inside}\n{err}");
    assert!(inside.contains("inet6 fd00::7/64"), "{inside}");
    let link = inside.lines().find(|l| l.contains("link/")).unwrap_or("");
    assert!(link.contains(": eth7@") && link.contains(",UP"), "{inside}");
    // Outside: v0 has left the namespace skiff ran in; its peer remains.
    let (before, after) = out.split_once("left:").unwrap_or(("", ""));
    assert!(before.contains("does not exist"), "{out}\n{err}");
    assert!(!after.contains("v0") && after.contains("v1@"), "{out}");
    support::assert_nothing_left(&skiff, &id);

    // What cannot move is refused by name, and leaves nothing behind.
    for (devices, fragments) in [
        (
            json!({"br0": {}}),
            vec!["linux.netDevices", "br0", "cannot leave its namespace"],
        ),
        (
            json!({"nosuch0": {}}),
            vec!["linux.netDevices", "nosuch0", "no such interface"],
        ),
        (
            json!({"v0": {"name": "lo"}}),
            vec![
                "linux.netDevices",
                "v0",
                "already has an interface of that name",
            ],
        ),
    ] {
        let id = support::unique_id("netdev");
        b.config["linux"]["netDevices"] = devices;
        b.write();
        let (out, err) = in_private_network(
            &skiff,
            &format!("$SKIFF create --bundle {bundle} {id}; echo status=$?"),
        );
        assert!(out.contains("status=1"), "{out}\n{err}");
        let line = err
            .lines()
            .find(|l| l.contains("level=error"))
            .unwrap_or("");
        for f in &fragments {
            assert!(line.contains(f), "{f:?} not in {err}");
        }
        support::assert_nothing_left(&skiff, &id);
    }

    // One that cannot move after one that did: the first comes back,
    // under its own name, with its addresses, up as it was.
    let id = support::unique_id("netdev");
    b.config["linux"]["netDevices"] = json!({"v0": {"name": "eth7"}, "zz-missing": {}});
    b.write();
    let (out, err) = in_private_network(
        &skiff,
        &format!(
            "ip link set v0 up; $SKIFF create --bundle {bundle} {id}; echo status=$?; \
             ip -o addr show dev v0; ip -o link show dev v0"
        ),
    );
    assert!(
        out.contains("status=1") && err.contains("zz-missing"),
        "{out}\n{err}"
    );
    assert!(out.contains("inet 10.9.8.7/24"), "{out}");
    assert!(out.contains("inet6 fd00::7/64"), "{out}");
    assert!(out.contains(": v0@") && out.contains(",UP"), "{out}");
    support::assert_nothing_left(&skiff, &id);
}

/// A new network namespace gets `lo` up with 127.0.0.1, as runc and crun
/// give it: programs that talk to localhost work without other networking.
/// Without a network namespace of its own the container sees the host's.
#[test]
fn new_network_namespace_has_loopback_up() {
    require_root!();
    let skiff = Skiff::new();
    // IFF_UP is bit 0 of the flags sysfs shows.
    let script = "cat /sys/class/net/lo/flags; ip -4 addr show lo | grep -o 'inet [0-9./]*'";
    let mut b = Bundle::sh(script);
    b.namespaces(&["mount", "network"]);
    let id = support::unique_id("lo");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    let mut lines = out.lines();
    let flags = lines.next().unwrap_or_default();
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down: flags {flags:#x}");
    assert_eq!(lines.next(), Some("inet 127.0.0.1/8"), "{out}");
    support::assert_nothing_left(&skiff, &id);
}
