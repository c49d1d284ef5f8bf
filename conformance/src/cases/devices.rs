//! config-linux.md#devices and #default-devices, and the /dev links.

use serde_json::{json, Value};

use super::{expect_eq, output_with};
use crate::ctx::{Check, Ctx, Failure};
use crate::suite::{case, Case, Level::*};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "devices.default.null",
            "config-linux.md#default-devices",
            Must,
            |c| default(c, "/dev/null", 1, 3),
        ),
        case(
            "devices.default.zero",
            "config-linux.md#default-devices",
            Must,
            |c| default(c, "/dev/zero", 1, 5),
        ),
        case(
            "devices.default.full",
            "config-linux.md#default-devices",
            Must,
            |c| default(c, "/dev/full", 1, 7),
        ),
        case(
            "devices.default.random",
            "config-linux.md#default-devices",
            Must,
            |c| default(c, "/dev/random", 1, 8),
        ),
        case(
            "devices.default.urandom",
            "config-linux.md#default-devices",
            Must,
            |c| default(c, "/dev/urandom", 1, 9),
        ),
        case(
            "devices.default.tty",
            "config-linux.md#default-devices",
            Must,
            |c| default(c, "/dev/tty", 5, 0),
        ),
        case(
            "devices.default.ptmx",
            "config-linux.md#default-devices",
            Must,
            ptmx,
        ),
        case(
            "devices.links.fd",
            "runtime.md (dev symlinks)",
            Should,
            |c| link(c, "/dev/fd", "/proc/self/fd"),
        ),
        case(
            "devices.links.stdin",
            "runtime.md (dev symlinks)",
            Should,
            |c| link(c, "/dev/stdin", "/proc/self/fd/0"),
        ),
        case(
            "devices.links.stdout",
            "runtime.md (dev symlinks)",
            Should,
            |c| link(c, "/dev/stdout", "/proc/self/fd/1"),
        ),
        case(
            "devices.links.stderr",
            "runtime.md (dev symlinks)",
            Should,
            |c| link(c, "/dev/stderr", "/proc/self/fd/2"),
        ),
        case(
            "devices.extra.char",
            "config-linux.md#devices",
            Must,
            extra_char,
        ),
        case(
            "devices.extra.fifo",
            "config-linux.md#devices",
            Must,
            extra_fifo,
        ),
        case(
            "devices.extra.mode_owner",
            "config-linux.md#devices",
            Must,
            extra_mode_owner,
        ),
        case(
            "devices.null_works",
            "config-linux.md#default-devices",
            Must,
            null_works,
        ),
    ]
}

fn stat(ctx: &mut Ctx, path: &str, edit: impl FnOnce(&mut crate::ctx::Bundle)) -> Check<Value> {
    let out = output_with(ctx, &["/checker", "stat", path], edit)?;
    let v: Value = serde_json::from_str(&out).map_err(|e| Failure::Fail(format!("{e}: {out}")))?;
    Ok(v[0].clone())
}

fn default(ctx: &mut Ctx, path: &str, major: u64, minor: u64) -> Check {
    let s = stat(ctx, path, |_| {})?;
    expect_eq(
        path,
        (s["type"].as_str(), s["major"].as_u64(), s["minor"].as_u64()),
        (Some("c"), Some(major), Some(minor)),
    )
}

fn ptmx(ctx: &mut Ctx) -> Check {
    let s = stat(ctx, "/dev/ptmx", |_| {})?;
    // A symlink to pts/ptmx, or the devpts node itself bound there.
    let ok = s["link"].as_str().is_some_and(|l| l.ends_with("pts/ptmx"))
        || (s["major"] == 5 && s["minor"] == 2);
    if ok {
        Ok(())
    } else {
        Err(Failure::Fail(format!("/dev/ptmx is {s}")))
    }
}

fn link(ctx: &mut Ctx, path: &str, target: &str) -> Check {
    let s = stat(ctx, path, |_| {})?;
    expect_eq(path, s["link"].as_str(), Some(target))
}

fn extra_char(ctx: &mut Ctx) -> Check {
    let s = stat(ctx, "/dev/fuse-like", |b| {
        b.config["linux"]["devices"] =
            json!([{"path": "/dev/fuse-like", "type": "c", "major": 10, "minor": 229}]);
    })?;
    expect_eq(
        "device",
        (s["type"].as_str(), s["major"].as_u64(), s["minor"].as_u64()),
        (Some("c"), Some(10), Some(229)),
    )
}

fn extra_fifo(ctx: &mut Ctx) -> Check {
    let s = stat(ctx, "/dev/myfifo", |b| {
        b.config["linux"]["devices"] = json!([{"path": "/dev/myfifo", "type": "p"}]);
    })?;
    expect_eq("type", s["type"].as_str(), Some("p"))
}

fn extra_mode_owner(ctx: &mut Ctx) -> Check {
    let s = stat(ctx, "/dev/owned", |b| {
        b.config["linux"]["devices"] = json!([{"path": "/dev/owned", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 11, "gid": 22}]);
    })?;
    expect_eq(
        "mode uid gid",
        (s["mode"].as_u64(), s["uid"].as_u64(), s["gid"].as_u64()),
        (Some(0o640), Some(11), Some(22)),
    )
}

fn null_works(ctx: &mut Ctx) -> Check {
    let out = output_with(ctx, &["/checker", "write", "/dev/null", "x"], |_| {})?;
    expect_eq("write to /dev/null", out.as_str(), "ok")
}
