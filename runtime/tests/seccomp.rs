//! Seccomp: Podman's real default profile gives the same outcome as runc
//! for a probe of ~50 syscalls; user notification reaches an agent that
//! answers; bad profiles are refused naming the entry.

mod support;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::{notify, Bundle, Skiff};

/// The conformance checker (built with the workspace), copied into a
/// rootfs; it runs the syscall probe.
fn checker() -> Option<PathBuf> {
    let path = Path::new(support::skiff_bin()).with_file_name("skiff-checker");
    if path.is_file() {
        return Some(path);
    }
    let why = format!("{} missing (cargo build --workspace)", path.display());
    assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
    eprintln!("SKIPPED: {why}");
    None
}

/// Podman's containers-common profile resolved the way Podman resolves it
/// for a root container with its default capabilities on x86-64.
fn podman_profile() -> Option<Value> {
    let path = "/usr/share/containers/seccomp.json";
    let Ok(text) = std::fs::read_to_string(path) else {
        let why = format!("{path} missing (apt install golang-github-containers-common)");
        assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return None;
    };
    let src: Value = serde_json::from_str(&text).unwrap();
    use skiff_seccomp::containers_common as cc;
    Some(cc::resolve(
        &src,
        &cc::PODMAN_DEFAULT_CAPS,
        cc::running_kernel(),
    ))
}

/// Runs the probe under `runtime` with `profile`; returns name -> result.
fn probe(runtime: &str, checker: &Path, profile: &Value) -> Value {
    let mut b = Bundle::own_rootfs(&["/checker", "syscall-probe"]);
    std::fs::copy(checker, b.rootfs.join("checker")).unwrap();
    b.config["linux"]["seccomp"] = profile.clone();
    b.config["root"]["readonly"] = json!(false);
    let caps = json!(skiff_seccomp::containers_common::PODMAN_DEFAULT_CAPS);
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set] = caps.clone();
    }
    b.write();
    let root = std::env::temp_dir().join(support::unique_id(&format!("{runtime}-root")));
    let id = support::unique_id("probe");
    let out = std::process::Command::new(runtime)
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{runtime}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{runtime} probe output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn podman_default_profile_matches_runc() {
    require_root!();
    let (Some(checker), Some(profile)) = (checker(), podman_profile()) else {
        return;
    };
    if !Path::new("/usr/sbin/runc").exists() {
        assert!(
            std::env::var_os("SKIFF_REQUIRE_ALL").is_none(),
            "runc missing (apt install runc)"
        );
        eprintln!("SKIPPED: runc missing");
        return;
    }
    let ours = probe(support::skiff_bin(), &checker, &profile);
    let theirs = probe("/usr/sbin/runc", &checker, &profile);
    let ours = ours.as_object().unwrap();
    let theirs = theirs.as_object().unwrap();
    assert!(ours.len() >= 45, "probe too small: {ours:?}");
    let differ: Vec<String> = ours
        .iter()
        .filter(|(k, v)| theirs.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k}: skiff {v}, runc {}",
                theirs.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "outcomes differ from runc:\n{}",
        differ.join("\n")
    );
    // The probe must see both sides of the profile.
    assert!(
        ours.values().any(|v| v == "ok") && ours.values().any(|v| v == "EPERM" || v == "ENOSYS"),
        "{ours:?}"
    );
}

