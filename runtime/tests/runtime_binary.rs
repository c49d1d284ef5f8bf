//! The host's skiff binary can never be written from inside a container
//! (CVE-2019-5736). A real attacker runs in the container: it hunts for a
//! skiff process in its pid namespace (the init waiting for `start`, an
//! `exec` child before its execve), holds that process's
//! `/proc/<pid>/exe` open, and once skiff has exited reopens the fd for
//! writing. Every test drives a copy of the binary, so a regression
//! overwrites only the copy.

mod support;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{notify, Bundle, Skiff};

/// A copy of the skiff binary named so the attacker can find it.
fn runtime_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("skiff-under-attack");
    std::fs::copy(support::skiff_bin(), &copy).unwrap();
    copy
}

/// A bundle whose rootfs holds the attacker, with a log directory every
/// user (a user namespace's root too) can write.
fn attack_bundle(args: &[&str], ptrace: bool, userns: bool) -> Bundle {
    let mut b = Bundle::own_rootfs(args);
    std::fs::write(b.rootfs.join("attack.sh"), support::ATTACKER).unwrap();
    let out = b.rootfs.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    b.config["root"]["readonly"] = json!(false);
    if ptrace {
        for set in ["bounding", "effective", "permitted"] {
            b.config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_PTRACE"));
        }
    }
    if userns {
        b.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        b.config["linux"]["uidMappings"] = map.clone();
        b.config["linux"]["gidMappings"] = map;
    }
    b
}

/// What the attack must end with, given the container's privileges.
fn assert_outcome(log: &str, copy: &Path, original: &[u8], can_open: bool) {
    assert_eq!(
        std::fs::read(copy).unwrap(),
        original,
        "the runtime binary on the host was changed; attacker log:\n{log}"
    );
    assert!(log.contains("saw "), "attacker never saw skiff:\n{log}");
    if can_open {
        // With CAP_SYS_PTRACE in the host's user namespace the exe opens:
        // what it names must be the sealed copy, and writing it must fail.
        assert!(log.contains("held "), "{log}");
        let host_path = format!("held {}", copy.display());
        assert!(!log.contains(&host_path), "exe is the host file:\n{log}");
        assert!(log.contains("refused: "), "{log}");
    } else {
        assert!(log.contains("denied"), "{log}");
    }
}

/// The init waits for `start` while an attacker `exec`ed into the created
/// container goes for it; then `start` lets the runtime binary go idle.
fn waiting_init(ptrace: bool, userns: bool) {
    let dir = tempdir("waiting-init");
    let copy = runtime_copy(&dir);
    let original = std::fs::read(&copy).unwrap();
    let skiff = Skiff::with_binary(copy.clone());
    let b = attack_bundle(&["sleep", "60"], ptrace, userns);
    let id = support::unique_id("atk-init");
    skiff.create(&b, &id).ok();
    skiff.run(&["exec", "-d", &id, "sh", "/attack.sh"]).ok();
    support::attacker_tried(&b.rootfs);
    skiff.run(&["start", &id]).ok();
    let log = support::attack_verdict(&b.rootfs);
    cleanup(&skiff, &id);
    assert_outcome(&log, &copy, &original, ptrace && !userns);
    support::assert_nothing_left(&skiff, &id);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn waiting_init_with_cap_sys_ptrace() {
    require_root!();
    waiting_init(true, false);
}

#[test]
fn waiting_init_without_cap_sys_ptrace() {
    require_root!();
    waiting_init(false, false);
}

#[test]
fn waiting_init_in_a_user_namespace() {
    require_root!();
    waiting_init(true, true);
}

/// An agent for the container's seccomp profile, which sends execve to it:
/// the first listener (the init's) is answered at once, the exec child's
/// first execve is held until the attacker has gone for the child.
fn agent(sock: UnixListener, rootfs: PathBuf) -> std::thread::JoinHandle<()> {
    sock.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut serving = Vec::new();
        while serving.len() < 2 && Instant::now() < deadline {
            let Ok((conn, _)) = sock.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            let mut buf = vec![0u8; 65536];
            let (_, fd) = skiff::fdpass::recv(conn.as_fd(), &mut buf).unwrap();
            let listener: OwnedFd = fd.expect("no listener fd");
            let hold_first = serving.len() == 1;
            let rootfs = rootfs.clone();
            serving.push(std::thread::spawn(move || {
                serve(listener, hold_first.then_some(rootfs))
            }));
        }
        for t in serving {
            let _ = t.join();
        }
    })
}

