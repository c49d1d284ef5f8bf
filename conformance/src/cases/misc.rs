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
    ]
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

fn features(ctx: &mut Ctx) -> Check {
    let out = ctx.rt(&["features"]).ok("features")?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| Failure::Fail(format!("features JSON: {e}")))?;
    ensure!(
        v["ociVersionMin"].is_string() && v["ociVersionMax"].is_string(),
        "ociVersionMin/Max missing: {v}"
    );
    Ok(())
}
