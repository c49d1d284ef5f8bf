//! The cases, one module per area of the spec, and the helpers they share.

mod cgroups;
mod devices;
mod hooks;
mod lifecycle;
mod misc;
mod mounts;
mod namespaces;
mod process;
mod seccomp;

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::ctx::{fail, Bundle, Check, Ctx, Failure};
use crate::suite::Case;

/// Every case, in a stable order.
pub fn all() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(lifecycle::cases());
    all.extend(process::cases());
    all.extend(mounts::cases());
    all.extend(namespaces::cases());
    all.extend(hooks::cases());
    all.extend(devices::cases());
    all.extend(cgroups::cases());
    all.extend(seccomp::cases());
    all.extend(misc::cases());
    all
}

/// Runs a bundle edited by `edit` and returns the checker's report.
pub fn report_with(ctx: &mut Ctx, edit: impl FnOnce(&mut Bundle)) -> Check<Value> {
    let mut b = ctx.bundle();
    edit(&mut b);
    ctx.report(&b)
}

/// Runs a bundle edited by `edit` with `args` and returns its stdout.
pub fn output_with(ctx: &mut Ctx, args: &[&str], edit: impl FnOnce(&mut Bundle)) -> Check<String> {
    let mut b = ctx.bundle();
    edit(&mut b);
    ctx.output(&mut b, args)
}

/// A capability field of the report as a mask.
pub fn caps(r: &Value, set: &str) -> u64 {
    r["caps"][set]
        .as_str()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or(u64::MAX)
}

/// The topmost mount at `target` in the report.
pub fn mount_at<'a>(r: &'a Value, target: &str) -> Option<&'a Value> {
    r["mounts"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["target"] == target)
}

/// The per-mount options of a mount.
pub fn mount_options(m: &Value) -> Vec<String> {
    m["options"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect()
}

/// Requires `create` of this bundle to fail, and no container to be left.
pub fn create_fails(ctx: &mut Ctx, b: &Bundle) -> Check {
    b.write();
    let id = ctx.id();
    let out = ctx.rt(&["create", "--bundle", &b.dir.display().to_string(), &id]);
    if out.code == 0 {
        return fail("create succeeded; it must fail");
    }
    if ctx.rt(&["state", &id]).code == 0 {
        return fail("a failed create left a container behind");
    }
    Ok(())
}

/// A host directory bound read-write at /out in the container, for output
/// of processes whose stdout nobody reads.
pub fn out_dir(ctx: &Ctx, b: &mut Bundle) -> PathBuf {
    let dir = ctx.dir.join(format!("out{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    b.mount(
        json!({"destination": "/out", "type": "bind", "source": dir, "options": ["rbind", "rw"]}),
    );
    dir
}

/// Waits for a file to appear and returns its content.
pub fn wait_file(path: &std::path::Path) -> Check<String> {
    for _ in 0..2000 {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return Ok(s);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    fail(format!("{} never appeared", path.display()))
}

/// Checks an equality with a readable message.
pub fn expect_eq<G: std::fmt::Debug + PartialEq<W>, W: std::fmt::Debug>(
    what: &str,
    got: G,
    want: W,
) -> Check {
    if got == want {
        Ok(())
    } else {
        Err(Failure::Fail(format!("{what}: got {got:?}, want {want:?}")))
    }
}
