//! Loading an OCI bundle: `config.json` parsed once into oci-spec types, the
//! rootfs resolved against the bundle directory, and the whole configuration
//! validated before anything is created.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, Spec};

use crate::validate::{self, Invalid};

/// Why a bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {field}: {message}")]
    ParseConfig {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error(
        "{path}: ociVersion: {version:?} is not a runtime-spec version skiff reads (1.0.0 to 1.x)"
    )]
    UnsupportedVersion { path: PathBuf, version: String },
    #[error("root.path: {}: {reason}", one_line(&.path.to_string_lossy()))]
    Rootfs { path: PathBuf, reason: String },
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// A loaded, validated bundle.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// Absolute rootfs directory.
    pub rootfs: PathBuf,
    /// The parsed configuration.
    pub spec: Spec,
    /// config.json as read, kept in the state for `exec`.
    pub config: Vec<u8>,
}

impl Bundle {
    /// Loads `dir/config.json`, resolves the rootfs and validates the spec.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let dir = std::path::absolute(dir).map_err(|source| BundleError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let config = dir.join("config.json");
        let bytes = std::fs::read(&config).map_err(|source| BundleError::ReadConfig {
            path: config.clone(),
            source,
        })?;
        let (mut spec, mut unknown) = parse_spec_noting_unknown(&bytes, &config)?;
        legacy_rdt_monitoring(&mut spec, &mut unknown, &bytes);
        if let Some(res) = spec
            .linux_mut()
            .as_mut()
            .and_then(|l| l.resources_mut().as_mut())
        {
            crate::cgroups::resources::drop_unset_pids_limit(res, &bytes, "/linux/resources");
        }
        check_version(spec.version(), &config)?;
        if !unknown.is_empty() {
            // Kept as they are in the stored config.json, but nothing acts
            // on them: say so rather than drop them silently.
            crate::warn!(
                "{}: ignoring fields skiff does not know (runtime-spec {}): {}",
                config.display(),
                crate::state::OCI_VERSION,
                one_line(&unknown.join(", "))
            );
        }
        let rootfs = resolve_rootfs(&dir, &spec)?;
        validate::spec(&spec)?;
        Ok(Bundle {
            dir,
            rootfs,
            spec,
            config: bytes,
        })
    }
}

/// runtime-spec 1.1-1.2's `linux.intelRdt.enableCMT` and `enableMBM`,
/// which 1.3 folds into `enableMonitoring`: oci-spec 0.10 looks for them
/// under other spellings and so skips them. Either set asks for the
/// monitoring group, as `enableMonitoring` does.
fn legacy_rdt_monitoring(spec: &mut Spec, unknown: &mut Vec<String>, bytes: &[u8]) {
    const LEGACY: [&str; 2] = ["enableCMT", "enableMBM"];
    let named = |f: &String| LEGACY.iter().any(|k| *f == format!("linux.intelRdt.{k}"));
    if !unknown.iter().any(named) {
        return;
    }
    unknown.retain(|f| !named(f));
    let json: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let on = LEGACY.iter().any(|k| {
        json.pointer(&format!("/linux/intelRdt/{k}")) == Some(&serde_json::Value::Bool(true))
    });
    if let Some(rdt) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.intel_rdt_mut().as_mut())
    {
        if on {
            rdt.set_enable_monitoring(Some(true));
        }
    }
}

/// Parses config.json in one typed pass. Only when that pass trips over a
/// capability name does it take a second, tolerant pass: the spec says a
/// capability that cannot be mapped is a warning, not a failure (runc
/// agrees). Both passes go through the same typed parser, so the large
/// deserializer for the spec exists once in the binary.
pub fn parse_spec(bytes: &[u8], path: &Path) -> Result<Spec, BundleError> {
    parse_spec_noting_unknown(bytes, path).map(|(spec, _)| spec)
}

/// [`parse_spec`], also returning the fields no version of the spec skiff
/// knows has (`linux.fooBar`), which the parser skipped. A config that does
/// not parse is first checked for its version: one of another major
/// version gets that error, not whatever its first strange field is.
pub fn parse_spec_noting_unknown(
    bytes: &[u8],
    path: &Path,
) -> Result<(Spec, Vec<String>), BundleError> {
    let result = match parse_typed(bytes) {
        Err(err) if err.path().to_string().starts_with("process.capabilities.") => {
            let cleaned = drop_unknown_caps(bytes).ok_or_else(|| parse_error(path, &err))?;
            parse_typed(&cleaned)
        }
        other => other,
    };
    result.map_err(|err| {
        #[derive(serde::Deserialize)]
        struct Version {
            #[serde(rename = "ociVersion")]
            version: String,
        }
        match serde_json::from_slice::<Version>(bytes) {
            Ok(v) if check_version(&v.version, path).is_err() => BundleError::UnsupportedVersion {
                path: path.to_path_buf(),
                version: v.version,
            },
            _ => parse_error(path, &err),
        }
    })
}

