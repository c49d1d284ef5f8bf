//! `exec`: a new process in a live container joins every namespace and the
//! cgroup of the container, gets the container's seccomp profile, runs as
//! the user, environment and directory asked for, and reports its exit
//! status like `run`.

mod support;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{assert_nothing_left, Bundle, Skiff};

/// Starts `bundle` detached and returns the init's pid.
fn start(skiff: &Skiff, bundle: &Bundle, id: &str) -> i64 {
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), id])
        .ok();
    skiff.state(id)["pid"].as_i64().unwrap()
}

fn ns_compare_script() -> &'static str {
    "for n in pid net mnt ipc uts cgroup user time; do \
       a=$(readlink /proc/1/ns/$n); b=$(readlink /proc/self/ns/$n); \
       [ \"$a\" = \"$b\" ] && echo \"same $n\" || echo \"diff $n $a $b\"; \
     done"
}

#[test]
fn joins_every_namespace_and_the_cgroup() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-ns");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.namespaces(&["pid", "network", "ipc", "uts", "mount", "cgroup", "time"]);
    b.config["hostname"] = json!("exec-host");
    let pid = start(&skiff, &b, &id);
    let out = skiff
        .run(&["exec", &id, "sh", "-c", ns_compare_script()])
        .ok()
        .stdout;
    assert!(!out.contains("diff"), "{out}");
    assert_eq!(out.lines().count(), 8, "{out}");
    // Inside, the process is a new pid in the container's pid namespace,
    // sees the container's hostname, and is in the container's cgroup.
    let out = skiff
        .run(&[
            "exec",
            &id,
            "sh",
            "-c",
            "echo $$; hostname; cat /proc/self/cgroup",
        ])
        .ok()
        .stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "1");
    assert!(lines[0].parse::<u32>().unwrap() < 100, "{out}");
    assert_eq!(lines[1], "exec-host");
    let host_view = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let exec_cgroups: Vec<&str> = lines[2..].to_vec();
    let init_cgroups: Vec<&str> = host_view.lines().collect();
    assert_eq!(exec_cgroups.len(), init_cgroups.len(), "{out}");
    let cgroup_procs = support::cgroup_dirs(&id)
        .into_iter()
        .map(|d| d.join("cgroup.procs"))
        .find(|p| p.exists())
        .unwrap();
    // A detached exec stays in the container's cgroup.
    let pid_file = b.dir.join("exec.pid");
    skiff
        .run(&[
            "exec",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sleep",
            "1000",
        ])
        .ok();
    let exec_pid = std::fs::read_to_string(&pid_file).unwrap();
    let procs = std::fs::read_to_string(&cgroup_procs).unwrap();
    assert!(
        procs.lines().any(|l| l == exec_pid),
        "{exec_pid} not in {procs}"
    );
    // In every hierarchy, the cgroup2 one of a hybrid host included.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{exec_pid}/cgroup")).unwrap(),
        host_view
    );
    let ns = |p: &str, n: &str| std::fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
    assert_eq!(ns(&exec_pid, "pid"), ns(&pid.to_string(), "pid"));
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
    assert!(
        !std::path::Path::new(&format!("/proc/{exec_pid}")).exists(),
        "the exec'd process died with the container"
    );
}

