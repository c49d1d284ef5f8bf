//! runtime.md: the lifecycle, the operations and the state.

use std::time::Duration;

use serde_json::json;

use super::{create_fails, expect_eq, out_dir, wait_file};
use crate::ctx::{fail, Check, Ctx};
use crate::ensure;
use crate::suite::{case, Case, Level::*};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "lifecycle.create.status_created",
            "runtime.md#state",
            Must,
            create_status_created,
        ),
        case(
            "lifecycle.create.pid_file",
            "runc create --pid-file",
            Runc,
            create_pid_file,
        ),
        case(
            "lifecycle.state.required_fields",
            "runtime.md#state",
            Must,
            state_fields,
        ),
        case(
            "lifecycle.state.bundle_absolute",
            "runtime.md#state",
            Must,
            state_bundle_absolute,
        ),
        case(
            "lifecycle.create.program_not_run",
            "runtime.md#create",
            Must,
            program_not_run_before_start,
        ),
        case(
            "lifecycle.start.runs_program",
            "runtime.md#start",
            Must,
            start_runs_program,
        ),
        case(
            "lifecycle.start.status_running",
            "runtime.md#state",
            Must,
            start_status_running,
        ),
        case(
            "lifecycle.start.running_fails",
            "runtime.md#start",
            Must,
            start_running_fails,
        ),
        case(
            "lifecycle.start.stopped_fails",
            "runtime.md#start",
            Must,
            start_stopped_fails,
        ),
        case(
            "lifecycle.create.duplicate_id_fails",
            "runtime.md#create",
            Must,
            duplicate_id,
        ),
        case(
            "lifecycle.state.unknown_id_fails",
            "runtime.md#query-state",
            Must,
            unknown_state,
        ),
        case(
            "lifecycle.kill.default_sigterm",
            "runc kill",
            Runc,
            kill_default_sigterm,
        ),
        case(
            "lifecycle.kill.signal_by_number",
            "runtime.md#kill",
            Must,
            kill_by_number,
        ),
        case(
            "lifecycle.kill.signal_by_name",
            "runc kill",
            Runc,
            kill_by_name,
        ),
        case(
            "lifecycle.kill.created",
            "runtime.md#kill",
            Must,
            kill_created,
        ),
        case(
            "lifecycle.kill.stopped_fails",
            "runtime.md#kill",
            Must,
            kill_stopped_fails,
        ),
        case(
            "lifecycle.delete.stopped",
            "runtime.md#delete",
            Must,
            delete_stopped,
        ),
        case(
            "lifecycle.delete.running_fails",
            "runtime.md#delete",
            Must,
            delete_running_fails,
        ),
        case(
            "lifecycle.delete.created_allowed",
            "runc delete (containerd relies on it)",
            Runc,
            delete_created,
        ),
        case(
            "lifecycle.delete.force_running",
            "runc delete --force",
            Runc,
            delete_force,
        ),
        case(
            "lifecycle.delete.unknown_fails",
            "runtime.md#delete",
            Must,
            delete_unknown,
        ),
        case(
            "lifecycle.stopped_after_exit",
            "runtime.md#lifecycle",
            Must,
            stopped_after_exit,
        ),
        case(
            "lifecycle.state.pid_zero_when_stopped",
            "runc state",
            Runc,
            pid_zero_when_stopped,
        ),
        case("lifecycle.run.exit_code", "runc run", Runc, run_exit_code),
        case(
            "lifecycle.run.signal_exit_code",
            "runc run",
            Runc,
            run_signal_exit_code,
        ),
        case(
            "lifecycle.create.failure_leaves_nothing",
            "runtime.md#lifecycle",
            Must,
            failure_leaves_nothing,
        ),
        case("lifecycle.list.ids", "runc list", Runc, list_ids),
        case(
            "lifecycle.state.pid_is_the_process",
            "runtime.md#state",
            Must,
            pid_is_process,
        ),
        case(
            "lifecycle.state.annotations",
            "runtime.md#state",
            Must,
            state_annotations,
        ),
        case(
            "lifecycle.invalid_id_fails",
            "runc (ids are path components)",
            Runc,
            invalid_id,
        ),
        case(
            "lifecycle.oci_version_1_0",
            "config.md#specification-version",
            Must,
            oci_version_1_0,
        ),
    ]
}

fn sleeper(ctx: &Ctx) -> crate::ctx::Bundle {
    let mut b = ctx.bundle();
    b.args(&["/checker", "sleep", "600"]);
    b
}

fn create_status_created(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    expect_eq(
        "status",
        ctx.state(&id)?["status"].as_str(),
        Some("created"),
    )
}

fn create_pid_file(ctx: &mut Ctx) -> Check {
    let b = sleeper(ctx);
    let pid_file = b.dir.join("pid");
    let id = ctx.create(&b, &["--pid-file", &pid_file.display().to_string()])?;
    let written: i64 = std::fs::read_to_string(&pid_file)
        .map_err(|e| crate::ctx::Failure::Fail(e.to_string()))?
        .trim()
        .parse()
        .unwrap_or(-1);
    expect_eq(
        "pid file vs state.pid",
        written,
        ctx.state(&id)?["pid"].as_i64().unwrap_or(-2),
    )
}

