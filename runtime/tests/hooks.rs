//! The six hook kinds: when they run, in which namespaces, what they read
//! on stdin, and what happens when they fail.

mod support;

use serde_json::{json, Value};
use support::{Bundle, Skiff};

/// A hook that appends "<name> <status> <id> <mount ns> <env> <created>" to
/// `log`, reading the state from stdin with busybox tools only.
fn logging_hook(name: &str, log: &str) -> Value {
    let script = format!(
        "state=$(cat); status=$(echo \"$state\" | sed 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/'); \
         id=$(echo \"$state\" | sed 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/'); \
         created=$(echo \"$state\" | sed 's/.*\"created\":\"\\([^\"]*\\)\".*/\\1/'); \
         echo \"{name} $status $id $(readlink /proc/self/ns/mnt) $HOOK_ENV $created\" >> {log}"
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": [format!("HOOK_ENV=env-{name}"), "PATH=/bin:/usr/bin"]})
}

fn read_log(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect()
}

#[test]
fn all_six_in_order_with_state_and_namespaces() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("hooks");
    let logdir = std::env::temp_dir().join(support::unique_id("hooklog"));
    std::fs::create_dir_all(&logdir).unwrap();
    let host_log = logdir.join("log");
    let host = host_log.to_str().unwrap();
    let mut b = Bundle::sh("sleep 1000");
    // startContainer runs after pivot_root: it sees the log through a bind.
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/hooklog", "type": "bind", "source": logdir, "options": ["rbind"]}),
    );
    b.config["hooks"] = json!({
        "prestart": [logging_hook("prestart", host)],
        "createRuntime": [logging_hook("createRuntime", host)],
        "createContainer": [logging_hook("createContainer", host)],
        "startContainer": [logging_hook("startContainer", "/hooklog/log")],
        "poststart": [logging_hook("poststart", host)],
        "poststop": [logging_hook("poststop", host)]
    });
    skiff.create(&b, &id).ok();
    let names = |log: &[Vec<String>]| log.iter().map(|l| l[0].clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&read_log(&host_log)),
        ["prestart", "createRuntime", "createContainer"]
    );
    let state = skiff.state(&id);
    let pid = state["pid"].as_i64().unwrap();
    let created = state["created"].as_str().unwrap().to_string();
    let container_mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .unwrap()
        .display()
        .to_string();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt")
        .unwrap()
        .display()
        .to_string();

    skiff.run(&["start", &id]).ok();
    for _ in 0..200 {
        if read_log(&host_log).len() >= 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    skiff.run(&["delete", "--force", &id]).ok();
    let log = read_log(&host_log);
    let mut order = names(&log);
    // startContainer runs in the init after start returned, poststart in
    // start itself: their relative order is not fixed.
    order[3..5].sort();
    assert_eq!(
        order,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "startContainer",
            "poststop"
        ]
    );
    for line in &log {
        let (kind, status, hook_id, mnt, env) = (&line[0], &line[1], &line[2], &line[3], &line[4]);
        assert_eq!(hook_id, &id, "{kind} got the container id on stdin");
        assert_eq!(env, &format!("env-{kind}"), "{kind} got its env");
        assert_eq!(line[5], created, "{kind} got the container's creation time");
        // The create hooks run after the environment is created (step 2 of
        // the lifecycle), which the spec's states name `created`; the
        // runtime-tools validation (hooks_stdin) checks it, crun agrees.
        let want_status = match kind.as_str() {
            "prestart" | "createRuntime" | "createContainer" | "startContainer" => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        assert_eq!(status, want_status, "{kind} status");
        let want_ns = if kind == "createContainer" || kind == "startContainer" {
            &container_mnt
        } else {
            &host_mnt
        };
        assert_eq!(mnt, want_ns, "{kind} runs in the wrong mount namespace");
    }
    support::assert_nothing_left(&skiff, &id);
    std::fs::remove_dir_all(&logdir).unwrap();
}