#[test]
fn notify_reaches_an_agent_that_answers() {
    require_root!();
    // The agent: receives the listener with the container state, then
    // answers the container's mkdir with EROFS.
    let sock = std::env::temp_dir().join(support::unique_id("agent.sock"));
    let listener = UnixListener::bind(&sock).unwrap();
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, fd) = skiff::fdpass::recv(std::os::fd::AsFd::as_fd(&conn), &mut buf).unwrap();
        let state: Value = serde_json::from_slice(&buf[..n]).unwrap();
        let fd: OwnedFd = fd.expect("no listener fd");
        let notif = notify::recv(fd.as_fd()).expect("NOTIF_RECV");
        let resp = notify::Resp {
            id: notif.id,
            val: 0,
            error: -libc::EROFS,
            flags: 0,
        };
        notify::send(fd.as_fd(), &resp).expect("NOTIF_SEND");
        (state, notif.data.nr)
    });
    let skiff = Skiff::new();
    let mut b = Bundle::sh("mkdir /tmp/x 2>&1; echo status=$?");
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "agent-metadata",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let id = support::unique_id("notify");
    let run = skiff.run_bundle(&b, &id).ok();
    assert!(
        run.stdout.contains("Read-only file system") && run.stdout.contains("status=1"),
        "{}",
        run.stdout
    );
    let (state, nr) = agent.join().unwrap();
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "agent-metadata");
    assert_eq!(state["state"]["id"], id.as_str());
    assert!(state["pid"].as_i64().unwrap() > 0);
    assert!(
        nr == libc::SYS_mkdir as i32 || nr == libc::SYS_mkdirat as i32,
        "notified syscall {nr}"
    );
    support::assert_nothing_left(&skiff, &id);
    let _ = std::fs::remove_file(sock);
}

#[test]
fn bad_profiles_name_the_entry() {
    require_root!();
    let skiff = Skiff::new();
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_BOGUS"}),
            "linux.seccomp.defaultAction",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]}),
            "linux.seccomp.architectures[0]",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SIDEWAYS"}]}]}),
            "linux.seccomp.syscalls[0].args[0].op",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index: 9 is above 5",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
            "linux.seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO",
        ),
    ];
    for (profile, want) in cases {
        let mut b = Bundle::new(&["true"]);
        b.config["linux"]["seccomp"] = profile;
        let id = support::unique_id("badseccomp");
        skiff.create(&b, &id).fails_with(&[want]);
        support::assert_nothing_left(&skiff, &id);
    }
}

/// What a profile recorder (security-profiles-operator,
/// oci-seccomp-bpf-hook) writes for busybox's `true` and `sleep`: the
/// program's own syscalls and nothing else. The runtime's own needs are not
/// in it, so everything the runtime does after the filter is on fails.
fn recorded_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{
            "names": ["execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list", "rseq",
                      "prlimit64", "readlink", "getrandom", "getuid", "prctl", "mprotect",
                      "clock_nanosleep", "nanosleep", "exit_group"],
            "action": "SCMP_ACT_ALLOW"
        }]
    })
}

#[test]
fn recorded_allow_list_profiles_run() {
    require_root!();
    let skiff = Skiff::new();
    // Without no_new_privs the filter needs CAP_SYS_ADMIN while the
    // process may no longer keep it: both ways must work.
    for nnp in [true, false] {
        let mut b = Bundle::new(&["true"]);
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["linux"]["seccomp"] = recorded_profile();
        let id = support::unique_id("recorded");
        skiff.run_bundle(&b, &id).ok();
        support::assert_nothing_left(&skiff, &id);

        let mut b = Bundle::new(&["sleep", "60"]);
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["linux"]["seccomp"] = recorded_profile();
        let id = support::unique_id("recorded-exec");
        b.write();
        skiff
            .run(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id])
            .ok();
        skiff.run(&["exec", &id, "true"]).ok();
        skiff.run(&["delete", "--force", &id]).ok();
        support::assert_nothing_left(&skiff, &id);
    }
}

#[test]
fn a_profile_that_denies_execve_is_refused_by_name() {
    require_root!();
    let skiff = Skiff::new();
    let mut profile = recorded_profile();
    let names = profile["syscalls"][0]["names"].as_array_mut().unwrap();
    names.retain(|n| n != "execve");
    let mut b = Bundle::new(&["true"]);
    b.config["linux"]["seccomp"] = profile;
    let id = support::unique_id("no-execve");
    skiff
        .create(&b, &id)
        .fails_with(&["linux.seccomp", "does not allow execve"]);
    support::assert_nothing_left(&skiff, &id);
}