fn state_fields(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    let s = ctx.state(&id)?;
    for field in ["ociVersion", "id", "status", "pid", "bundle"] {
        ensure!(!s[field].is_null(), "state has no {field}: {s}");
    }
    expect_eq("id", s["id"].as_str(), Some(id.as_str()))
}

fn state_bundle_absolute(ctx: &mut Ctx) -> Check {
    let b = sleeper(ctx);
    b.write();
    let id = ctx.id();
    // A relative --bundle must still be reported as an absolute path.
    let parent = b.dir.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let name = b
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ctx.rt_with(
        &["create", "--bundle", &name, &id],
        Duration::from_secs(60),
        |c| {
            c.current_dir(&parent);
        },
    )
    .ok("create with a relative bundle")?;
    let s = ctx.state(&id)?;
    expect_eq(
        "bundle",
        s["bundle"].as_str(),
        Some(b.dir.display().to_string().as_str()),
    )
}

fn marker_bundle(ctx: &mut Ctx) -> (crate::ctx::Bundle, std::path::PathBuf) {
    let mut b = ctx.bundle();
    let out = out_dir(ctx, &mut b);
    b.args(&[
        "sh",
        "-c",
        "echo ran > /out/marker; exec /checker sleep 600",
    ]);
    b.config["root"]["readonly"] = json!(true);
    (b, out.join("marker"))
}

fn program_not_run_before_start(ctx: &mut Ctx) -> Check {
    let (b, marker) = marker_bundle(ctx);
    let id = ctx.create(&b, &[])?;
    std::thread::sleep(Duration::from_millis(300));
    ensure!(!marker.exists(), "the program ran before start");
    let _ = id;
    Ok(())
}

fn start_runs_program(ctx: &mut Ctx) -> Check {
    let (b, marker) = marker_bundle(ctx);
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    expect_eq("marker", wait_file(&marker)?.as_str(), "ran\n")
}

fn start_status_running(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    expect_eq(
        "status",
        ctx.state(&id)?["status"].as_str(),
        Some("running"),
    )
}

fn start_running_fails(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ensure!(
        ctx.rt(&["start", &id]).code != 0,
        "a second start succeeded"
    );
    expect_eq(
        "status",
        ctx.state(&id)?["status"].as_str(),
        Some("running"),
    )
}

fn start_stopped_fails(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "exit", "0"]);
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ctx.wait_status(&id, "stopped")?;
    ensure!(
        ctx.rt(&["start", &id]).code != 0,
        "start of a stopped container succeeded"
    );
    Ok(())
}

fn duplicate_id(ctx: &mut Ctx) -> Check {
    let b = sleeper(ctx);
    let id = ctx.create(&b, &[])?;
    let pid = ctx.state(&id)?["pid"].clone();
    let out = ctx.rt(&["create", "--bundle", &b.dir.display().to_string(), &id]);
    ensure!(out.code != 0, "a second create with the same id succeeded");
    let s = ctx.state(&id)?;
    ensure!(
        s["pid"] == pid && s["status"] == "created",
        "the first container changed: {s}"
    );
    Ok(())
}

fn unknown_state(ctx: &mut Ctx) -> Check {
    ensure!(
        ctx.rt(&["state", "no-such-container"]).code != 0,
        "state of an unknown id succeeded"
    );
    Ok(())
}

fn signal_bundle(ctx: &mut Ctx) -> (crate::ctx::Bundle, std::path::PathBuf) {
    let mut b = ctx.bundle();
    let out = out_dir(ctx, &mut b);
    b.args(&["sh", "-c", "/checker wait-signal > /out/signal"]);
    (b, out.join("signal"))
}

fn kill_and_read(ctx: &mut Ctx, signal: Option<&str>) -> Check<String> {
    let (b, file) = signal_bundle(ctx);
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    // The checker prints "ready" once its signals are blocked.
    for _ in 0..1000 {
        if std::fs::read_to_string(&file)
            .unwrap_or_default()
            .contains("ready")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut args = vec!["kill", id.as_str()];
    if let Some(s) = signal {
        args.push(s);
    }
    ctx.rt(&args).ok("kill")?;
    for _ in 0..1000 {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("signal ")) {
            return Ok(line.to_string());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    fail("the process never reported a signal")
}

fn kill_default_sigterm(ctx: &mut Ctx) -> Check {
    expect_eq("signal", kill_and_read(ctx, None)?.as_str(), "signal 15")
}

fn kill_by_number(ctx: &mut Ctx) -> Check {
    expect_eq(
        "signal",
        kill_and_read(ctx, Some("10"))?.as_str(),
        "signal 10",
    )
}

fn kill_by_name(ctx: &mut Ctx) -> Check {
    expect_eq(
        "signal",
        kill_and_read(ctx, Some("SIGUSR2"))?.as_str(),
        "signal 12",
    )
}

fn kill_created(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    ctx.rt(&["kill", &id, "KILL"])
        .ok("kill of a created container")?;
    ctx.wait_status(&id, "stopped")
}

fn kill_stopped_fails(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "exit", "0"]);
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ctx.wait_status(&id, "stopped")?;
    ensure!(
        ctx.rt(&["kill", &id, "TERM"]).code != 0,
        "kill of a stopped container succeeded"
    );
    Ok(())
}

