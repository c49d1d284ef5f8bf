//! The shim's command line, as containerd writes it (Go's flag package:
//! `-name value`, `-name=value`, `--name`, booleans bare), followed by
//! the action (`start`, `delete`, or none for the daemon).

/// Why the command line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("flag provided but not defined: {0}")]
    Unknown(String),
    #[error("flag needs an argument: {0}")]
    MissingValue(String),
    #[error("invalid boolean value {1:?} for {0}")]
    BadBool(String, String),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub namespace: String,
    pub id: String,
    /// containerd's gRPC socket.
    pub address: String,
    pub publish_binary: String,
    /// The shim's own socket (daemon only).
    pub socket: String,
    pub bundle: String,
    pub debug: bool,
    pub version: bool,
    pub info: bool,
    pub action: String,
}

pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Flags, FlagError> {
    let mut f = Flags::default();
    let mut it = args.iter().map(AsRef::as_ref);
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            // The action; Go stops parsing flags at the first non-flag.
            f.action = arg.to_string();
            break;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        let boolean = match name {
            "debug" => Some(&mut f.debug),
            "v" => Some(&mut f.version),
            "info" => Some(&mut f.info),
            _ => None,
        };
        if let Some(b) = boolean {
            *b = match inline {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(v) => return Err(FlagError::BadBool(name.into(), v.into())),
            };
            continue;
        }
        let slot = match name {
            "namespace" => &mut f.namespace,
            "id" => &mut f.id,
            "address" => &mut f.address,
            "publish-binary" => &mut f.publish_binary,
            "socket" => &mut f.socket,
            "bundle" => &mut f.bundle,
            _ => return Err(FlagError::Unknown(arg.to_string())),
        };
        *slot = match inline {
            Some(v) => v.to_string(),
            None => it
                .next()
                .ok_or_else(|| FlagError::MissingValue(arg.to_string()))?
                .to_string(),
        };
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_command_lines() {
        let f = parse(&[
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "c1",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "default");
        assert_eq!(f.id, "c1");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert!(f.debug);
        assert_eq!(f.action, "start");
        let f = parse(&["--id=x", "-socket=unix:///s", "-debug=false", "delete"]).unwrap();
        assert_eq!((f.id.as_str(), f.socket.as_str()), ("x", "unix:///s"));
        assert!(!f.debug);
        assert_eq!(f.action, "delete");
        assert!(parse(&["-v"]).unwrap().version);
        assert!(parse(&["-info"]).unwrap().info);
        assert_eq!(parse(&["-bogus"]), Err(FlagError::Unknown("-bogus".into())));
        assert_eq!(parse(&["-id"]), Err(FlagError::MissingValue("-id".into())));
        assert!(parse(&["-debug=maybe"]).is_err());
    }
}