type Parsed = (Spec, Vec<String>);

fn parse_typed(bytes: &[u8]) -> Result<Parsed, serde_path_to_error::Error<serde_json::Error>> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let mut unknown = Vec::new();
    let mut note = |field: serde_ignored::Path<'_>| unknown.push(ignored_field_name(&field));
    let noting = serde_ignored::Deserializer::new(de, &mut note);
    let spec = serde_path_to_error::deserialize::<_, Spec>(noting)?;
    Ok((spec, unknown))
}

fn parse_error(path: &Path, err: &serde_path_to_error::Error<serde_json::Error>) -> BundleError {
    let inner = err.inner();
    let mut message = inner.to_string();
    // serde lists every expected variant; the field, the bad value and the
    // position are what the user needs, on one line.
    if let Some(cut) = message.find(", expected") {
        let position = message.find(" at line ").map(|i| message[i..].to_string());
        message.truncate(cut);
        message.push_str(&position.unwrap_or_default());
    }
    BundleError::ParseConfig {
        path: path.to_path_buf(),
        field: field_name(err.path()),
        // serde quotes an unknown variant as it came, newlines included.
        message: one_line(&message),
    }
}

/// A parse error's place, named as validation names fields:
/// `process.args[0]`, `linux.sysctl["net.ipv4.ip_forward"]` for a key that
/// is not a plain name, `config` for the document itself.
fn field_name(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } if is_plain_name(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push_str(&format!("[{key:?}]"))
            }
            // Where serde lost track (a key cut short): the place so far.
            Segment::Unknown => {}
        }
    }
    if out.is_empty() || out.starts_with('[') {
        out.insert_str(0, "config");
    }
    out
}

/// A skipped field's place, named as [`field_name`] names them.
fn ignored_field_name(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_field_name(parent)),
        Path::Map { parent, key } => {
            let parent = ignored_field_name(parent);
            match (parent.is_empty(), is_plain_name(key)) {
                (true, true) => key.clone(),
                (false, true) => format!("{parent}.{key}"),
                (_, false) => format!("{parent}[{key:?}]"),
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_field_name(parent),
    }
}

fn is_plain_name(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `text` with its control characters escaped: an error from a config
/// stays one line whatever the config holds.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The config with every capability name oci-spec does not know removed
/// (each one logged), re-encoded; `None` when it is not even JSON.
fn drop_unknown_caps(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let caps = value
        .pointer_mut("/process/capabilities")?
        .as_object_mut()?;
    for (set, list) in caps.iter_mut() {
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        list.retain(|name| {
            let known = name
                .as_str()
                .is_some_and(|n| serde_json::from_value::<Capability>(n.into()).is_ok());
            if !known {
                crate::warn!("process.capabilities.{set}: ignoring unknown capability {name}");
            }
            known
        });
    }
    serde_json::to_vec(&value).ok()
}

/// skiff implements runtime-spec 1.x (1.0.0 to 1.3); a config for another
/// major version would be misread. A later 1.x is read as far as skiff
/// knows it: what it adds is reported as unknown fields.
fn check_version(version: &str, path: &Path) -> Result<(), BundleError> {
    let mut parts = version.splitn(3, '.');
    let major = parts.next().unwrap_or("");
    let minor = parts.next().unwrap_or("");
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if major != "1" || !numeric(minor) {
        return Err(BundleError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: version.to_string(),
        });
    }
    Ok(())
}

