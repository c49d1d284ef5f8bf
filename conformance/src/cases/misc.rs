//! The rest: personality, annotations, the features command, and how the
//! runtime treats configs it cannot honour.

use serde_json::json;

use super::{create_fails, expect_eq, report_with};
use crate::ctx::{Check, Ctx, Failure};
use crate::ensure;
use crate::suite::{case, Case, Level::*};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "personality.linux32",
            "config-linux.md#personality",
            Must,
            linux32,
        ),
        case(
            "annotations.accepted",
            "config.md#annotations",
            Must,
            annotations,
        ),
        case(
            "config.unknown_fields_ignored",
            "config.md (unknown properties MUST be ignored)",
            Must,
            unknown_fields,
        ),
        case(
            "config.malformed_fails",
            "runtime.md#create",
            Must,
            malformed,
        ),
        case(
            "config.missing_process_fails",
            "runtime.md#create (process is required by create)",
            Must,
            missing_process,
        ),
        case("features.json", "features.md", Should, features),
        case(
            "intel_rdt.without_resctrl_fails",
            "config-linux.md#intelrdt",
            Must,
            intel_rdt_without_resctrl,
        ),
    ]
}

/// With no resctrl mounted, a config asking for a class of service must
/// fail rather than run without it.
fn intel_rdt_without_resctrl(ctx: &mut Ctx) -> Check {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if mountinfo.contains(" - resctrl ") {
        crate::skip!("resctrl is mounted here");
    }
    let mut b = ctx.bundle();
    b.config["linux"]["intelRdt"] =
        json!({"closID": "skiff-conformance", "l3CacheSchema": "L3:0=f"});
    create_fails(ctx, &b)
}

fn linux32(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["linux"]["personality"] = json!({"domain": "LINUX32"})
    })?;
    expect_eq("uname machine", r["machine"].as_str(), Some("i686"))
}

fn annotations(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["annotations"] = json!({"com.example.key": "value", "org.opencontainers.x": "y"})
    })?;
    expect_eq("pid", r["pid"].as_i64(), Some(1))
}

fn unknown_fields(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["someFutureField"] = json!({"x": 1});
        b.config["linux"]["futureLinuxField"] = json!(true);
    })?;
    expect_eq("pid", r["pid"].as_i64(), Some(1))
}

fn malformed(ctx: &mut Ctx) -> Check {
    let b = ctx.bundle();
    let _ = std::fs::write(
        b.dir.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": ",
    );
    let id = ctx.id();
    let out = ctx.rt(&["create", "--bundle", &b.dir.display().to_string(), &id]);
    ensure!(out.code != 0, "a malformed config.json was accepted");
    ensure!(
        ctx.rt(&["state", &id]).code != 0,
        "a container was left behind"
    );
    Ok(())
}

fn missing_process(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    if let Some(o) = b.config.as_object_mut() {
        o.remove("process");
    }
    create_fails(ctx, &b)
}

/// The value sets of the features schema (schema/features-schema.json,
/// features-linux.json and the definitions they use, runtime-spec 1.2).
mod schema {
    pub const HOOKS: &[&str] = &[
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    pub const NAMESPACES: &[&str] = &[
        "mount", "pid", "network", "uts", "ipc", "user", "cgroup", "time",
    ];
    pub const ACTIONS: &[&str] = &[
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ];
    pub const OPERATORS: &[&str] = &[
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];
    pub const FLAGS: &[&str] = &[
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ];
    pub const BOOL_OBJECTS: &[(&str, &[&str])] = &[
        ("cgroup", &["v1", "v2", "systemd", "systemdUser", "rdma"]),
        ("seccomp", &["enabled"]),
        ("apparmor", &["enabled"]),
        ("selinux", &["enabled"]),
        ("intelRdt", &["enabled", "schemata", "monitoring"]),
        ("netDevices", &["enabled"]),
    ];
    /// runtime-spec 1.3's memory policy modes and flags.
    pub const MEMORY_POLICY_MODES: &[&str] = &[
        "MPOL_DEFAULT",
        "MPOL_BIND",
        "MPOL_INTERLEAVE",
        "MPOL_WEIGHTED_INTERLEAVE",
        "MPOL_PREFERRED",
        "MPOL_PREFERRED_MANY",
        "MPOL_LOCAL",
    ];
    pub const MEMORY_POLICY_FLAGS: &[&str] = &[
        "MPOL_F_NUMA_BALANCING",
        "MPOL_F_RELATIVE_NODES",
        "MPOL_F_STATIC_NODES",
    ];
}

/// An optional array of strings, each in `allowed` (or matching `ok`).
fn strings_in(v: &serde_json::Value, field: &str, ok: impl Fn(&str) -> bool) -> Check<Vec<String>> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    let list = v
        .as_array()
        .ok_or_else(|| Failure::Fail(format!("{field}: not an array: {v}")))?;
    let mut out = Vec::new();
    for item in list {
        let s = item
            .as_str()
            .ok_or_else(|| Failure::Fail(format!("{field}: {item} is not a string")))?;
        ensure!(ok(s), "{field}: {s:?} is not a value the schema allows");
        out.push(s.to_string());
    }
    Ok(out)
}

