//! config.md#posix-platform-hooks and runtime.md#lifecycle: when each hook
//! runs, where, with what, and what its failure does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::{create_fails, expect_eq};
use crate::ctx::{fail, Bundle, Check, Ctx, Failure};
use crate::ensure;
use crate::suite::{case, Case, Level::*};

pub fn cases() -> Vec<Case> {
    vec![
        case("hooks.prestart.runs", "config.md#prestart", Must, |c| {
            runs(c, "prestart")
        }),
        case(
            "hooks.createRuntime.runs",
            "config.md#createruntime-hooks",
            Must,
            |c| runs(c, "createRuntime"),
        ),
        case(
            "hooks.createContainer.runs",
            "config.md#createcontainer-hooks",
            Must,
            |c| runs(c, "createContainer"),
        ),
        case(
            "hooks.startContainer.runs",
            "config.md#startcontainer-hooks",
            Must,
            |c| runs(c, "startContainer"),
        ),
        case("hooks.poststart.runs", "config.md#poststart", Must, |c| {
            runs(c, "poststart")
        }),
        case("hooks.poststop.runs", "config.md#poststop", Must, |c| {
            runs(c, "poststop")
        }),
        case("hooks.order", "runtime.md#lifecycle", Must, order),
        case(
            "hooks.create_hooks_before_create_returns",
            "runtime.md#lifecycle",
            Must,
            create_hooks_timing,
        ),
        case(
            "hooks.state_on_stdin",
            "runtime.md#state (hooks)",
            Must,
            state_stdin,
        ),
        case(
            "hooks.createContainer.container_mount_ns",
            "config.md#createcontainer-hooks",
            Must,
            |c| mount_ns(c, "createContainer", true),
        ),
        case(
            "hooks.startContainer.container_mount_ns",
            "config.md#startcontainer-hooks",
            Must,
            |c| mount_ns(c, "startContainer", true),
        ),
        case(
            "hooks.createRuntime.runtime_mount_ns",
            "config.md#createruntime-hooks",
            Must,
            |c| mount_ns(c, "createRuntime", false),
        ),
        case(
            "hooks.poststart.runtime_mount_ns",
            "config.md#poststart",
            Must,
            |c| mount_ns(c, "poststart", false),
        ),
        case(
            "hooks.env_and_args",
            "config.md#posix-platform-hooks",
            Must,
            env_args,
        ),
        case(
            "hooks.prestart.failure_aborts",
            "config.md#prestart",
            Must,
            |c| failure_aborts(c, "prestart"),
        ),
        case(
            "hooks.createRuntime.failure_aborts",
            "config.md#createruntime-hooks",
            Must,
            |c| failure_aborts(c, "createRuntime"),
        ),
        case(
            "hooks.createContainer.failure_aborts",
            "config.md#createcontainer-hooks",
            Must,
            |c| failure_aborts(c, "createContainer"),
        ),
        case(
            "hooks.poststart.failure_stops",
            "runtime.md#lifecycle",
            Must,
            poststart_failure,
        ),
        case(
            "hooks.poststop.failure_continues",
            "config.md#poststop",
            Must,
            poststop_failure,
        ),
        case(
            "hooks.timeout",
            "config.md#posix-platform-hooks",
            Must,
            timeout,
        ),
    ]
}

