//! `process` and the per-container kernel settings, checked from inside the
//! container: what the program actually sees.

mod support;

use serde_json::json;
use support::{Bundle, Skiff};

/// Runs `script` in a container built from `edit(bundle)`; returns stdout.
fn inside(script: &str, edit: impl FnOnce(&mut Bundle)) -> String {
    let skiff = Skiff::new();
    let mut b = Bundle::sh(script);
    edit(&mut b);
    let id = support::unique_id("proc");
    let run = skiff.run_bundle(&b, &id).ok();
    support::assert_nothing_left(&skiff, &id);
    run.stdout
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} not in {status}"))
        .trim()
        .to_string()
}

#[test]
fn args_env_and_cwd() {
    require_root!();
    let out = inside("echo \"$0|$1|$FOO|$(pwd)\"", |b| {
        b.config["process"]["args"] =
            json!(["sh", "-c", "echo \"$0|$1|$FOO|$(pwd)\"", "zero", "one"]);
        b.config["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
        b.config["process"]["cwd"] = json!("/tmp");
    });
    assert_eq!(out, "zero|one|bar baz|/tmp\n");
}

#[test]
fn missing_cwd_is_created() {
    require_root!();
    let skiff = Skiff::new();
    let mut b = Bundle::own_rootfs(&["pwd"]);
    b.config["process"]["cwd"] = json!("/work/deep/dir");
    let id = support::unique_id("cwd");
    assert_eq!(skiff.run_bundle(&b, &id).ok().stdout, "/work/deep/dir\n");
    assert!(b.rootfs.join("work/deep/dir").is_dir());
}

#[test]
fn home_comes_from_the_container_passwd() {
    require_root!();
    let out = inside("echo $HOME", |b| {
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000})
    });
    assert_eq!(out, "/home/user\n");
    let out = inside("echo $HOME", |b| {
        b.config["process"]["env"] = json!(["PATH=/bin", "HOME=/custom"])
    });
    assert_eq!(out, "/custom\n");
    let out = inside("echo $HOME", |b| {
        b.config["process"]["user"] = json!({"uid": 4242, "gid": 4242})
    });
    assert_eq!(out, "/\n");
}

#[test]
fn user_groups_and_umask() {
    require_root!();
    let out = inside("id -u; id -g; id -G; umask", |b| {
        b.config["process"]["user"] =
            json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 7], "umask": 63});
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1001");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["1001", "5", "7"]);
    assert_eq!(lines[3], "0077");
    let out = inside("umask", |_| {});
    assert_eq!(out, "0022\n", "runc's default umask");
}

#[test]
fn rlimits() {
    require_root!();
    let out = inside("ulimit -n; ulimit -Hn; ulimit -c", |b| {
        b.config["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]);
    });
    assert_eq!(out, "321\n654\n0\n");
}

#[test]
fn all_five_capability_sets() {
    require_root!();
    let out = inside("cat /proc/self/status", |b| {
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        b.config["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SETUID"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "effective": ["CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "ambient": ["CAP_NET_BIND_SERVICE"]
        });
        b.config["process"]["noNewPrivileges"] = json!(false);
    });
    // After exec as uid 1000: effective/permitted are recomputed by the
    // kernel from the ambient set (NET_BIND_SERVICE = bit 10).
    assert_eq!(
        status_field(&out, "CapBnd"),
        format!("{:016x}", (1u64 << 5) | (1 << 10) | (1 << 0) | (1 << 7))
    );
    assert_eq!(
        status_field(&out, "CapInh"),
        format!("{:016x}", (1u64 << 10) | 1)
    );
    assert_eq!(status_field(&out, "CapAmb"), format!("{:016x}", 1u64 << 10));
    assert_eq!(status_field(&out, "CapPrm"), format!("{:016x}", 1u64 << 10));
    assert_eq!(status_field(&out, "CapEff"), format!("{:016x}", 1u64 << 10));
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
}

#[test]
fn root_keeps_exactly_the_configured_sets() {
    require_root!();
    let out = inside("cat /proc/self/status", |b| {
        b.config["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_SYS_ADMIN"],
            "permitted": ["CAP_KILL", "CAP_SYS_ADMIN"],
            "effective": ["CAP_KILL"]
        });
    });
    let both = format!("{:016x}", (1u64 << 5) | (1 << 21));
    assert_eq!(status_field(&out, "CapBnd"), both);
    assert_eq!(status_field(&out, "CapPrm"), both);
    // For root, execve makes the effective set the permitted one (the
    // kernel treats root as holding every file capability).
    assert_eq!(status_field(&out, "CapEff"), both);
    assert_eq!(status_field(&out, "CapInh"), "0000000000000000");
    assert_eq!(
        status_field(&out, "NoNewPrivs"),
        "1",
        "runc's default config sets noNewPrivileges"
    );
}