fn features(ctx: &mut Ctx) -> Check {
    let out = ctx.rt(&["features"]).ok("features")?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| Failure::Fail(format!("features JSON: {e}")))?;
    ensure!(
        v["ociVersionMin"].is_string() && v["ociVersionMax"].is_string(),
        "ociVersionMin/Max missing: {v}"
    );
    strings_in(&v["hooks"], "hooks", |s| schema::HOOKS.contains(&s))?;
    strings_in(&v["mountOptions"], "mountOptions", |s| !s.is_empty())?;
    strings_in(
        &v["potentiallyUnsafeConfigAnnotations"],
        "potentiallyUnsafeConfigAnnotations",
        |s| !s.is_empty(),
    )?;
    let linux = &v["linux"];
    if linux.is_null() {
        return Ok(());
    }
    strings_in(&linux["namespaces"], "linux.namespaces", |s| {
        schema::NAMESPACES.contains(&s)
    })?;
    strings_in(&linux["capabilities"], "linux.capabilities", |s| {
        s.strip_prefix("CAP_")
            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    })?;
    let seccomp = &linux["seccomp"];
    strings_in(&seccomp["actions"], "linux.seccomp.actions", |s| {
        schema::ACTIONS.contains(&s)
    })?;
    strings_in(&seccomp["operators"], "linux.seccomp.operators", |s| {
        schema::OPERATORS.contains(&s)
    })?;
    strings_in(&seccomp["archs"], "linux.seccomp.archs", |s| {
        s.starts_with("SCMP_ARCH_")
    })?;
    let known = strings_in(&seccomp["knownFlags"], "linux.seccomp.knownFlags", |s| {
        schema::FLAGS.contains(&s)
    })?;
    let supported = strings_in(
        &seccomp["supportedFlags"],
        "linux.seccomp.supportedFlags",
        |s| schema::FLAGS.contains(&s),
    )?;
    ensure!(
        supported.iter().all(|f| known.contains(f)),
        "linux.seccomp.supportedFlags must be a subset of knownFlags"
    );
    for (object, fields) in schema::BOOL_OBJECTS {
        for field in *fields {
            let value = &linux[object][field];
            ensure!(
                value.is_null() || value.is_boolean(),
                "linux.{object}.{field}: {value} is not a boolean"
            );
        }
    }
    strings_in(
        &linux["memoryPolicy"]["modes"],
        "linux.memoryPolicy.modes",
        |s| schema::MEMORY_POLICY_MODES.contains(&s),
    )?;
    strings_in(
        &linux["memoryPolicy"]["flags"],
        "linux.memoryPolicy.flags",
        |s| schema::MEMORY_POLICY_FLAGS.contains(&s),
    )?;
    let idmap = &linux["mountExtensions"]["idmap"]["enabled"];
    ensure!(
        idmap.is_null() || idmap.is_boolean(),
        "linux.mountExtensions.idmap.enabled: {idmap} is not a boolean"
    );
    Ok(())
}