#[test]
fn unknown_syscall_names_are_warned_about() {
    require_root!();
    let skiff = Skiff::new();
    // One name no kernel has, one of another architecture, one of the
    // newest x86 syscalls: only the first is unknown, and it is a warning
    // (runc 1.1.5 logs it at debug level only, crun at warning level).
    let mut b = Bundle::new(&["true"]);
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["not_a_syscall", "pciconfig_read", "statmount"],
            "action": "SCMP_ACT_ERRNO"}]});
    let id = support::unique_id("unknownsys");
    let run = skiff.run_bundle(&b, &id).ok();
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("level=warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(warnings[0].contains("not_a_syscall"), "{}", warnings[0]);
    assert!(
        !warnings[0].contains("pciconfig_read") && !warnings[0].contains("statmount"),
        "{}",
        warnings[0]
    );
    skiff.cleanup(&id);
    support::assert_nothing_left(&skiff, &id);
}

/// Catches SIGUSR1 (without SA_RESTART) around a mkdir the profile sends
/// to the agent, and prints how the mkdir ended.
const SIGNALLED_MKDIR: &str = r#"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
static volatile sig_atomic_t caught;
static void on_usr1(int sig) { (void)sig; caught = 1; }
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    int r = mkdir("/notified", 0755);
    printf("mkdir=%d %s caught=%d\n", r, r ? strerror(errno) : "ok", (int)caught);
    return 0;
}
"#;

/// An agent that, once it has the container's mkdir, signals the caller
/// and then checks whether that notification is still pending; it answers
/// EROFS to it and to any later one. Returns whether it was still pending.
fn signalling_agent(listener: UnixListener) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let (_, fd) = skiff::fdpass::recv(conn.as_fd(), &mut buf).unwrap();
        let fd: OwnedFd = fd.expect("no listener fd");
        let answer = |id| {
            notify::send(
                fd.as_fd(),
                &notify::Resp {
                    id,
                    val: 0,
                    error: -libc::EROFS,
                    flags: 0,
                },
            )
        };
        let first = notify::recv(fd.as_fd()).expect("NOTIF_RECV");
        // SAFETY: kill with a pid the kernel just reported.
        unsafe { libc::kill(first.pid as i32, libc::SIGUSR1) };
        std::thread::sleep(std::time::Duration::from_millis(300));
        let pending = notify::id_valid(fd.as_fd(), first.id);
        let _ = answer(first.id);
        // A syscall the signal interrupted may come back as a new one.
        while notify::readable(fd.as_fd(), 2000) {
            match notify::recv(fd.as_fd()) {
                Ok(n) => {
                    let _ = answer(n.id);
                }
                Err(_) => break,
            }
        }
        pending
    })
}

#[test]
fn wait_killable_recv_keeps_a_received_notification_through_signals() {
    require_root!();
    let skiff = Skiff::new();
    let probe = support::probe("signalled_mkdir", SIGNALLED_MKDIR);
    for killable in [true, false] {
        let sock = std::env::temp_dir().join(support::unique_id("agent.sock"));
        let agent = signalling_agent(UnixListener::bind(&sock).unwrap());
        let mut b = Bundle::new(&["/signalled_mkdir"]);
        b.bind_probe(&probe);
        let flags: Vec<&str> = if killable {
            vec!["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        } else {
            vec![]
        };
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "flags": flags,
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
        let id = support::unique_id("waitkill");
        let out = skiff.run_bundle(&b, &id).ok().stdout;
        let pending = agent.join().unwrap();
        support::assert_nothing_left(&skiff, &id);
        let _ = std::fs::remove_file(sock);
        if killable {
            // The signal waited for the agent's answer.
            assert!(pending, "the signal cut the received notification short");
            assert_eq!(out, "mkdir=-1 Read-only file system caught=1\n");
        } else {
            // Without the flag the signal interrupts the wait (the check
            // that the flag above made the difference).
            assert!(!pending, "the notification outlived a signal: {out}");
            assert!(out.contains("caught=1"), "{out}");
        }
    }
    // Without a notification rule the flag has nothing to act on: the
    // profile installs all the same (the kernel alone would say EINVAL).
    let mut b = Bundle::sh("mkdir /tmp/x 2>&1; echo status=$?");
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    });
    let id = support::unique_id("waitkill");
    let out = skiff.run_bundle(&b, &id).ok().stdout;
    assert!(out.contains("status=1"), "{out}");
    support::assert_nothing_left(&skiff, &id);
}
