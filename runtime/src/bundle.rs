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
    #[error("root.path: {path}: {reason}")]
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
    let field = err.path().to_string();
    let inner = err.inner();
    let mut message = inner.to_string();
    // serde lists every expected variant; the field, the bad value and the
    // position are what the user needs, on one line.
    if let Some(cut) = message.find(", expected") {
        let position = message.find(" at line ").map(|i| message[i..].to_string());
        message.truncate(cut);
        message.push_str(&position.unwrap_or_default());
    }
    let field = if field == "." || field == "?" || field.is_empty() {
        "config".to_string()
    } else {
        field
    };
    BundleError::ParseConfig {
        path: path.to_path_buf(),
        field,
        message,
    }
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