#[test]
fn joins_a_user_namespace() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-userns");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    start(&skiff, &b, &id);
    let out = skiff
        .run(&[
            "exec",
            &id,
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; readlink /proc/1/ns/user; readlink /proc/self/ns/user",
        ])
        .ok()
        .stdout;
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "0", "{out}");
    assert!(
        lines[1].split_whitespace().eq(["0", "100000", "65536"]),
        "{out}"
    );
    assert_eq!(lines[2], lines[3], "same user namespace: {out}");
    let out = skiff
        .run(&["exec", "--user", "1000", &id, "id", "-u"])
        .ok()
        .stdout;
    assert_eq!(out.trim(), "1000");
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn exit_codes_user_env_and_cwd() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-user");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.config["process"]["env"] = json!(["PATH=/bin", "KEEP=1", "FOO=old"]);
    start(&skiff, &b, &id);
    assert_eq!(skiff.run(&["exec", &id, "sh", "-c", "exit 7"]).code, 7);
    assert_eq!(
        skiff.run(&["exec", &id, "sh", "-c", "kill -TERM $$"]).code,
        128 + libc::SIGTERM
    );
    let out = skiff
        .run(&[
            "exec",
            "--user",
            "1000:1001",
            "--additional-gids",
            "2000",
            "--env",
            "FOO=bar",
            "--cwd",
            "/tmp",
            &id,
            "sh",
            "-c",
            "id -u; id -g; id -G; echo $FOO $KEEP; pwd",
        ])
        .ok()
        .stdout;
    assert_eq!(out, "1000\n1001\n1001 2000\nbar 1\n/tmp\n");
    // runc's status for an exec that failed to run its process.
    let missing = skiff
        .run(&["exec", &id, "no-such-program"])
        .fails_with(&["no-such-program", "not found"]);
    assert_eq!(missing.code, 255);
    skiff
        .run(&["exec", &id])
        .fails_with(&["a command is required"]);
    skiff
        .run(&["exec", "--user", "nobody", &id, "true"])
        .fails_with(&["--user", "nobody"]);
    skiff
        .run(&["exec", "--cwd", "relative", &id, "true"])
        .fails_with(&["process.cwd", "relative"]);
    skiff
        .run(&["exec", "no-such-container", "true"])
        .fails_with(&["does not exist"]);
    skiff.run(&["kill", &id, "KILL"]).ok();
    skiff.wait_status(&id, "stopped");
    skiff
        .run(&["exec", &id, "true"])
        .fails_with(&["cannot exec in a stopped container"]);
    skiff.run(&["delete", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn process_json_as_containerd_passes_it() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-proc");
    let b = Bundle::new(&["sleep", "1000"]);
    start(&skiff, &b, &id);
    let process = json!({
        "args": ["sh", "-c", "echo $GREETING; id -u; pwd; grep CapEff /proc/self/status; ulimit -n"],
        "env": ["PATH=/bin", "GREETING=hello"],
        "cwd": "/dev",
        "user": {"uid": 33, "gid": 33},
        "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": []},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 77, "soft": 66}],
        "noNewPrivileges": true
    });
    let file = b.dir.join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let out = skiff
        .run(&["exec", "--process", file.to_str().unwrap(), &id])
        .ok()
        .stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "hello");
    assert_eq!(lines[1], "33");
    assert_eq!(lines[2], "/dev");
    assert!(lines[3].ends_with("0000000000000000"), "{out}");
    assert_eq!(lines[4], "66");
    std::fs::write(
        &file,
        r#"{"args": ["true"], "cwd": "/", "user": {"uid": "x"}}"#,
    )
    .unwrap();
    skiff
        .run(&["exec", "-p", file.to_str().unwrap(), &id])
        .fails_with(&["process.user.uid"]);
    // What runc accepts: no user (or a null one) is uid 0, gid 0; no env
    // is an empty one.
    for process in [
        json!({"args": ["sh", "-c", "id -u; id -g; pwd"], "cwd": "/tmp"}),
        json!({"args": ["sh", "-c", "id -u; id -g; pwd"], "cwd": "/tmp", "user": null}),
    ] {
        std::fs::write(&file, process.to_string()).unwrap();
        let out = skiff
            .run(&["exec", "-p", file.to_str().unwrap(), &id])
            .ok()
            .stdout;
        assert_eq!(out, "0\n0\n/tmp\n", "{process}");
    }
    // runc requires cwd too; the error names the field and nothing else.
    for (process, field) in [
        (json!({"args": ["true"]}), "process.cwd: missing"),
        (
            json!({"args": ["true"], "cwd": "/", "rlimits": [{"hard": 1}]}),
            "process.rlimits[0].type: missing",
        ),
        (json!(["true"]), "process: not a JSON object"),
    ] {
        std::fs::write(&file, process.to_string()).unwrap();
        let run = skiff
            .run(&["exec", "-p", file.to_str().unwrap(), &id])
            .fails_with(&[field]);
        assert!(!run.stderr.contains("process.."), "{}", run.stderr);
    }
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn container_seccomp_profile_applies() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-seccomp");
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    start(&skiff, &b, &id);
    let run = skiff.run(&["exec", &id, "mkdir", "/dev/shm/x"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("Operation not permitted"),
        "{}",
        run.stderr
    );
    skiff.run(&["exec", &id, "touch", "/dev/shm/y"]).ok();
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn paused_container_needs_ignore_paused() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-paused");
    let b = Bundle::new(&["sleep", "1000"]);
    start(&skiff, &b, &id);
    skiff.run(&["pause", &id]).ok();
    // runc's status for an exec that failed, as for any exec failure.
    let refused = skiff
        .run(&["exec", &id, "true"])
        .fails_with(&["cannot exec in a paused container", "--ignore-paused"]);
    assert_eq!(refused.code, 255);
    // With --ignore-paused the process starts frozen and runs on resume.
    let out = b.dir.join("late.out");
    let mut late = skiff
        .command(&["exec", "--ignore-paused", &id, "echo", "ran"])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "frozen until resume"
    );
    skiff.run(&["resume", &id]).ok();
    assert!(late.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "ran\n");
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn console_socket_gets_a_pty_of_the_asked_size() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-tty");
    let b = Bundle::new(&["sleep", "1000"]);
    start(&skiff, &b, &id);
    let sock_path = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        skiff::terminal::recv_fd(conn.as_fd()).unwrap()
    });
    let process = json!({
        "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "terminal": true, "consoleSize": {"height": 21, "width": 77}
    });
    let file = b.dir.join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    skiff
        .run(&[
            "exec",
            "-d",
            "--console-socket",
            sock_path.to_str().unwrap(),
            "--process",
            file.to_str().unwrap(),
            &id,
        ])
        .ok();
    let (name, master) = accept.join().unwrap();
    assert!(name.starts_with("/dev/pts/"), "{name}");
    let mut master = std::fs::File::from(master);
    master.write_all(b"tty; stty size; exit 0\n").unwrap();
    let mut out = String::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(lines.contains(&name.as_str()), "{out}");
    assert!(lines.contains(&"21 77"), "{out}");
    skiff
        .run(&["exec", "-d", "-t", &id, "sh"])
        .fails_with(&["process.terminal", "--console-socket"]);
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn foreground_exec_forwards_signals() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-sig");
    let b = Bundle::new(&["sleep", "1000"]);
    start(&skiff, &b, &id);
    let mut exec = skiff
        .command(&[
            "exec",
            &id,
            "sh",
            "-c",
            "trap 'exit 42' TERM; touch /dev/shm/ready; while :; do sleep 0.05; done",
        ])
        .spawn()
        .unwrap();
    let pid = skiff.state(&id)["pid"].as_i64().unwrap();
    let marker = format!("/proc/{pid}/root/dev/shm/ready");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&marker).exists() {
        assert!(Instant::now() < deadline, "exec never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill with a child's pid and a plain signal.
    unsafe { libc::kill(exec.id() as i32, libc::SIGTERM) };
    assert_eq!(exec.wait().unwrap().code(), Some(42));
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn preserve_fds_reach_the_process() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-fds");
    let b = Bundle::new(&["sleep", "1000"]);
    start(&skiff, &b, &id);
    let file = b.dir.join("fd3");
    std::fs::write(&file, "through fd 3\n").unwrap();
    let f = std::fs::File::open(&file).unwrap();
    let mut cmd = skiff.command(&["exec", "--preserve-fds", "1", &id, "sh", "-c", "cat <&3"]);
    support::give_fd3(&mut cmd, &f);
    let out = cmd.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through fd 3\n");
    let state: Value = skiff.state(&id);
    assert_eq!(state["status"], "running");
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn cgroup_flag_starts_in_a_sub_cgroup() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-subcg");
    let b = Bundle::new(&["sleep", "1000"]);
    start(&skiff, &b, &id);
    // The sub-cgroup is made in the unified hierarchy (pure v2) or in the
    // pids one (v1).
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (container_dir, flag) = if v2 {
        (format!("/sys/fs/cgroup/skiff/{id}"), "sub")
    } else {
        (format!("/sys/fs/cgroup/pids/skiff/{id}"), "pids:sub")
    };
    let sub = std::path::Path::new(&container_dir).join("sub");
    std::fs::create_dir(&sub).unwrap();
    let pid_file = b.dir.join("sub.pid");
    skiff
        .run(&[
            "exec",
            "-d",
            "--cgroup",
            flag,
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sleep",
            "1000",
        ])
        .ok();
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let procs = std::fs::read_to_string(sub.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid), "{pid} not in {procs}");
    skiff
        .run(&["exec", "--cgroup", "missing", &id, "true"])
        .fails_with(&["--cgroup", "does not exist"]);
    skiff
        .run(&["exec", "--cgroup", "../escape", &id, "true"])
        .fails_with(&["--cgroup", "below the container"]);
    skiff.run(&["kill", "--all", &id, "KILL"]).ok();
    skiff.wait_status(&id, "stopped");
    // skiff removes only what it created: the sub-cgroup is the test's.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir(&sub).is_err() {
        assert!(Instant::now() < deadline, "sub-cgroup still busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    skiff.run(&["delete", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn pidfd_socket_receives_the_exec_process() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("exec-pidfd");
    let b = Bundle::new(&["sleep", "1000"]);
    start(&skiff, &b, &id);
    let sock = b.dir.join("pidfd.sock");
    let receiver = support::pidfd_receiver(&sock);
    let pid_file = b.dir.join("exec.pid");
    skiff
        .run(&[
            "exec",
            "-d",
            "--pidfd-socket",
            sock.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sleep",
            "1001",
        ])
        .ok();
    let (name, pidfd) = receiver.join().unwrap();
    // runc's data for an exec'd process.
    assert_eq!(name, "setns");
    let (pid, nspid) = support::pidfd_pids(&pidfd);
    let from_file: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, from_file);
    // Inside the container, its pid there is that process.
    let inside = nspid.last().unwrap();
    let cmdline = skiff
        .run(&["exec", &id, "cat", &format!("/proc/{inside}/cmdline")])
        .ok()
        .stdout;
    assert_eq!(cmdline, "sleep\x001001\x00");
    support::pidfd_signal(&pidfd, libc::SIGKILL);
    let gone = Instant::now();
    while support::process_is_running(pid) {
        assert!(gone.elapsed() < Duration::from_secs(5), "{pid} still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A socket nobody listens on: exec fails, as runc's, with 255.
    let out = skiff.run(&[
        "exec",
        "--pidfd-socket",
        b.dir.join("nobody.sock").to_str().unwrap(),
        &id,
        "true",
    ]);
    assert_eq!(out.code, 255, "{}", out.stderr);
    assert!(out.stderr.contains("--pidfd-socket"), "{}", out.stderr);
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}
