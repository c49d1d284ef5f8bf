//! skiff killed (SIGKILL, the runtime process alone) at every point of
//! `create`, `run`, `start`, `exec` and `delete`: whatever it had done,
//! `delete --force` afterwards leaves no state directory, cgroup, mount or
//! process. The points are found by sweeping the kill time over each
//! command's whole duration, measured first on this machine.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{assert_nothing_left, Bundle, Skiff};

/// How many kill points each command gets (SKIFF_FAULT_POINTS for more).
fn points() -> u32 {
    std::env::var("SKIFF_FAULT_POINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40)
}

/// Runs skiff with `args` and SIGKILLs it after `delay` (if it is still
/// running then). Returns whether the kill landed.
fn kill_after(skiff: &Skiff, args: &[&str], delay: Duration) -> bool {
    let mut child = skiff
        .command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let killed = child.try_wait().unwrap().is_none() && child.kill().is_ok();
    child.wait().unwrap();
    killed
}

/// The shortest time `args` takes when nothing interrupts it (a loaded
/// machine only adds to it, and the sweep must cover the command itself).
fn duration_of(
    skiff: &Skiff,
    mut args_for: impl FnMut(u32) -> Vec<String>,
    mut reset: impl FnMut(u32),
) -> Duration {
    (0..5)
        .map(|i| {
            let args = args_for(i);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let t = Instant::now();
            skiff.run(&args).ok();
            let d = t.elapsed();
            reset(i);
            d
        })
        .min()
        .unwrap_or_default()
}

/// No mount anywhere refers to the container's bundle or state.
fn assert_no_mounts(skiff: &Skiff, bundle: &Bundle) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for path in [&skiff.root, &bundle.dir, &bundle.rootfs] {
        let p = path.to_str().unwrap();
        assert!(
            !info.lines().any(|l| l.contains(p)),
            "a mount under {p} was left behind"
        );
    }
}

/// Sweeps SIGKILL over `command` (args built per id), then checks that
/// `delete --force` cleans up. `before` prepares each id (a created or
/// running container).
fn sweep(
    name: &str,
    bundle: &Bundle,
    before: impl Fn(&Skiff, &str),
    command: impl Fn(&str) -> Vec<String>,
) {
    let skiff = Skiff::new();
    let typical = duration_of(
        &skiff,
        |i| {
            let id = format!("{name}-probe-{i}");
            before(&skiff, &id);
            command(&id)
        },
        |i| skiff.cleanup(&format!("{name}-probe-{i}")),
    );
    let n = points();
    let mut landed = 0;
    for k in 0..n {
        let id = support::unique_id(name);
        before(&skiff, &id);
        // Over the whole command and a little past it.
        let delay = typical.mul_f64(1.2 * f64::from(k) / f64::from(n));
        let args = command(&id);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        landed += u32::from(kill_after(&skiff, &args, delay));
        let cleanup = skiff.run(&["delete", "--force", &id]);
        assert!(
            cleanup.code == 0 || cleanup.stderr.contains("does not exist"),
            "{name} killed after {delay:?}: delete --force failed: {}",
            cleanup.stderr
        );
        assert_nothing_left(&skiff, &id);
        assert_no_mounts(&skiff, bundle);
    }
    // The sweep must have hit the command while it ran, not only after.
    assert!(
        landed >= n / 4,
        "{name}: only {landed} of {n} kills landed (typical {typical:?})"
    );
}

fn bundle() -> Bundle {
    let b = Bundle::new(&["sleep", "60"]);
    b.write();
    b
}

fn create_args(b: &Bundle, id: &str) -> Vec<String> {
    ["create", "--bundle", b.dir.to_str().unwrap(), id]
        .map(String::from)
        .to_vec()
}

fn run_args(b: &Bundle, id: &str) -> Vec<String> {
    ["run", "-d", "--bundle", b.dir.to_str().unwrap(), id]
        .map(String::from)
        .to_vec()
}

/// Prepares `id` as a container made by `args_for` (create or run -d).
fn made_by<'a>(
    b: &'a Bundle,
    args_for: fn(&Bundle, &str) -> Vec<String>,
) -> impl Fn(&Skiff, &str) + 'a {
    move |s, id| {
        let args = args_for(b, id);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s.run(&args).ok();
    }
}

#[test]
fn killed_during_create() {
    require_root!();
    let b = bundle();
    sweep("k-create", &b, |_, _| {}, |id| create_args(&b, id));
}

#[test]
fn killed_during_run() {
    require_root!();
    let b = bundle();
    sweep("k-run", &b, |_, _| {}, |id| run_args(&b, id));
}

#[test]
fn killed_during_start() {
    require_root!();
    let b = bundle();
    let created = made_by(&b, create_args);
    sweep("k-start", &b, created, |id| vec!["start".into(), id.into()]);
}

#[test]
fn killed_during_exec() {
    require_root!();
    let b = bundle();
    let running = made_by(&b, run_args);
    sweep("k-exec", &b, running, |id| {
        ["exec", id, "sh", "-c", "sleep 0.01"]
            .map(String::from)
            .to_vec()
    });
}

#[test]
fn killed_during_delete() {
    require_root!();
    let b = bundle();
    let running = made_by(&b, run_args);
    sweep("k-delete", &b, running, |id| {
        vec!["delete".into(), "--force".into(), id.into()]
    });
}