fn delete_stopped(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "exit", "0"]);
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ctx.wait_status(&id, "stopped")?;
    ctx.rt(&["delete", &id]).ok("delete")?;
    ensure!(
        ctx.rt(&["state", &id]).code != 0,
        "state still works after delete"
    );
    Ok(())
}

fn delete_running_fails(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ensure!(
        ctx.rt(&["delete", &id]).code != 0,
        "delete of a running container succeeded"
    );
    expect_eq(
        "status",
        ctx.state(&id)?["status"].as_str(),
        Some("running"),
    )
}

fn delete_created(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
    ctx.rt(&["delete", &id])
        .ok("delete of a created container")?;
    ensure!(
        ctx.rt(&["state", &id]).code != 0,
        "the container is still there"
    );
    for _ in 0..200 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    fail("the init process survived delete")
}

fn delete_force(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ctx.rt(&["delete", "--force", &id]).ok("delete --force")?;
    ensure!(
        ctx.rt(&["state", &id]).code != 0,
        "the container is still there"
    );
    Ok(())
}

fn delete_unknown(ctx: &mut Ctx) -> Check {
    ensure!(
        ctx.rt(&["delete", "no-such-container"]).code != 0,
        "delete of an unknown id succeeded"
    );
    Ok(())
}

fn stopped_after_exit(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "exit", "3"]);
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ctx.wait_status(&id, "stopped")
}

fn pid_zero_when_stopped(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "exit", "0"]);
    let id = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    ctx.wait_status(&id, "stopped")?;
    expect_eq("pid", ctx.state(&id)?["pid"].as_i64(), Some(0))
}

fn run_exit_code(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "exit", "42"]);
    expect_eq("exit code", ctx.run(&b).code, 42)
}

fn run_signal_exit_code(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    // Outside a pid namespace the shell is not pid 1 and can kill itself.
    b.namespaces(&["mount"]);
    b.args(&["sh", "-c", "kill -9 $$"]);
    expect_eq("exit code", ctx.run(&b).code, 137)
}

fn failure_leaves_nothing(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/no/such/program"]);
    create_fails(ctx, &b)
}

fn list_ids(ctx: &mut Ctx) -> Check {
    let a = ctx.create(&sleeper(ctx), &[])?;
    let b = ctx.create(&sleeper(ctx), &[])?;
    let out = ctx.rt(&["list", "-q"]).ok("list -q")?;
    let ids: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        ids.contains(&a.as_str()) && ids.contains(&b.as_str()),
        "list -q gave {ids:?}"
    );
    let json = ctx
        .rt(&["list", "--format", "json"])
        .ok("list --format json")?;
    let v: serde_json::Value =
        serde_json::from_str(&json.stdout).map_err(|e| crate::ctx::Failure::Fail(e.to_string()))?;
    ensure!(v.as_array().is_some_and(|l| l.len() == 2), "list json: {v}");
    Ok(())
}

fn pid_is_process(ctx: &mut Ctx) -> Check {
    let id = ctx.create(&sleeper(ctx), &[])?;
    ctx.rt(&["start", &id]).ok("start")?;
    let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
    for _ in 0..200 {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).starts_with("/checker\0sleep") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    fail(format!("state.pid {pid} is not the container's process"))
}

fn state_annotations(ctx: &mut Ctx) -> Check {
    let mut b = sleeper(ctx);
    b.config["annotations"] = json!({"org.example.a": "b"});
    let id = ctx.create(&b, &[])?;
    expect_eq(
        "annotation",
        ctx.state(&id)?["annotations"]["org.example.a"].as_str(),
        Some("b"),
    )
}

fn invalid_id(ctx: &mut Ctx) -> Check {
    let b = sleeper(ctx);
    b.write();
    for id in ["../escape", "a/b"] {
        let out = ctx.rt(&["create", "--bundle", &b.dir.display().to_string(), id]);
        if out.code == 0 {
            let _ = ctx.rt(&["delete", "--force", id]);
            return fail(format!("create accepted the id {id:?}"));
        }
    }
    Ok(())
}

fn oci_version_1_0(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.config["ociVersion"] = json!("1.0.0");
    b.args(&["/checker", "exit", "0"]);
    let out = ctx.run(&b);
    ensure!(
        out.code == 0,
        "a 1.0.0 config was refused: {}",
        out.stderr.trim()
    );
    Ok(())
}