#[test]
fn oom_score_adj() {
    require_root!();
    let out = inside("cat /proc/self/oom_score_adj", |b| {
        b.config["process"]["oomScoreAdj"] = json!(345)
    });
    assert_eq!(out, "345\n");
}

#[test]
fn personality_linux32() {
    require_root!();
    let out = inside("uname -m", |b| {
        b.config["linux"]["personality"] = json!({"domain": "LINUX32"})
    });
    assert_eq!(out, "i686\n");
}

#[test]
fn io_priority() {
    require_root!();
    let out = inside("ionice -p $$", |b| {
        b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    });
    assert!(out.contains("idle"), "{out}");
    let out = inside("ionice -p $$", |b| {
        b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    });
    assert!(out.contains("best-effort") && out.contains("6"), "{out}");
}

#[test]
fn scheduler_policy() {
    require_root!();
    let out = inside("grep -E '^(policy|prio)' /proc/self/sched", |b| {
        b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    });
    assert!(
        out.contains("policy") && out.lines().next().unwrap().trim().ends_with('3'),
        "SCHED_BATCH is 3: {out}"
    );
    assert!(out.contains("125"), "nice 5 is prio 125: {out}");
}

#[test]
fn exec_cpu_affinity() {
    require_root!();
    let out = inside("grep Cpus_allowed_list /proc/self/status", |b| {
        b.config["process"]["execCPUAffinity"] = json!({"final": "0"});
    });
    assert_eq!(out.split_whitespace().last(), Some("0"));
}

/// Prints the calling thread's memory policy: `mode nodemask-word0`, the
/// mode with its MPOL_F_* flags as get_mempolicy(2) returns it.
const MEMPOLICY_PROBE: &str = r#"
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    int mode = -1;
    unsigned long mask[16] = {0};
    if (syscall(SYS_get_mempolicy, &mode, mask, 1025UL, 0UL, 0UL) != 0) {
        perror("get_mempolicy");
        return 1;
    }
    printf("%d %lx\n", mode, mask[0]);
    return 0;
}
"#;

/// linux.memoryPolicy (config-linux.md#memory-policy), every mode and flag
/// the spec lists, read back with get_mempolicy(2) by the container's
/// process and by an exec'd one. This host has one node, 0.
#[test]
fn memory_policy_every_mode_and_flag() {
    require_root!();
    let probe = support::probe("mempolicy", MEMPOLICY_PROBE);
    let cases = [
        (json!({"mode": "MPOL_DEFAULT"}), "0 0"),
        (json!({"mode": "MPOL_PREFERRED", "nodes": "0"}), "1 1"),
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "2 1"),
        (json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}), "3 1"),
        (json!({"mode": "MPOL_LOCAL"}), "4 0"),
        (json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}), "5 1"),
        (
            json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}),
            "6 1",
        ),
        // MPOL_F_STATIC_NODES, MPOL_F_RELATIVE_NODES, MPOL_F_NUMA_BALANCING.
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "32770 1",
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
            "16387 1",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
            "8194 1",
        ),
    ];
    for (policy, want) in cases {
        let out = inside("/mempolicy", |b| {
            b.bind_probe(&probe);
            b.config["linux"]["memoryPolicy"] = policy.clone();
        });
        assert_eq!(out.trim(), want, "{policy}");
    }
    // An exec'd process gets the container's policy too.
    let skiff = Skiff::new();
    let id = support::unique_id("mempolicy");
    let mut b = Bundle::new(&["sleep", "100"]);
    b.bind_probe(&probe);
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"});
    skiff.create(&b, &id).ok();
    let exec = skiff.run(&["exec", &id, "/mempolicy"]).ok();
    assert_eq!(exec.stdout.trim(), "3 1");
    skiff.cleanup(&id);
    support::assert_nothing_left(&skiff, &id);
}