fn resolve_rootfs(dir: &Path, spec: &Spec) -> Result<PathBuf, BundleError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Invalid::new("root", "missing: a container needs a root filesystem"))?;
    let path = dir.join(root.path());
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(BundleError::Rootfs {
            path,
            reason: "not a directory".into(),
        }),
        Err(e) => Err(BundleError::Rootfs {
            path,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Spec, BundleError> {
        parse_spec(json.as_bytes(), Path::new("/b/config.json"))
    }

    #[test]
    fn malformed_json_names_the_position() {
        let err = parse("{\"ociVersion\": \"1.0.2\",")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/b/config.json: config: EOF while parsing"),
            "{err}"
        );
        assert!(err.ends_with("at line 1 column 23"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse(r#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":"sh"}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/b/config.json: process.args: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn unknown_capability_is_dropped_not_fatal() {
        let spec = parse(
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},
               "capabilities":{"bounding":["CAP_KILL","CAP_FOO"],"effective":["CAP_FOO"]}}}"#,
        )
        .unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 1);
        assert!(caps.effective().as_ref().unwrap().is_empty());
    }

    #[test]
    fn unknown_namespace_type_names_the_field() {
        let err = parse(r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"bogus"}]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux.namespaces[0].type"), "{err}");
    }

    #[test]
    fn parse_errors_name_fields_as_validation_does() {
        let field = |json: &str| match parse(json) {
            Err(BundleError::ParseConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        // Cut inside a key: the place so far, not a trailing "?".
        assert_eq!(
            field(r#"{"linux":{"namespaces":[{"type":"pid"},{"#),
            "linux.namespaces[1]"
        );
        // serde reads a struct from an array too.
        assert_eq!(field("[null]"), "config[0]");
        assert_eq!(
            field(r#"{"linux":{"sysctl":{"net.ipv4.ip_forward":1}}}"#),
            r#"linux.sysctl["net.ipv4.ip_forward"]"#
        );
        assert_eq!(
            field(r#"{"annotations":{"a b":1}}"#),
            r#"annotations["a b"]"#
        );
    }

    #[test]
    fn errors_stay_on_one_line() {
        let err = parse(r#"{"linux":{"namespaces":[{"type":"a\nb"}]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains(r"unknown variant `a\nb`"), "{err}");
        let dir = std::env::temp_dir().join(format!("skiff-bundle-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"no\nsuch"}}"#,
        )
        .unwrap();
        let err = Bundle::load(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.starts_with("root.path: "), "{err}");
        assert!(err.contains(r"no\nsuch"), "{err}");
    }

    #[test]
    fn version_must_be_1() {
        let refused = |v: &str| check_version(v, Path::new("/c")).unwrap_err().to_string();
        assert_eq!(
            refused("2.0.0"),
            "/c: ociVersion: \"2.0.0\" is not a runtime-spec version skiff reads (1.0.0 to 1.x)"
        );
        for v in ["", "1", "10.0.0", "1.x.0", "v1.0.0"] {
            refused(v);
        }
        for v in [
            "1.0.0",
            "1.0.2-dev",
            "1.1.0",
            "1.2.1",
            "1.3.0",
            "1.3.0-rc.1",
            "1.4.0",
        ] {
            assert!(check_version(v, Path::new("/c")).is_ok(), "{v}");
        }
    }

    #[test]
    fn another_major_version_is_named_before_its_fields() {
        // A 2.0 config whose fields 1.x reads differently: the version is
        // the error, not the field.
        let err = parse(r#"{"ociVersion":"2.0.0","process":{"args":"sh"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ociVersion: \"2.0.0\""), "{err}");
    }

    /// One config per minor version of the spec, each with the fields that
    /// version added: all of them parse, and nothing in them is unknown.
    #[test]
    fn configs_of_every_1x_version_parse_with_nothing_unknown() {
        let base = |v: &str| {
            serde_json::json!({
                "ociVersion": v,
                "root": {"path": "rootfs", "readonly": true},
                "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0, "umask": 18},
                    "capabilities": {"bounding": ["CAP_KILL"], "ambient": ["CAP_KILL"]},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2}],
                    "noNewPrivileges": true, "oomScoreAdj": 1, "apparmorProfile": "p",
                    "selinuxLabel": "l", "consoleSize": {"height": 1, "width": 2}},
                "hostname": "h",
                "mounts": [{"destination": "/p", "type": "proc", "source": "proc", "options": ["ro"]}],
                "hooks": {"prestart": [{"path": "/bin/true", "args": ["t"], "env": ["A=1"], "timeout": 1}],
                    "poststart": [{"path": "/bin/true"}], "poststop": [{"path": "/bin/true"}]},
                "annotations": {"org.example.key": "v"},
                "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/n"}],
                    "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
                    "sysctl": {"net.ipv4.ip_forward": "1"},
                    "resources": {"devices": [{"allow": false, "access": "rwm"}],
                        "memory": {"limit": 1, "reservation": 1, "swap": 1, "kernel": 1, "kernelTCP": 1,
                            "swappiness": 1, "disableOOMKiller": false},
                        "cpu": {"shares": 1, "quota": 1, "period": 1, "realtimeRuntime": 1,
                            "realtimePeriod": 1, "cpus": "0", "mems": "0"},
                        "pids": {"limit": 1},
                        "blockIO": {"weight": 10, "leafWeight": 10,
                            "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]},
                        "hugepageLimits": [{"pageSize": "2MB", "limit": 1}],
                        "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]}},
                    "cgroupsPath": "/c", "rootfsPropagation": "slave",
                    "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"],
                        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
                    "maskedPaths": ["/m"], "readonlyPaths": ["/r"], "mountLabel": "l",
                    "devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3,
                        "fileMode": 438, "uid": 0, "gid": 0}],
                    "intelRdt": {"closID": "c", "l3CacheSchema": "L3:0=f", "memBwSchema": "MB:0=50"}}
            })
        };
        let mut v1_1 = base("1.1.0");
        v1_1["domainname"] = "d".into();
        v1_1["mounts"][0]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 1, "size": 1}]);
        v1_1["linux"]["resources"]["rdma"] = serde_json::json!({"mlx5_1": {"hcaHandles": 1}});
        v1_1["linux"]["resources"]["unified"] = serde_json::json!({"io.max": "8:0 rbps=1"});
        v1_1["linux"]["resources"]["cpu"]["idle"] = 1.into();
        v1_1["linux"]["resources"]["memory"]["checkBeforeUpdate"] = true.into();
        v1_1["linux"]["seccomp"]["flags"] = serde_json::json!(["SECCOMP_FILTER_FLAG_LOG"]);
        v1_1["linux"]["seccomp"]["listenerPath"] = "/l".into();
        v1_1["linux"]["seccomp"]["defaultErrnoRet"] = 1.into();
        v1_1["linux"]["personality"] = serde_json::json!({"domain": "LINUX"});
        v1_1["hooks"]["createRuntime"] = serde_json::json!([{"path": "/bin/true"}]);
        v1_1["linux"]["timeOffsets"] = serde_json::json!({"monotonic": {"secs": 1, "nanosecs": 0}});
        let mut v1_2 = v1_1.clone();
        v1_2["ociVersion"] = "1.2.1".into();
        v1_2["process"]["ioPriority"] =
            serde_json::json!({"class": "IOPRIO_CLASS_RT", "priority": 1});
        v1_2["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_OTHER", "nice": 1});
        v1_2["process"]["execCPUAffinity"] = serde_json::json!({"initial": "0", "final": "0"});
        v1_2["linux"]["resources"]["cpu"]["burst"] = 1.into();
        let mut v1_3 = v1_2.clone();
        v1_3["ociVersion"] = "1.3.0".into();
        v1_3["linux"]["netDevices"] = serde_json::json!({"eth0": {"name": "ctr0"}});
        v1_3["linux"]["memoryPolicy"] = serde_json::json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]});
        v1_3["linux"]["intelRdt"]["schemata"] = serde_json::json!(["L2:0=f"]);
        v1_3["linux"]["intelRdt"]["enableMonitoring"] = true.into();
        for config in [base("1.0.0"), base("1.0.2"), v1_1, v1_2, v1_3] {
            let bytes = serde_json::to_vec(&config).unwrap();
            let (spec, unknown) = parse_spec_noting_unknown(&bytes, Path::new("/c"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                unknown.is_empty(),
                "{}: unknown {unknown:?}",
                spec.version()
            );
            check_version(spec.version(), Path::new("/c")).unwrap();
        }
    }

    #[test]
    fn legacy_monitoring_flags_ask_for_monitoring() {
        for (rdt, monitoring) in [
            (r#"{"enableCMT":true}"#, Some(true)),
            (r#"{"enableMBM":true,"enableCMT":false}"#, Some(true)),
            (r#"{"enableCMT":false}"#, None),
        ] {
            let bytes = format!(r#"{{"ociVersion":"1.2.0","linux":{{"intelRdt":{rdt}}}}}"#);
            let (mut spec, mut unknown) =
                parse_spec_noting_unknown(bytes.as_bytes(), Path::new("/c")).unwrap();
            legacy_rdt_monitoring(&mut spec, &mut unknown, bytes.as_bytes());
            assert!(unknown.is_empty(), "{unknown:?}");
            let rdt = spec.linux().as_ref().unwrap().intel_rdt().as_ref().unwrap();
            assert_eq!(*rdt.enable_monitoring(), monitoring, "{bytes}");
        }
    }

    #[test]
    fn unknown_fields_are_noted_and_kept_out_of_the_spec() {
        let (spec, unknown) = parse_spec_noting_unknown(
            br#"{"ociVersion":"1.4.0","fromTheFuture":{"x":1},
                 "linux":{"netDevices":{"eth-0":{"name":"c0","mtu":9000}},"newThing":true,
                 "intelRdt":{"enableCMT":true}}}"#,
            Path::new("/c"),
        )
        .unwrap();
        assert_eq!(
            unknown,
            [
                "fromTheFuture",
                "linux.netDevices[\"eth-0\"].mtu",
                "linux.newThing",
                // oci-spec 0.10 spells the 1.1-1.2 monitoring flags
                // `enableCmt`/`enableMbm`; legacy_rdt_monitoring reads them.
                "linux.intelRdt.enableCMT"
            ]
        );
        assert_eq!(spec.version(), "1.4.0");
    }
}
