//! `linux.resources` enforced by the kernel, and the commands that work on
//! a live container's cgroup: pause/resume, kill --all, update, events, ps.
//! Every assertion is on what the container experiences or what the host's
//! cgroup files say, never on skiff's own report of itself alone.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{assert_nothing_left, Bundle, Skiff};

/// How long a wait for something in a container may take before the test
/// fails: generous, because the pure cgroup v2 runs are in a TCG guest
/// that a busy host slows down many times.
const PATIENCE: Duration = Duration::from_secs(60);

/// True on a pure cgroup v2 host.
fn unified() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The host path of one of the container's cgroup files: `v1` in the
/// `controller` hierarchy, or `v2` in the unified one.
fn cgroup_file(id: &str, controller: &str, v1: &str, v2: &str) -> PathBuf {
    if unified() {
        PathBuf::from("/sys/fs/cgroup/skiff").join(id).join(v2)
    } else {
        PathBuf::from("/sys/fs/cgroup")
            .join(controller)
            .join("skiff")
            .join(id)
            .join(v1)
    }
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// A memory limit with no swap on top, on either cgroup version.
fn memory_limit(bytes: i64) -> Value {
    json!({"limit": bytes, "swap": bytes})
}

fn stats(skiff: &Skiff, id: &str) -> Value {
    let out = skiff.run(&["events", "--stats", id]).ok();
    let event: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], id);
    event["data"].clone()
}

