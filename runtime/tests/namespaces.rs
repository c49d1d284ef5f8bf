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