/// Nodes the host does not have, and nodes a mode does not take, are
/// refused with the field named; nothing is left behind.
#[test]
fn memory_policy_errors_name_the_field() {
    require_root!();
    let skiff = Skiff::new();
    for (policy, fragments) in [
        (
            json!({"mode": "MPOL_BIND", "nodes": "7"}),
            vec![
                "linux.memoryPolicy",
                "set_mempolicy(MPOL_BIND, nodes \\\"7\\\")",
                "Invalid argument",
            ],
        ),
        (
            json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
            vec!["linux.memoryPolicy.nodes: MPOL_LOCAL takes no nodes"],
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-"}),
            vec!["linux.memoryPolicy.nodes", "not a list of node numbers"],
        ),
        (
            json!({"mode": "MPOL_SIDEWAYS", "nodes": "0"}),
            vec!["linux.memoryPolicy.mode", "MPOL_SIDEWAYS"],
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_BOGUS"]}),
            vec!["linux.memoryPolicy.flags[0]", "MPOL_F_BOGUS"],
        ),
    ] {
        let mut b = Bundle::new(&["true"]);
        b.config["linux"]["memoryPolicy"] = policy;
        let id = support::unique_id("badpolicy");
        skiff.create(&b, &id).fails_with(&fragments);
        support::assert_nothing_left(&skiff, &id);
    }
}

#[test]
fn hostname_domainname_and_sysctl() {
    require_root!();
    let out = inside(
        "hostname; cat /proc/sys/kernel/domainname; cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/shmmni",
        |b| {
            b.config["hostname"] = json!("box");
            b.config["domainname"] = json!("example.org");
            b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
        },
    );
    assert_eq!(out, "box\nexample.org\n1\n1234\n");
    // The host's settings are untouched.
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "1234"
    );
}

#[test]
fn session_keyring_per_container() {
    require_root!();
    let skiff = Skiff::new();
    let mut b = Bundle::sh("cat /proc/keys");
    b.config["linux"]["maskedPaths"] = json!([]);
    let id = support::unique_id("keyring");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    assert!(out.contains(&format!("_ses.{id}")), "{out}");
    let id = support::unique_id("nokeyring");
    b.write();
    let out = skiff
        .run(&[
            "run",
            "--no-new-keyring",
            "--bundle",
            b.dir.to_str().unwrap(),
            &id,
        ])
        .ok()
        .stdout;
    assert!(!out.contains(&format!("_ses.{id}")), "{out}");
}

#[test]
fn no_runtime_fd_leaks_into_the_container() {
    require_root!();
    // Only stdio, plus the fd ls itself opens for the directory.
    let out = inside("ls /proc/self/fd | wc -l", |_| {});
    assert_eq!(out.trim(), "4");
}

#[test]
fn preserved_fds_are_passed() {
    require_root!();
    let skiff = Skiff::new();
    let b = Bundle::sh("cat <&3; ls /proc/self/fd | wc -l");
    b.write();
    let id = support::unique_id("preserve");
    let path = std::env::temp_dir().join(support::unique_id("fd3"));
    std::fs::write(&path, "through fd 3\n").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut cmd = skiff.command(&[
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        b.dir.to_str().unwrap(),
        &id,
    ]);
    support::give_fd3(&mut cmd, &file);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through fd 3\n5\n");
}

#[test]
fn socket_activation_fds_come_first() {
    require_root!();
    let skiff = Skiff::new();
    let b = Bundle::sh("echo $LISTEN_FDS $LISTEN_PID; cat <&3; cat <&4");
    b.write();
    let id = support::unique_id("activation");
    let one = b.dir.join("one");
    let two = b.dir.join("two");
    std::fs::write(&one, "activation fd\n").unwrap();
    std::fs::write(&two, "preserved fd\n").unwrap();
    // As systemd starts a service: LISTEN_PID names skiff itself.
    let script = format!(
        "LISTEN_FDS=1 LISTEN_PID=$$ exec \"$0\" --root {} run --preserve-fds 1 --bundle {} {id} 3<{} 4<{}",
        skiff.root.display(),
        b.dir.display(),
        one.display(),
        two.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script, support::skiff_bin()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 1\nactivation fd\npreserved fd\n"
    );
    support::assert_nothing_left(&skiff, &id);
    // LISTEN_PID naming another process: the fds were not meant for us.
    let id = support::unique_id("activation");
    let script = format!(
        "LISTEN_FDS=1 LISTEN_PID=1 exec \"$0\" --root {} run --bundle {} {id} 3<{}",
        skiff.root.display(),
        b.dir.display(),
        one.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script, support::skiff_bin()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("\n"),
        "{out:?}"
    );
    support::assert_nothing_left(&skiff, &id);
}