/// Lets every notification on `listener` go on until no process uses its
/// filter; with `hold`, the first one only after the attacker has tried.
fn serve(listener: OwnedFd, mut hold: Option<PathBuf>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !revents.contains(PollFlags::POLLIN) {
            return;
        }
        let Ok(n) = notify::recv(listener.as_fd()) else {
            continue;
        };
        if let Some(rootfs) = hold.take() {
            support::attacker_tried(&rootfs);
        }
        let _ = notify::continue_(listener.as_fd(), n.id);
    }
}

/// The attacker is the container's init; `exec` starts a process while a
/// seccomp agent holds the exec child at its execve, inside the
/// container's pid namespace.
fn exec_child(ptrace: bool) {
    let dir = tempdir("exec-child");
    let copy = runtime_copy(&dir);
    let original = std::fs::read(&copy).unwrap();
    let skiff = Skiff::with_binary(copy.clone());
    let mut b = attack_bundle(&["sh", "/attack.sh"], ptrace, false);
    let sock_path = dir.join("agent.sock");
    let sock = UnixListener::bind(&sock_path).unwrap();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock_path,
        "syscalls": [{"names": ["execve", "execveat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let agent = agent(sock, b.rootfs.clone());
    let id = support::unique_id("atk-exec");
    b.write();
    skiff
        .run(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id])
        .ok();
    skiff.run(&["exec", "-d", &id, "true"]).ok();
    let log = support::attack_verdict(&b.rootfs);
    cleanup(&skiff, &id);
    agent.join().unwrap();
    assert_outcome(&log, &copy, &original, ptrace);
    support::assert_nothing_left(&skiff, &id);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn exec_child_with_cap_sys_ptrace() {
    require_root!();
    exec_child(true);
}

#[test]
fn exec_child_without_cap_sys_ptrace() {
    require_root!();
    exec_child(false);
}

/// An image whose program is a symlink to `/proc/self/exe` runs only the
/// sealed copy: it works, and it cannot write itself.
#[test]
fn proc_self_exe_as_the_program_is_the_sealed_copy() {
    require_root!();
    let dir = tempdir("self-exe");
    let copy = runtime_copy(&dir);
    let original = std::fs::read(&copy).unwrap();
    let skiff = Skiff::with_binary(copy.clone());
    let b = Bundle::own_rootfs(&["/bin/evil", "--version"]);
    std::os::unix::fs::symlink("/proc/self/exe", b.rootfs.join("bin/evil")).unwrap();
    let id = support::unique_id("self-exe");
    let run = skiff.run_bundle(&b, &id).ok();
    assert!(run.stdout.contains("skiff version"), "{}", run.stdout);
    assert_eq!(std::fs::read(&copy).unwrap(), original);
    support::assert_nothing_left(&skiff, &id);
    let _ = std::fs::remove_dir_all(dir);
}

/// Deletes the container with the build's own binary: the copy may be
/// what the attack destroyed.
fn cleanup(skiff: &Skiff, id: &str) {
    Skiff {
        root: skiff.root.clone(),
        bin: PathBuf::from(support::skiff_bin()),
    }
    .cleanup(id);
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(support::unique_id(tag));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Hardened hosts set `vm.memfd_noexec=2`: no memfd may be executed. The
/// sysctl belongs to the pid namespace, so the test sets it in a private
/// one and runs skiff there; the sealed copy must not need a memfd.
#[test]
fn memfd_noexec_hosts_run_containers() {
    require_root!();
    if !Path::new("/proc/sys/vm/memfd_noexec").exists() {
        let why = "this kernel has no vm.memfd_noexec (Linux 6.3+)";
        assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("SKIPPED memfd_noexec_hosts_run_containers: {why}");
        return;
    }
    let skiff = Skiff::new();
    let b = Bundle::new(&["sh", "-c", "echo ran"]);
    b.write();
    let id = support::unique_id("memfd-noexec");
    let script =
        "echo 2 > /proc/sys/vm/memfd_noexec && cat /proc/sys/vm/memfd_noexec && exec \"$@\"";
    let out = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", script, "sh"])
        .arg(&skiff.bin)
        .arg("--root")
        .arg(&skiff.root)
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &id])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        "2\nran\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    support::assert_nothing_left(&skiff, &id);
}