/// A hook appending its name, the status it read on stdin and its mount
/// namespace to `log` (a host path, or a container path for
/// startContainer). The state may come pretty-printed (crun 1.28 does):
/// it is joined into one line first.
fn log_hook(name: &str, log: &str) -> Value {
    let script = format!(
        "s=$(cat); st=$(echo \"$s\" | tr -d '\\n' | sed 's/.*\"status\": *\"\\([a-z]*\\)\".*/\\1/'); \
         echo \"{name} $st $(readlink /proc/self/ns/mnt)\" >> {log}"
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

struct Logged {
    bundle: Bundle,
    host_log: PathBuf,
}

fn logged(ctx: &Ctx, kinds: &[&str]) -> Logged {
    let mut bundle = ctx.bundle();
    let dir = ctx.dir.join("hooklog");
    let _ = std::fs::create_dir_all(&dir);
    let host_log = dir.join("log");
    bundle.mount(
        json!({"destination": "/hooklog", "type": "bind", "source": dir, "options": ["rbind"]}),
    );
    bundle.args(&["/checker", "sleep", "600"]);
    let mut hooks = serde_json::Map::new();
    for k in kinds {
        let log = if *k == "startContainer" {
            "/hooklog/log".to_string()
        } else {
            host_log.display().to_string()
        };
        hooks.insert(k.to_string(), json!([log_hook(k, &log)]));
    }
    bundle.config["hooks"] = Value::Object(hooks);
    Logged { bundle, host_log }
}

fn lines(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect()
}

fn wait_lines(path: &Path, n: usize) -> Vec<Vec<String>> {
    for _ in 0..1500 {
        let l = lines(path);
        if l.len() >= n {
            return l;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    lines(path)
}

/// Runs create, start, kill, delete of a logged bundle.
fn full_cycle(ctx: &mut Ctx, l: &Logged, expect: usize) -> Check<(Vec<Vec<String>>, String)> {
    let id = ctx.create(&l.bundle, &[])?;
    let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
    let mnt = std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    ctx.rt(&["start", &id]).ok("start")?;
    let before_stop =
        expect.saturating_sub(usize::from(l.bundle.config["hooks"]["poststop"].is_array()));
    wait_lines(&l.host_log, before_stop);
    ctx.rt(&["kill", &id, "KILL"]).ok("kill")?;
    ctx.wait_status(&id, "stopped")?;
    ctx.rt(&["delete", &id]).ok("delete")?;
    Ok((wait_lines(&l.host_log, expect), mnt))
}

fn runs(ctx: &mut Ctx, kind: &str) -> Check {
    let l = logged(ctx, &[kind]);
    let (log, _) = full_cycle(ctx, &l, 1)?;
    ensure!(
        log.iter().any(|e| e[0] == kind),
        "{kind} did not run: {log:?}"
    );
    Ok(())
}

fn order(ctx: &mut Ctx) -> Check {
    let kinds = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    let l = logged(ctx, &kinds);
    let (log, _) = full_cycle(ctx, &l, 6)?;
    let mut names: Vec<&str> = log.iter().map(|e| e[0].as_str()).collect();
    // startContainer runs in the container after start returns; poststart
    // in the runtime before it returns: either may come first.
    if names.len() == 6 {
        names[3..5].sort();
    }
    expect_eq(
        "order",
        names,
        vec![
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "startContainer",
            "poststop",
        ],
    )
}

fn create_hooks_timing(ctx: &mut Ctx) -> Check {
    let l = logged(ctx, &["prestart", "createRuntime", "createContainer"]);
    let _id = ctx.create(&l.bundle, &[])?;
    let names: Vec<String> = lines(&l.host_log)
        .into_iter()
        .map(|e| e[0].clone())
        .collect();
    expect_eq(
        "hooks done when create returned",
        names,
        vec!["prestart", "createRuntime", "createContainer"],
    )
}

fn state_stdin(ctx: &mut Ctx) -> Check {
    let l = logged(ctx, &["prestart", "createRuntime", "poststart", "poststop"]);
    let (log, _) = full_cycle(ctx, &l, 4)?;
    for e in &log {
        // runtime.md: `created` is "after step 2", where the environment
        // is created and before the create hooks run.
        let want = match e[0].as_str() {
            "prestart" | "createRuntime" => "created",
            "poststart" => "running",
            _ => "stopped",
        };
        expect_eq(&format!("{} status", e[0]), e[1].as_str(), want)?;
    }
    ensure!(log.len() == 4, "log {log:?}");
    Ok(())
}

fn mount_ns(ctx: &mut Ctx, kind: &str, container: bool) -> Check {
    let l = logged(ctx, &[kind]);
    let (log, mnt) = full_cycle(ctx, &l, 1)?;
    let entry = log
        .iter()
        .find(|e| e[0] == kind)
        .ok_or_else(|| Failure::Fail(format!("{kind} did not run")))?;
    let host = std::fs::read_link("/proc/self/ns/mnt")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let want = if container { mnt } else { host };
    expect_eq(
        &format!("{kind} mount namespace"),
        entry[2].as_str(),
        want.as_str(),
    )
}

fn env_args(ctx: &mut Ctx) -> Check {
    let out = ctx.dir.join("envargs");
    let mut b = ctx.bundle();
    b.args(&["/checker", "exit", "0"]);
    b.config["hooks"] = json!({"prestart": [{
        "path": "/bin/sh",
        "args": ["custom0", "-c", format!("echo \"$0 $X\" > {}", out.display())],
        "env": ["X=from-env"]
    }]});
    ctx.run(&b).ok("run")?;
    expect_eq(
        "hook saw",
        std::fs::read_to_string(&out).unwrap_or_default().trim(),
        "custom0 from-env",
    )
}

fn failure_aborts(ctx: &mut Ctx, kind: &str) -> Check {
    let mut b = ctx.bundle();
    b.config["hooks"] = json!({ kind: [{"path": "/bin/false"}] });
    create_fails(ctx, &b)
}

/// runtime-spec 1.3, lifecycle step 9: a failing poststart hook makes the
/// runtime generate an error and stop the container (then destroy it,
/// steps 12 and 13). Before 1.3 the spec asked for a warning only.
fn poststart_failure(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "sleep", "600"]);
    b.config["hooks"] = json!({"poststart": [{"path": "/bin/false"}]});
    let id = ctx.create(&b, &[])?;
    let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
    let out = ctx.rt(&["start", &id]);
    ensure!(
        out.code != 0,
        "start succeeded despite a failing poststart hook"
    );
    for _ in 0..500 {
        // Gone, or a zombie nobody has reaped yet.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z'))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = ctx
        .state(&id)
        .map(|s| s["status"].clone())
        .unwrap_or_default();
    fail(format!(
        "the container's process is still there after the failed poststart hook (status {status})"
    ))
}

fn poststop_failure(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "exit", "0"]);
    b.config["hooks"] = json!({"poststop": [{"path": "/bin/false"}]});
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ctx.wait_status(&id, "stopped")?;
    let _ = ctx.rt(&["delete", &id]);
    ensure!(
        ctx.rt(&["state", &id]).code != 0,
        "the container survived delete with a failing poststop hook"
    );
    Ok(())
}

fn timeout(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let t = std::time::Instant::now();
    create_fails(ctx, &b)?;
    ensure!(
        t.elapsed() < Duration::from_secs(15),
        "the hook was not stopped at its timeout ({:?})",
        t.elapsed()
    );
    Ok(())
}
