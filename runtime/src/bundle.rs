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
    #[error("{path}: unsupported ociVersion {version:?} (skiff supports 1.x)")]
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
        let spec = parse_spec(&bytes, &config)?;
        check_version(&spec, &config)?;
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

/// Parses config.json in one typed pass. Only when that pass trips over a
/// capability name does it take a second, tolerant pass: the spec says a
/// capability that cannot be mapped is a warning, not a failure (runc
/// agrees). Both passes go through the same typed parser, so the large
/// deserializer for the spec exists once in the binary.
pub fn parse_spec(bytes: &[u8], path: &Path) -> Result<Spec, BundleError> {
    match parse_typed(bytes) {
        Ok(spec) => Ok(spec),
        Err(err) if err.path().to_string().starts_with("process.capabilities.") => {
            let cleaned = drop_unknown_caps(bytes).ok_or_else(|| parse_error(path, &err))?;
            parse_typed(&cleaned).map_err(|err| parse_error(path, &err))
        }
        Err(err) => Err(parse_error(path, &err)),
    }
}

fn parse_typed(bytes: &[u8]) -> Result<Spec, serde_path_to_error::Error<serde_json::Error>> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, Spec>(de)
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

/// skiff implements runtime-spec 1.x; a config for another major version
/// would be misread.
fn check_version(spec: &Spec, path: &Path) -> Result<(), BundleError> {
    let version = spec.version();
    let major = version.split('.').next().unwrap_or("");
    if major != "1" {
        return Err(BundleError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: version.clone(),
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
        let spec = parse(r#"{"ociVersion":"2.0.0"}"#).unwrap();
        let err = check_version(&spec, Path::new("/c"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/c: unsupported ociVersion \"2.0.0\" (skiff supports 1.x)"
        );
        let spec = parse(r#"{"ociVersion":"1.2.0"}"#).unwrap();
        assert!(check_version(&spec, Path::new("/c")).is_ok());
    }
}