#[test]
fn memory_limit_oom_kills_the_process() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("oom");
    // dd holds a 128 MiB buffer: far above the 32 MiB limit.
    let mut bundle = Bundle::new(&["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"]);
    bundle.config["linux"]["resources"] = json!({"memory": memory_limit(32 << 20)});
    let run = skiff.run_bundle(&bundle, &id);
    assert_eq!(run.code, 137, "SIGKILLed by the OOM killer: {}", run.stderr);
    assert_nothing_left(&skiff, &id);

    // The same program fits without the limit.
    let id = support::unique_id("nooom");
    bundle.config["linux"]["resources"] = json!({});
    skiff.run_bundle(&bundle, &id).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn events_reports_an_oom_kill() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("oomev");
    let mut bundle = Bundle::sh(
        "while [ ! -e /dev/shm/go ]; do sleep 0.05; done; \
         dd if=/dev/zero of=/dev/null bs=128M count=1; sleep 1000",
    );
    bundle.config["linux"]["resources"] = json!({"memory": memory_limit(32 << 20)});
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    let out = bundle.dir.join("events.out");
    let mut events = skiff
        .command(&["events", "--interval", "60s", &id])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    // The first stats line shows the stream is up before the OOM happens.
    let deadline = Instant::now() + PATIENCE;
    while !std::fs::read_to_string(&out).unwrap().contains("\"stats\"") {
        assert!(Instant::now() < deadline, "no stats event");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = skiff.state(&id)["pid"].as_i64().unwrap();
    std::fs::write(format!("/proc/{pid}/root/dev/shm/go"), "").unwrap();
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = std::fs::read_to_string(&out).unwrap();
        if text.contains("\"oom\"") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = events.kill();
    let _ = events.wait();
    let oom: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["type"] == "oom")
        .collect();
    assert_eq!(oom.len(), 1, "one oom event expected in:\n{text}");
    assert_eq!(oom[0]["id"], id.as_str());
    // The shell survived; dd was killed.
    assert_eq!(skiff.state(&id)["status"], "running");
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn pids_limit_caps_forks_and_ps_lists_them() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("pids");
    // A shell whose fork fails exits, so an inner one does the forking;
    // the outer one then becomes one more sleep.
    let mut bundle = Bundle::sh(
        "sh -c 'for i in $(seq 20); do sleep 1000 & done' 2>/dev/null; \
         touch /dev/shm/done; exec sleep 1000",
    );
    bundle.config["linux"]["resources"] = json!({"pids": {"limit": 8}});
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    assert_eq!(read(&cgroup_file(&id, "pids", "pids.max", "pids.max")), "8");
    // At most 8 at once (the two shells and 6 sleeps); once the inner
    // shell's fork fails it exits and the outer one execs a sleep, leaving
    // only sleeps. Twenty were asked for.
    let pid = skiff.state(&id)["pid"].as_i64().unwrap();
    let done = PathBuf::from(format!("/proc/{pid}/root/dev/shm/done"));
    let deadline = Instant::now() + PATIENCE;
    while !done.exists() {
        assert!(
            Instant::now() < deadline,
            "the forking shell never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let table = loop {
        let table = skiff.run(&["ps", &id, "-o", "pid,args"]).ok().stdout;
        let only_sleeps = table
            .lines()
            .skip(1)
            .all(|l| l.split_whitespace().skip(1).collect::<Vec<_>>() == ["sleep", "1000"]);
        if only_sleeps || Instant::now() > deadline {
            break table;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut lines = table.lines();
    assert!(lines.next().unwrap().contains("PID"), "{table}");
    let rows = lines.count();
    assert!(
        (2..8).contains(&rows),
        "fork failed before 20 sleeps: {table}"
    );
    let out = skiff.run(&["ps", "--format", "json", &id]).ok();
    let pids: Vec<i64> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(pids.len(), rows);
    let data = stats(&skiff, &id);
    assert_eq!(data["pids"]["current"], rows);
    assert_eq!(data["pids"]["limit"], 8);
    let events = cgroup_file(&id, "pids", "pids.events", "pids.events");
    assert_ne!(read(&events), "max 0", "the kernel refused forks");
    // The default table is ps -ef cut down to the container's processes.
    let full = skiff.run(&["ps", &id]).ok().stdout;
    assert!(full.lines().next().unwrap().contains("PID"), "{full}");
    assert_eq!(full.lines().count(), rows + 1, "{full}");

    skiff.run(&["kill", "--all", &id, "KILL"]).ok();
    skiff.wait_status(&id, "stopped");
    skiff.run(&["delete", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn pids_limit_zero_forbids_any_fork() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("pids0");
    // The init is the shell itself (no fork); its child cannot be born,
    // and busybox's shell gives up on the failed fork.
    let mut bundle = Bundle::sh("sleep 0 && echo forked");
    bundle.config["linux"]["resources"] = json!({"pids": {"limit": 0}});
    skiff.create(&bundle, &id).ok();
    assert_eq!(read(&cgroup_file(&id, "pids", "pids.max", "pids.max")), "0");
    skiff.run(&["delete", &id]).ok();
    assert_nothing_left(&skiff, &id);
    let run = skiff.run_bundle(&bundle, &id);
    assert_eq!(run.stdout, "", "{}", run.stderr);
    assert!(run.stderr.contains("can't fork"), "{}", run.stderr);
    assert_nothing_left(&skiff, &id);

    // A `pids` object without a limit sets none (the parent's stays).
    let id = support::unique_id("pids0");
    bundle.config["linux"]["resources"] = json!({"pids": {}});
    skiff.create(&bundle, &id).ok();
    assert_eq!(
        read(&cgroup_file(&id, "pids", "pids.max", "pids.max")),
        "max"
    );
    skiff.run(&["delete", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn cpu_quota_throttles_a_busy_loop() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("cpu");
    let mut bundle = Bundle::sh("while :; do :; done");
    bundle.config["linux"]["resources"] =
        json!({"cpu": {"quota": 20000, "period": 100000, "shares": 512}});
    bundle.write();
    let started = Instant::now();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    if unified() {
        assert_eq!(
            read(&cgroup_file(&id, "cpu", "", "cpu.max")),
            "20000 100000"
        );
    } else {
        assert_eq!(
            read(&cgroup_file(&id, "cpu", "cpu.cfs_quota_us", "")),
            "20000"
        );
        assert_eq!(read(&cgroup_file(&id, "cpu", "cpu.shares", "")), "512");
    }
    std::thread::sleep(Duration::from_millis(600));
    let data = stats(&skiff, &id);
    let wall = started.elapsed().as_nanos() as f64;
    let used = data["cpu"]["usage"]["total"].as_f64().unwrap();
    assert!(used > 0.0, "{data}");
    // 20% of one CPU, plus one period of slack.
    assert!(
        used < 0.2 * wall + 100e6,
        "used {used} ns of CPU in {wall} ns"
    );
    assert!(
        data["cpu"]["throttling"]["throttled_periods"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{data}"
    );
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn device_rules_decide_in_order_even_for_config_devices() {
    require_root!();
    let skiff = Skiff::new();
    // /dev/kmsg is one of the config's own devices (`linux.devices`); only
    // `linux.resources.devices` decides whether it may be opened (opening
    // to read needs CAP_SYSLOG too, which the process has). Nothing is
    // written to the kernel log: the opens are all that is tried.
    let mut bundle = Bundle::sh(
        "(: < /dev/kmsg) 2>/dev/null && printf r || printf -; \
         (: > /dev/kmsg) 2>/dev/null && printf w || printf -; \
         echo > /dev/null || echo ' no /dev/null'",
    );
    bundle.config["linux"]["devices"] =
        json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]);
    for set in ["bounding", "effective", "permitted"] {
        bundle.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYSLOG"));
    }
    let deny_all = json!({"allow": false, "access": "rwm"});
    let kmsg = |allow: bool, access: &str| json!({"allow": allow, "type": "c", "major": 1, "minor": 11, "access": access});
    for (rules, expect) in [
        (Some(json!([deny_all])), "--"),
        // No rules at all: runc's deny-all with its default devices.
        (None, "--"),
        (Some(json!([deny_all, kmsg(true, "w")])), "-w"),
        (
            Some(json!([deny_all, kmsg(true, "rw"), kmsg(false, "w")])),
            "r-",
        ),
        (
            Some(json!([
                deny_all,
                kmsg(true, "rw"),
                kmsg(false, "rw"),
                kmsg(true, "w")
            ])),
            "-w",
        ),
        (
            Some(json!([{"allow": true, "access": "rwm"}, kmsg(false, "r")])),
            "-w",
        ),
    ] {
        let id = support::unique_id("dev");
        match &rules {
            Some(r) => bundle.config["linux"]["resources"] = json!({"devices": r}),
            None => bundle.config["linux"]["resources"] = json!({}),
        }
        let run = skiff.run_bundle(&bundle, &id);
        assert_eq!(run.code, 0, "rules {rules:?}: {}", run.stderr);
        assert_eq!(run.stdout, expect, "rules {rules:?}");
        assert_nothing_left(&skiff, &id);
    }

    // A rule the device cgroup would silently ignore is refused.
    let id = support::unique_id("dev");
    bundle.config["linux"]["resources"] = json!({"devices": [
        deny_all,
        {"allow": true, "type": "c", "major": 1, "access": "rw"},
        kmsg(false, "w")
    ]});
    skiff
        .run_bundle(&bundle, &id)
        .fails_with(&["linux.resources.devices[2]", "c 1:* rw"]);
    assert_nothing_left(&skiff, &id);

    // mknod stays allowed for every device (runc's `c *:* m`), opening
    // what was made does not.
    let id = support::unique_id("dev");
    bundle.config["process"]["args"] = json!([
        "sh",
        "-c",
        "mknod /dev/k c 1 11 && if echo > /dev/k; then exit 12; fi"
    ]);
    bundle.config["linux"]["resources"] = json!({"devices": [deny_all]});
    for set in ["bounding", "effective", "permitted"] {
        bundle.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
    }
    let run = skiff.run_bundle(&bundle, &id);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("/dev/k: Operation not permitted"),
        "{}",
        run.stderr
    );
    assert_nothing_left(&skiff, &id);
}

#[test]
fn pause_freezes_and_resume_thaws() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("pause");
    let bundle = Bundle::sh("i=0; while :; do i=$((i+1)); echo $i > /dev/shm/n; sleep 0.01; done");
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    let pid = skiff.state(&id)["pid"].as_i64().unwrap();
    let counter = PathBuf::from(format!("/proc/{pid}/root/dev/shm/n"));
    let count = || -> u64 { read(&counter).parse().unwrap_or(0) };
    std::thread::sleep(Duration::from_millis(100));

    skiff.run(&["pause", &id]).ok();
    assert_eq!(skiff.state(&id)["status"], "paused");
    let list = skiff.run(&["list", "--format", "json"]).ok();
    assert!(list.stdout.contains("\"paused\""), "{}", list.stdout);
    let frozen = count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), frozen, "a paused container makes no progress");
    skiff
        .run(&["pause", &id])
        .fails_with(&["cannot pause a container that is paused"]);
    skiff
        .run(&["delete", &id])
        .fails_with(&["not stopped: paused"]);
    skiff
        .run(&["start", &id])
        .fails_with(&["cannot start a container that is paused"]);

    skiff.run(&["resume", &id]).ok();
    assert_eq!(skiff.state(&id)["status"], "running");
    std::thread::sleep(Duration::from_millis(300));
    assert!(count() > frozen, "resumed container runs again");
    skiff
        .run(&["resume", &id])
        .fails_with(&["container not paused"]);

    // A paused container can be force-deleted: it is thawed to die.
    skiff.run(&["pause", &id]).ok();
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn kill_all_reaches_every_process() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("killall");
    // The shell ignores TERM; its children do not.
    let bundle = Bundle::sh("sleep 1000 & sleep 1000 & trap '' TERM; wait; wait; sleep 1000");
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    let count = |skiff: &Skiff| -> usize {
        let out = skiff.run(&["ps", "--format", "json", &id]).ok();
        serde_json::from_str::<Vec<i64>>(&out.stdout).unwrap().len()
    };
    let deadline = Instant::now() + PATIENCE;
    while count(&skiff) < 3 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    skiff.run(&["kill", "--all", &id, "TERM"]).ok();
    // Both sleeps died; the shell ignored TERM and became a new sleep.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let table = skiff.run(&["ps", &id, "-o", "pid,args"]).ok().stdout;
        if table.matches("sleep 1000").count() == 1 && table.lines().count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{table}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(skiff.state(&id)["status"], "running");
    skiff.run(&["kill", "--all", &id, "KILL"]).ok();
    skiff.wait_status(&id, "stopped");
    skiff.run(&["kill", "--all", &id, "KILL"]).ok();
    skiff.run(&["delete", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn update_changes_live_limits() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("update");
    let mut bundle = Bundle::sh("sleep 1000");
    bundle.config["linux"]["resources"] =
        json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 10}});
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    let mem = cgroup_file(&id, "memory", "memory.limit_in_bytes", "memory.max");
    let pids = cgroup_file(&id, "pids", "pids.max", "pids.max");
    assert_eq!(read(&mem), (64u64 << 20).to_string());

    skiff
        .run(&[
            "update",
            "--memory",
            "128m",
            "--pids-limit",
            "30",
            "--cpu-quota",
            "50000",
            "--cpu-period",
            "100000",
            &id,
        ])
        .ok();
    assert_eq!(read(&mem), (128u64 << 20).to_string());
    assert_eq!(read(&pids), "30");
    if unified() {
        assert_eq!(
            read(&cgroup_file(&id, "cpu", "", "cpu.max")),
            "50000 100000"
        );
    } else {
        assert_eq!(
            read(&cgroup_file(&id, "cpu", "cpu.cfs_quota_us", "")),
            "50000"
        );
    }

    // A resources file; fields it does not name stay as they are.
    let file = bundle.dir.join("resources.json");
    std::fs::write(&file, r#"{"memory": {"limit": 100663296}}"#).unwrap();
    skiff
        .run(&["update", "--resources", file.to_str().unwrap(), &id])
        .ok();
    assert_eq!(read(&mem), "100663296");
    assert_eq!(read(&pids), "30");
    // 0 is a limit (runtime-spec 1.3, runc 1.4), -1 none, and a `pids`
    // object without a limit changes nothing.
    skiff.run(&["update", "--pids-limit", "0", &id]).ok();
    assert_eq!(read(&pids), "0");
    std::fs::write(&file, r#"{"pids": {}}"#).unwrap();
    skiff
        .run(&["update", "-r", file.to_str().unwrap(), &id])
        .ok();
    assert_eq!(read(&pids), "0");
    skiff.run(&["update", "--pids-limit", "-1", &id]).ok();
    assert_eq!(read(&pids), "max");

    // checkBeforeUpdate refuses a limit below what is already in use.
    std::fs::write(
        &file,
        r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
    )
    .unwrap();
    skiff
        .run(&["update", "-r", file.to_str().unwrap(), &id])
        .fails_with(&["linux.resources.memory.limit", "checkBeforeUpdate"]);
    assert_eq!(read(&mem), "100663296");
    std::fs::write(
        &file,
        r#"{"memory": {"limit": 83886080, "checkBeforeUpdate": true}}"#,
    )
    .unwrap();
    skiff
        .run(&["update", "-r", file.to_str().unwrap(), &id])
        .ok();
    assert_eq!(read(&mem), "83886080");
    skiff.run(&["update", "--cpu-shares", "256", &id]).ok();

    std::fs::write(&file, r#"{"memory": {"limit": "lots"}}"#).unwrap();
    skiff
        .run(&["update", "-r", file.to_str().unwrap(), &id])
        .fails_with(&["resources.memory.limit"]);
    // A usage error, reported by the argument parser as runc's is.
    let bad = skiff.run(&["update", "--memory", "12x", &id]);
    assert!(bad.code != 0 && bad.stderr.contains("--memory") && bad.stderr.contains("12x"));
    skiff
        .run(&["update", "--cpuset-cpus", "0-4096", &id])
        .fails_with(&["linux.resources.cpu.cpus"]);

    skiff.run(&["kill", &id, "KILL"]).ok();
    skiff.wait_status(&id, "stopped");
    skiff
        .run(&["update", "--memory", "64m", &id])
        .fails_with(&["container not running"]);
    skiff.run(&["delete", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn update_back_to_unlimited_memory() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("unlimit");
    let mut bundle = Bundle::sh("sleep 1000");
    bundle.config["linux"]["resources"] = json!({"memory": memory_limit(64 << 20)});
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    let mem = cgroup_file(&id, "memory", "memory.limit_in_bytes", "memory.max");
    // v1 keeps memory below memory+swap: both limits go, swap first.
    skiff.run(&["update", "--memory", "-1", &id]).ok();
    if unified() {
        assert_eq!(read(&mem), "max");
    } else {
        let unlimited = read(&PathBuf::from(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ));
        assert_eq!(read(&mem), unlimited);
        let memsw = cgroup_file(&id, "memory", "memory.memsw.limit_in_bytes", "");
        if memsw.exists() {
            assert_eq!(read(&memsw), unlimited);
        }
    }
    skiff.run(&["update", "--memory", "32m", &id]).ok();
    assert_eq!(read(&mem), (32u64 << 20).to_string());
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

#[test]
fn stats_report_real_usage() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("stats");
    // 8 MiB of shared memory touched: charged to the container.
    let mut bundle = Bundle::sh(
        "dd if=/dev/zero of=/dev/shm/blob bs=1M count=8 2>/dev/null; touch /dev/shm/ready; sleep 1000",
    );
    bundle.config["linux"]["resources"] = json!({"memory": {"limit": 256 << 20}});
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    let pid = skiff.state(&id)["pid"].as_i64().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !PathBuf::from(format!("/proc/{pid}/root/dev/shm/ready")).exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let data = stats(&skiff, &id);
    let usage = data["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(usage >= 8 << 20, "{data}");
    assert_eq!(data["memory"]["usage"]["limit"], 256u64 << 20);
    assert!(data["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
    assert!(data["pids"]["current"].as_u64().unwrap() >= 1);
    skiff.run(&["delete", "--force", &id]).ok();
    skiff
        .run(&["events", "--stats", &id])
        .fails_with(&["does not exist"]);
    assert_nothing_left(&skiff, &id);
}

#[test]
fn bad_resources_fail_cleanly() {
    require_root!();
    let skiff = Skiff::new();
    for (resources, field) in [
        (
            json!({"cpu": {"cpus": "0-4096"}}),
            "linux.resources.cpu.cpus",
        ),
        (json!({"cpu": {"mems": "7"}}), "linux.resources.cpu.mems"),
        (
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]}),
            "linux.resources.hugepageLimits.pageSize",
        ),
    ] {
        let id = support::unique_id("badres");
        let mut bundle = Bundle::sh("true");
        bundle.config["linux"]["resources"] = resources;
        skiff.run_bundle(&bundle, &id).fails_with(&[field]);
        assert_nothing_left(&skiff, &id);
    }
}

/// The v1 controllers whose hierarchies this host mounts, from the
/// super options of its `cgroup` mounts.
fn mounted_v1_controllers() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split_once(" - cgroup "))
        .flat_map(|(_, rest)| {
            let opts = rest.split_whitespace().nth(1).unwrap_or_default();
            opts.split(',').map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

/// runtime-spec, runtime.md "Lifecycle" step 2: an environment the runtime
/// cannot create is an error. A limit for a v1 controller this host does
/// not mount (net_cls, net_prio or rdma here, and hugetlb, which this
/// hybrid host's cgroup2 mount offers only at its root) is refused by
/// name, as runc and crun refuse it, at create and at update; the update
/// writes none of the other fields it carries. skiff used to skip such a
/// field with a warning and run the container without the limit.
#[test]
fn limits_of_a_controller_the_host_lacks_are_refused() {
    require_root!();
    if unified() {
        let why = "net_cls, net_prio and rdma limits are v1 hierarchies' (cgroup v2 has no net_cls or net_prio)";
        assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("SKIPPED limits_of_a_controller_the_host_lacks_are_refused: {why}");
        return;
    }
    let mounted = mounted_v1_controllers();
    let candidates = [
        (
            "net_cls",
            "linux.resources.network.classID",
            json!({"network": {"classID": 1048577}}),
        ),
        (
            "net_prio",
            "linux.resources.network.priorities",
            json!({"network": {"priorities": [{"name": "lo", "priority": 5}]}}),
        ),
        (
            "rdma",
            "linux.resources.rdma",
            json!({"rdma": {"mlx5_0": {"hcaHandles": 3}}}),
        ),
    ];
    let mut absent: Vec<_> = candidates
        .into_iter()
        .filter(|(c, _, _)| !mounted.iter().any(|m| m == c))
        .collect();
    // A hybrid host's cgroup2 mount may offer hugetlb at its root without
    // enabling it for the cgroups below (this host's does): skiff enables
    // nothing in a cgroup it did not make, so there is no hugetlb either.
    let unified_hugetlb = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.subtree_control")
        .is_ok_and(|s| s.split_whitespace().any(|c| c == "hugetlb"));
    let two_mb = std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if two_mb && !unified_hugetlb && !mounted.iter().any(|m| m == "hugetlb") {
        absent.push((
            "hugetlb",
            "linux.resources.hugepageLimits",
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 30}]}),
        ));
    }
    if absent.is_empty() {
        let why = "this host mounts net_cls, net_prio and rdma; the refusal needs one it lacks";
        assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("SKIPPED limits_of_a_controller_the_host_lacks_are_refused: {why}");
        return;
    }
    let skiff = Skiff::new();
    for (controller, field, resources) in &absent {
        let id = support::unique_id("nocontroller");
        let mut bundle = Bundle::sh("true");
        bundle.config["linux"]["resources"] = resources.clone();
        skiff
            .run_bundle(&bundle, &id)
            .fails_with(&[field, controller, "not available"]);
        assert_nothing_left(&skiff, &id);
    }

    let (controller, field, resources) = &absent[0];
    let id = support::unique_id("nocontroller");
    let bundle = Bundle::sh("sleep 1000");
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    let pids = cgroup_file(&id, "pids", "pids.max", "pids.max");
    assert_eq!(read(&pids), "max");
    let mut update = resources.clone();
    update["pids"] = json!({"limit": 50});
    let file = bundle.dir.join("resources.json");
    std::fs::write(&file, update.to_string()).unwrap();
    skiff
        .run(&["update", "-r", file.to_str().unwrap(), &id])
        .fails_with(&[field, controller]);
    assert_eq!(read(&pids), "max", "the refused update changed pids.max");
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

/// A loop device over a scratch file, detached on drop: a block device
/// the tests may read and throttle (the host's own disks are off limits).
struct LoopDevice {
    path: String,
    major: u32,
    minor: u32,
}

impl LoopDevice {
    fn new(backing: &std::path::Path) -> LoopDevice {
        std::fs::write(backing, vec![0u8; 4 << 20]).unwrap();
        let free = std::process::Command::new("losetup")
            .arg("-f")
            .output()
            .unwrap();
        let path = String::from_utf8_lossy(&free.stdout).trim().to_string();
        assert!(
            free.status.success() && !path.is_empty(),
            "losetup -f: {free:?}"
        );
        let attach = std::process::Command::new("losetup")
            .arg(&path)
            .arg(backing)
            .status()
            .unwrap();
        assert!(attach.success(), "losetup {path} {}", backing.display());
        let name = path.trim_start_matches("/dev/");
        let dev = read(&PathBuf::from(format!("/sys/block/{name}/dev")));
        let (major, minor) = dev.split_once(':').unwrap();
        LoopDevice {
            path,
            major: major.parse().unwrap(),
            minor: minor.parse().unwrap(),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.path)
            .status();
    }
}

/// Seconds between the two /proc/uptime readings the container printed
/// around its dd.
fn dd_seconds(stdout: &str) -> f64 {
    let v: Vec<f64> = stdout
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "no timing in the output: {stdout:?}");
    v[1] - v[0]
}

#[test]
fn io_throttle_limits_reads() {
    require_root!();
    let skiff = Skiff::new();
    let id = support::unique_id("io");
    let mut bundle = Bundle::new(&["true"]);
    let dev = LoopDevice::new(&bundle.dir.join("disk.img"));
    // 1.5 MiB read with O_DIRECT (past the page cache) at 512 KiB/s.
    bundle.config["process"]["args"] = json!([
        "sh",
        "-c",
        "read s _ < /proc/uptime; \
         dd if=/dev/disk of=/dev/null bs=64k count=24 iflag=direct 2>/dev/null; \
         read e _ < /proc/uptime; echo $s $e"
    ]);
    bundle.config["linux"]["devices"] =
        json!([{"path": "/dev/disk", "type": "b", "major": dev.major, "minor": dev.minor}]);
    // The device cgroup must let the container read it.
    let readable = json!([{"allow": true, "type": "b", "major": dev.major, "minor": dev.minor, "access": "r"}]);
    bundle.config["linux"]["resources"] = json!({"devices": readable, "blockIO": {"throttleReadBpsDevice": [
        {"major": dev.major, "minor": dev.minor, "rate": 512 << 10}
    ]}});
    // Timed inside the container: its set-up time, which varies a lot in
    // the slow TCG guest, stays out of the comparison.
    let throttled = dd_seconds(&skiff.run_bundle(&bundle, &id).ok().stdout);
    assert_nothing_left(&skiff, &id);

    let id = support::unique_id("io");
    bundle.config["linux"]["resources"] = json!({"devices": readable});
    let free = dd_seconds(&skiff.run_bundle(&bundle, &id).ok().stdout);
    assert_nothing_left(&skiff, &id);
    // At 512 KiB/s, 1.5 MiB needs well over a second (the kernel lets the
    // first slice through at once); unthrottled it is a moment.
    assert!(
        throttled > 1.5 && throttled > free * 3.0,
        "dd took {throttled} s throttled, {free} s unthrottled"
    );

    // The limit is in the cgroup file while the container lives.
    let id = support::unique_id("io");
    bundle.config["process"]["args"] = json!(["sleep", "1000"]);
    bundle.config["linux"]["resources"] = json!({"devices": readable, "blockIO": {"throttleReadBpsDevice": [
        {"major": dev.major, "minor": dev.minor, "rate": 512 << 10}
    ]}});
    bundle.write();
    skiff
        .run(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id])
        .ok();
    let file = cgroup_file(&id, "blkio", "blkio.throttle.read_bps_device", "io.max");
    let expect = if unified() {
        format!(
            "{}:{} rbps=524288 wbps=max riops=max wiops=max",
            dev.major, dev.minor
        )
    } else {
        format!("{}:{} 524288", dev.major, dev.minor)
    };
    assert_eq!(read(&file), expect);

    // `update` sets per-device iops (runc 1.3.3/1.4) and keeps the rest.
    let update = bundle.dir.join("resources.json");
    std::fs::write(
        &update,
        json!({"blockIO": {
            "throttleReadIOPSDevice": [{"major": dev.major, "minor": dev.minor, "rate": 300}],
            "throttleWriteIOPSDevice": [{"major": dev.major, "minor": dev.minor, "rate": 200}]
        }})
        .to_string(),
    )
    .unwrap();
    skiff
        .run(&["update", "-r", update.to_str().unwrap(), &id])
        .ok();
    let dev_id = format!("{}:{}", dev.major, dev.minor);
    if unified() {
        assert_eq!(
            read(&file),
            format!("{dev_id} rbps=524288 wbps=max riops=300 wiops=200")
        );
    } else {
        assert_eq!(read(&file), expect);
        let iops = |f: &str| read(&cgroup_file(&id, "blkio", f, ""));
        assert_eq!(
            iops("blkio.throttle.read_iops_device"),
            format!("{dev_id} 300")
        );
        assert_eq!(
            iops("blkio.throttle.write_iops_device"),
            format!("{dev_id} 200")
        );
    }
    // A per-device weight needs an I/O scheduler with weights (BFQ or
    // CFQ): written where the kernel has one, refused by name elsewhere.
    std::fs::write(
        &update,
        json!({"blockIO": {"weightDevice": [{"major": dev.major, "minor": dev.minor, "weight": 300}]}})
            .to_string(),
    )
    .unwrap();
    let weighted = skiff.run(&["update", "-r", update.to_str().unwrap(), &id]);
    let weight_file = [
        "blkio.bfq.weight_device",
        "blkio.weight_device",
        "io.bfq.weight",
        "io.weight",
    ]
    .iter()
    .map(|f| cgroup_file(&id, "blkio", f, f))
    .find(|p| p.exists());
    match weight_file {
        // io.weight holds the value converted to its own scale.
        Some(p) if weighted.code == 0 => {
            let lines = read(&p);
            assert!(lines.lines().any(|l| l.starts_with(&dev_id)), "{lines}")
        }
        _ => {
            weighted.fails_with(&["linux.resources.blockIO.weightDevice"]);
        }
    }
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}

/// A cgroup made by the test itself, as a pod manager or an earlier run
/// would leave it for a container: `rel` in one v1 hierarchy
/// (`controller`) or in the unified one. Thawed and removed on drop, its
/// children first.
struct ForeignCgroup {
    top: PathBuf,
    dir: PathBuf,
}

impl ForeignCgroup {
    fn new(controller: &str, rel: &str) -> ForeignCgroup {
        let mount = if unified() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup").join(controller)
        };
        let dir = mount.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        let top = mount.join(rel.split('/').next().unwrap());
        ForeignCgroup { top, dir }
    }

    /// Freezes `dir` (the whole cgroup, or `sub` within it).
    fn freeze(&self, sub: &str) {
        let dir = self.dir.join(sub);
        if unified() {
            std::fs::write(dir.join("cgroup.freeze"), "1").unwrap();
        } else {
            std::fs::write(dir.join("freezer.state"), "FROZEN").unwrap();
        }
    }
}

impl Drop for ForeignCgroup {
    fn drop(&mut self) {
        let mut dirs = vec![self.top.clone()];
        let mut i = 0;
        while i < dirs.len() {
            let (file, value) = if unified() {
                ("cgroup.freeze", "0")
            } else {
                ("freezer.state", "THAWED")
            };
            let _ = std::fs::write(dirs[i].join(file), value);
            for e in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A process of the test's own, killed however the test ends.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The cgroup directories named `top` in every hierarchy of the host.
fn dirs_named(top: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path().join(top))
        .collect();
    out.push(PathBuf::from("/sys/fs/cgroup").join(top));
    out.into_iter().filter(|d| d.is_dir()).collect()
}

/// `skiff run -d`, failing the test instead of hanging when skiff does
/// not return.
fn run_detached_within(skiff: &Skiff, bundle: &Bundle, id: &str) -> support::Run {
    bundle.write();
    let out = bundle.dir.join(format!("{id}.stderr"));
    let mut child = skiff
        .command(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), id])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let report = support::process_tree_report(child.id());
            let _ = child.kill();
            let _ = child.wait();
            panic!("run -d did not return:\n{report}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    support::Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: std::fs::read_to_string(&out).unwrap_or_default(),
    }
}

#[test]
fn frozen_existing_cgroup_is_refused() {
    require_root!();
    let skiff = Skiff::new();
    let top = format!("skiff-test-frozen-{}", std::process::id());
    let mut bundle = Bundle::new(&["sleep", "1000"]);
    bundle.config["linux"]["cgroupsPath"] = json!(format!("/{top}/ctr"));
    // The container's own cgroup frozen, then only its parent: either
    // would hold the init forever.
    for frozen in ["ctr", ""] {
        let foreign = ForeignCgroup::new("freezer", &format!("{top}/{frozen}"));
        foreign.freeze("");
        let id = support::unique_id("frozen");
        run_detached_within(&skiff, &bundle, &id)
            .fails_with(&["container's cgroup is unexpectedly frozen"]);
        assert_nothing_left(&skiff, &id);
        // Only the test's own directories are left, not one more.
        let expect = if frozen.is_empty() {
            vec![]
        } else {
            vec![foreign.dir.clone()]
        };
        let left: Vec<PathBuf> = dirs_named(&top)
            .iter()
            .flat_map(|d| {
                std::fs::read_dir(d)
                    .unwrap()
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(left, expect, "frozen: {frozen:?}");
        assert_eq!(dirs_named(&top), vec![foreign.top.clone()]);
    }
}

#[test]
fn busy_existing_cgroup_gets_runcs_warning() {
    require_root!();
    let skiff = Skiff::new();
    let top = format!("skiff-test-busy-{}", std::process::id());
    let foreign = ForeignCgroup::new("pids", &top);
    let mut other = KilledOnDrop(
        std::process::Command::new("sleep")
            .arg("1000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::fs::write(foreign.dir.join("cgroup.procs"), other.0.id().to_string()).unwrap();
    let id = support::unique_id("busy");
    let mut bundle = Bundle::new(&["true"]);
    bundle.config["linux"]["cgroupsPath"] = json!(format!("/{top}"));
    let run = skiff.run_bundle(&bundle, &id).ok();
    assert!(
        run.stderr.contains("level=warning")
            && run
                .stderr
                .contains("container's cgroup is not empty: 1 process(es) found"),
        "{}",
        run.stderr
    );
    assert_nothing_left(&skiff, &id);
    // The cgroup and its process are not the container's to remove.
    assert_eq!(dirs_named(&top), vec![foreign.dir.clone()]);
    assert!(other.0.try_wait().unwrap().is_none());
}

#[test]
fn cpuset_is_filled_down_through_an_existing_parent() {
    require_root!();
    let skiff = Skiff::new();
    // A pod cgroup made by someone else: on v1 a new cpuset cgroup has no
    // cpus or mems, and nothing can join a child of it until they are set.
    let top = format!("skiff-test-pod-{}", std::process::id());
    let foreign = ForeignCgroup::new("cpuset", &top);
    let id = support::unique_id("pod");
    let mut bundle = Bundle::new(&["true"]);
    bundle.config["linux"]["cgroupsPath"] = json!(format!("/{top}/ctr"));
    skiff.run_bundle(&bundle, &id).ok();
    assert_nothing_left(&skiff, &id);
    if !unified() {
        let cpus = read(&foreign.dir.join("cpuset.cpus"));
        assert_eq!(
            cpus,
            read(&PathBuf::from("/sys/fs/cgroup/cpuset/cpuset.cpus"))
        );
    }
    assert_eq!(dirs_named(&top), vec![foreign.dir.clone()]);
}
