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

/// A JSON value that keeps its keys in the order they came in, so the
/// rootless variant is laid out like the default (and like runc's).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    Scalar(Value),
}

impl Json {
    fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn is_str(&self, s: &str) -> bool {
        matches!(self, Json::Scalar(Value::String(v)) if v == s)
    }

    fn field_is(&self, key: &str, value: &str) -> bool {
        match self {
            Json::Object(entries) => entries.iter().any(|(k, v)| k == key && v.is_str(value)),
            _ => false,
        }
    }

    fn object(entries: &[(&str, Json)]) -> Json {
        Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn str(s: &str) -> Json {
        Json::Scalar(Value::from(s))
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Json::Object(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Scalar(Value::Null))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Json::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Scalar(v) => v.serialize(s),
        }
    }
}

/// Turns the default into runc's rootless variant (`specconv.ToRootless`):
/// a user namespace mapping the caller to root, no network namespace, /sys
/// bound from the host, no uid=/gid= mount options (those ids are not
/// mapped) and no cgroup resources.
fn rootless(spec: &mut Json, uid: u32, gid: u32) {
    let one = |id: u32| {
        Json::Array(vec![Json::object(&[
            ("containerID", Json::Scalar(0.into())),
            ("hostID", Json::Scalar(id.into())),
            ("size", Json::Scalar(1.into())),
        ])])
    };
    if let Some(Json::Object(linux)) = spec.get_mut("linux") {
        linux.retain(|(k, _)| !matches!(k.as_str(), "resources" | "uidMappings" | "gidMappings"));
        linux.insert(0, ("gidMappings".into(), one(gid)));
        linux.insert(0, ("uidMappings".into(), one(uid)));
    }
    if let Some(Json::Array(ns)) = spec.get_mut("linux").and_then(|l| l.get_mut("namespaces")) {
        ns.retain(|n| !n.field_is("type", "network") && !n.field_is("type", "user"));
        ns.push(Json::object(&[("type", Json::str("user"))]));
    }
    if let Some(Json::Array(mounts)) = spec.get_mut("mounts") {
        for m in mounts.iter_mut() {
            if m.field_is("destination", "/sys") {
                let options = ["rbind", "nosuid", "noexec", "nodev", "ro"];
                *m = Json::object(&[
                    ("destination", Json::str("/sys")),
                    ("type", Json::str("none")),
                    ("source", Json::str("/sys")),
                    (
                        "options",
                        Json::Array(options.iter().map(|o| Json::str(o)).collect()),
                    ),
                ]);
            } else if let Some(Json::Array(options)) = m.get_mut("options") {
                options.retain(|o| {
                    !matches!(o, Json::Scalar(Value::String(s)) if s.starts_with("uid=") || s.starts_with("gid="))
                });
            }
        }
    }
}

fn render(value: &Json) -> Result<Vec<u8>, serde_json::Error> {
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
            let mut value: Json =
                serde_json::from_str(DEFAULT).unwrap_or(Json::Scalar(Value::Null));
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
        assert!(
            text.contains("\n\t\"linux\": {\n\t\t\"uidMappings\""),
            "{text}"
        );
        assert!(!text.contains("gid=5"));
        // The default's layout is kept: only the rootless changes differ.
        let default = String::from_utf8(super::text(None)).unwrap();
        let head = |t: &str| t[..t.find("\"mounts\"").unwrap()].to_string();
        assert_eq!(head(&text), head(&default));
    }
}