/// runtime-spec 1.3 (runtime.md#lifecycle, step 9): a failing poststart
/// hook fails `start`; the container is stopped and destroyed, and its
/// poststop hooks run (steps 12 and 13), whose own failure only warns.
#[test]
fn failing_poststart_stops_and_destroys_the_container() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("poststartfail");
    let log = std::env::temp_dir().join(support::unique_id("poststop"));
    let mut b = Bundle::sh("sleep 1000");
    b.config["hooks"] = json!({
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}],
        "poststop": [
            {"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", log.display())]},
            {"path": "/bin/false"}
        ]
    });
    skiff.create(&b, &id).ok();
    let pid = skiff.state(&id)["pid"].as_i64().unwrap();
    let start = skiff.run(&["start", &id]);
    let stopped = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    start.fails_with(&[
        "hooks.poststart[0]",
        "exit status: 3",
        "nope",
        "stopped and removed",
    ]);
    // Gone, or a zombie its new parent has not reaped yet.
    assert!(
        !support::process_is_running(pid),
        "the container's process {pid} survived"
    );
    assert!(
        stopped.contains("\"status\":\"stopped\""),
        "poststop saw {stopped:?}"
    );
    assert_ne!(
        skiff.run(&["state", &id]).code,
        0,
        "the container is still listed"
    );
    support::assert_nothing_left(&skiff, &id);

    // `run` fails the same way, with the hook's error once.
    let id = support::unique_id("poststartrun");
    let mut b = Bundle::sh("sleep 1000");
    b.config["hooks"] = json!({"poststart": [{"path": "/bin/false"}]});
    skiff
        .run_bundle(&b, &id)
        .fails_with(&["hooks.poststart[0]", "stopped and removed"]);
    support::assert_nothing_left(&skiff, &id);
}

#[test]
fn failing_create_hooks_abort() {
    require_root!();
    for kind in ["createRuntime", "createContainer"] {
        let skiff = Skiff::new();
        let id = support::unique_id("abort");
        let mut b = Bundle::new(&["true"]);
        b.config["hooks"] = json!({kind: [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]});
        skiff
            .create(&b, &id)
            .fails_with(&[&format!("hooks.{kind}[0]"), "exit status: 4"]);
        support::assert_nothing_left(&skiff, &id);
    }
}

#[test]
fn hook_timeout_aborts_create() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("timeout");
    let mut b = Bundle::new(&["true"]);
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "60"], "timeout": 1}]});
    let t = std::time::Instant::now();
    skiff
        .create(&b, &id)
        .fails_with(&["hooks.createRuntime[0]", "timed out after 1s"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    support::assert_nothing_left(&skiff, &id);
}

#[test]
fn failing_start_container_hook_stops_the_container() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("startfail");
    let marker = std::env::temp_dir().join(support::unique_id("never"));
    let mut b = Bundle::sh(&format!("touch {}", marker.display()));
    b.config["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    skiff.create(&b, &id).ok();
    skiff.run(&["start", &id]).ok();
    skiff.wait_status(&id, "stopped");
    assert!(!marker.exists(), "the process ran despite the failed hook");
    skiff.run(&["delete", &id]).ok();
    support::assert_nothing_left(&skiff, &id);
}

/// Poststart hooks run once the container's process is executed
/// (config.md#poststart): `start` waits for the init's execve, even when
/// startContainer hooks hold the init back.
#[test]
fn poststart_runs_after_the_process_is_executed() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("afterexec");
    let log = std::env::temp_dir().join(support::unique_id("poststart"));
    let mut b = Bundle::new(&["sleep", "1000"]);
    let script = format!(
        "pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/'); tr '\\0' ' ' < /proc/$pid/cmdline > {}",
        log.display()
    );
    b.config["hooks"] = json!({
        "startContainer": [{"path": "/bin/sleep", "args": ["sleep", "0.3"]}],
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]
    });
    skiff.create(&b, &id).ok();
    skiff.run(&["start", &id]).ok();
    let seen = std::fs::read_to_string(&log);
    skiff.run(&["delete", "--force", &id]).ok();
    let _ = std::fs::remove_file(&log);
    assert_eq!(seen.unwrap(), "sleep 1000 ", "the container's command line");
    support::assert_nothing_left(&skiff, &id);
}
