//! `skiff spec`: writes runc's default configuration (with skiff's spec
//! version and hostname), or its rootless variant. No cgroup namespace,
//! as runc and crun: scripts that add one would otherwise get a duplicate.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::cli::SpecArgs;
use crate::error::Error;

/// The default config.json, tab-indented like runc's.
pub const DEFAULT: &str = include_str!("../default_spec.json");

/// Turns the default into runc's rootless variant: a user namespace
/// mapping the caller to root, no network namespace, /sys bound from the
/// host, no devpts gid and no device cgroup rules.
fn rootless(spec: &mut Value, uid: u32, gid: u32) {
    let linux = &mut spec["linux"];
    if let Some(linux) = linux.as_object_mut() {
        linux.remove("resources");
        let one = |id: u32| serde_json::json!([{"containerID": 0, "hostID": id, "size": 1}]);
        linux.insert("uidMappings".into(), one(uid));
        linux.insert("gidMappings".into(), one(gid));
    }
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
        ns.push(serde_json::json!({"type": "user"}));
    }
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for m in mounts.iter_mut() {
            match m["destination"].as_str() {
                Some("/dev/pts") => {
                    if let Some(opts) = m["options"].as_array_mut() {
                        opts.retain(|o| o != "gid=5");
                    }
                }
                Some("/sys") => {
                    *m = serde_json::json!({
                        "destination": "/sys", "type": "none", "source": "/sys",
                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
                    });
                }
                _ => {}
            }
        }
    }
}

fn render(value: &Value) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(value, &mut ser)?;
    Ok(out)
}

/// The text `skiff spec` writes.
pub fn text(rootless_for: Option<(u32, u32)>) -> Vec<u8> {
    match rootless_for {
        None => DEFAULT.trim_end().as_bytes().to_vec(),
        Some((uid, gid)) => {
            let mut value: Value = serde_json::from_str(DEFAULT).unwrap_or(Value::Null);
            rootless(&mut value, uid, gid);
            render(&value).unwrap_or_default()
        }
    }
}

pub fn run(args: &SpecArgs) -> Result<i32, Error> {
    let dir = args.bundle.as_deref().unwrap_or(Path::new("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(Error::Message(
            "File config.json exists. Remove it first".into(),
        ));
    }
    let ids = args.rootless.then(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    f.write_all(&text(ids))
        .map_err(|source| Error::Io { path, source })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parses_and_validates() {
        let spec = crate::bundle::parse_spec(&text(None), Path::new("config.json")).unwrap();
        crate::validate::spec(&spec).unwrap();
        // Only 1.0 features: any runtime (crun 1.8 refuses newer
        // versions) accepts it.
        assert_eq!(spec.version(), "1.0.2");
    }

    #[test]
    fn rootless_variant() {
        let t = text(Some((1000, 1001)));
        let spec = crate::bundle::parse_spec(&t, Path::new("config.json")).unwrap();
        crate::validate::spec(&spec).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
        assert_eq!(linux.gid_mappings().as_ref().unwrap()[0].host_id(), 1001);
        assert!(linux.resources().is_none());
        let text = String::from_utf8(t).unwrap();
        assert!(text.contains("\n\t\"linux\""), "tab indented");
        assert!(!text.contains("gid=5"));
    }
}
