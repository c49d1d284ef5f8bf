//! What containerd hands the `start` action, and the reply it reads back.
//! Two ways in, three replies:
//! - containerd 1.6 to 2.2: flags, TTRPC_ADDRESS in the environment, and
//!   the runtime options (a protobuf Any) on stdin when some are
//!   configured. A plain address is the reply every one of them reads:
//!   1.6 takes the whole output as the address, 1.7 and 2.0-2.2 take a
//!   bare address for a task API v2 shim. containerd 2.0-2.2 select the
//!   task API v3 only from a JSON reply (`{"version":3,...}`), which 1.7
//!   refuses and 1.6 misreads: it goes to containerd 2 alone, told by its
//!   binary (`go_buildinfo`).
//! - containerd 2.3 and later: a protobuf BootstrapParams on stdin (its
//!   ttrpc address, log level, socket directory, the runtime options as an
//!   extension), and a protobuf BootstrapResult as the reply.
//!
//! A legacy Any also decodes as BootstrapParams (its type URL lands in
//! `instance_id`, its value in `namespace`), so bootstrap params are
//! recognised by naming this shim's own id and namespace.

use std::io::Read;
use std::path::Path;

use crate::api::{Any, BootstrapParams, BootstrapResult, CheckpointOptions, Options};
use crate::flags::Flags;
use crate::go_buildinfo;
use crate::proto::Message;

/// containerd's own cap on what it writes to stdin.
const MAX_INPUT: u64 = 10 << 20;
/// The type containerd names the runc shim's options by (ours are the same).
const OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
/// The type of the checkpoint options containerd sends the runc shim.
const CHECKPOINT_OPTIONS_TYPE: &str = "containerd.runc.v1.CheckpointOptions";
/// BootstrapParams' log level at which debug logging is on.
const LOG_LEVEL_DEBUG: i32 = -4;
/// The task API version the reply announces: this shim serves v3 (and v2).
const TASK_API_VERSION: i32 = 3;

/// The form of `start`'s reply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ReplyForm {
    /// The bare address (task API v2): every containerd before 2.3.
    #[default]
    Address,
    /// JSON bootstrap params naming the task API v3: containerd 2.0-2.2.
    Json,
    /// A protobuf BootstrapResult: containerd 2.3 and later.
    Protobuf,
}

/// Everything `start` needs to know, whichever way it came.
#[derive(Debug, Default, PartialEq)]
pub struct StartParams {
    /// containerd's gRPC socket (the daemon's `-address`).
    pub grpc_address: String,
    /// containerd's ttrpc socket, when the bootstrap params carry it (the
    /// legacy protocol passes it in the environment the daemon inherits).
    pub ttrpc_address: Option<String>,
    pub debug: bool,
    /// Where containerd wants the shim's socket, if it says.
    pub socket_dir: Option<String>,
    pub options: Options,
    pub reply: ReplyForm,
}

/// The runtime options, if `any` carries the runc shim's options type
/// (compared by the last path segment: `type.googleapis.com/` prefixes
/// are allowed).
pub fn runtime_options(any: &Any) -> Option<Options> {
    unpack(any, OPTIONS_TYPE)
}

/// The checkpoint options, if `any` carries the runc shim's type.
pub fn checkpoint_options(any: &Any) -> Option<CheckpointOptions> {
    unpack(any, CHECKPOINT_OPTIONS_TYPE)
}

fn unpack<M: Message>(any: &Any, type_name: &str) -> Option<M> {
    let name = any.type_url.rsplit('/').next()?;
    (name == type_name)
        .then(|| M::decode(&any.value).ok())
        .flatten()
}

/// Reads what containerd wrote to stdin: only from a pipe or a file, so a
/// shim started by hand from a terminal does not wait for input.
pub fn read_stdin() -> Vec<u8> {
    // SAFETY: fstat(2) of fd 0 into a zeroed stat.
    let kind = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(0, &mut st) < 0 {
            return Vec::new();
        }
        st.st_mode & libc::S_IFMT
    };
    if kind != libc::S_IFIFO && kind != libc::S_IFREG {
        return Vec::new();
    }
    let mut input = Vec::new();
    let _ = std::io::stdin().take(MAX_INPUT).read_to_end(&mut input);
    input
}

pub fn parse(input: &[u8], flags: &Flags) -> StartParams {
    if let Ok(p) = BootstrapParams::decode(input) {
        if !input.is_empty() && p.instance_id == flags.id && p.namespace == flags.namespace {
            return StartParams {
                grpc_address: p.containerd_grpc_address,
                ttrpc_address: Some(p.containerd_ttrpc_address).filter(|a| !a.is_empty()),
                debug: flags.debug || p.log_level <= LOG_LEVEL_DEBUG,
                socket_dir: Some(p.socket_dir).filter(|d| !d.is_empty()),
                options: p
                    .extensions
                    .iter()
                    .filter_map(|e| e.value.as_ref().and_then(runtime_options))
                    .next()
                    .unwrap_or_default(),
                reply: ReplyForm::Protobuf,
            };
        }
    }
    StartParams {
        grpc_address: flags.address.clone(),
        ttrpc_address: None,
        debug: flags.debug,
        socket_dir: None,
        options: Any::decode(input)
            .ok()
            .and_then(|any| runtime_options(&any))
            .unwrap_or_default(),
        reply: if go_buildinfo::is_containerd2(Path::new(&flags.publish_binary)) {
            ReplyForm::Json
        } else {
            ReplyForm::Address
        },
    }
}

/// The reply to `start` in the form the caller reads.
pub fn reply(params: &StartParams, address: &str) -> Vec<u8> {
    match params.reply {
        ReplyForm::Address => address.as_bytes().to_vec(),
        ReplyForm::Json => serde_json::json!({
            "version": TASK_API_VERSION,
            "address": address,
            "protocol": "ttrpc",
        })
        .to_string()
        .into_bytes(),
        ReplyForm::Protobuf => BootstrapResult {
            version: TASK_API_VERSION,
            address: address.to_string(),
            protocol: "ttrpc".to_string(),
        }
        .to_bytes(),
    }
}

/// containerd's own generated code writes what the tests parse.
#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::bootstrap_api as reference;
    use containerd_shim_protos::protobuf::well_known_types::any::Any as RefAny;
    use containerd_shim_protos::protobuf::{EnumOrUnknown, Message as _, MessageField};
    use containerd_shim_protos::shim::oci::Options as RefOptions;

    fn flags() -> Flags {
        Flags {
            namespace: "k8s.io".into(),
            id: "c1".into(),
            address: "/run/containerd/containerd.sock".into(),
            ..Flags::default()
        }
    }

    fn options_any(type_url: &str) -> RefAny {
        RefAny {
            type_url: type_url.into(),
            value: RefOptions {
                binary_name: "/opt/skiff".into(),
                shim_cgroup: "/shims".into(),
                ..Default::default()
            }
            .write_to_bytes()
            .unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn legacy_start_takes_flags_and_the_options_on_stdin() {
        let p = parse(&[], &flags());
        assert_eq!(p.reply, ReplyForm::Address);
        assert_eq!(p.grpc_address, "/run/containerd/containerd.sock");
        assert_eq!(p.options, Options::default());
        let input = options_any("containerd.runc.v1.Options")
            .write_to_bytes()
            .unwrap();
        let p = parse(&input, &flags());
        assert_eq!(p.reply, ReplyForm::Address);
        assert_eq!(p.options.binary_name, "/opt/skiff");
        assert_eq!(p.options.shim_cgroup, "/shims");
        // Options of another type are not ours.
        let other = options_any("example.Other").write_to_bytes().unwrap();
        assert_eq!(parse(&other, &flags()).options, Options::default());
        assert_eq!(reply(&p, "unix:///s/x"), b"unix:///s/x");
    }

    #[test]
    fn containerd2_gets_the_json_reply_naming_task_api_v3() {
        let dir = std::env::temp_dir().join(format!("skiff-shim-reply-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let containerd = dir.join("containerd");
        let info = crate::go_buildinfo::tests::V2_INFO;
        std::fs::write(
            &containerd,
            crate::go_buildinfo::tests::elf(".go.buildinfo", info),
        )
        .unwrap();
        let flags = Flags {
            publish_binary: containerd.display().to_string(),
            ..flags()
        };
        let p = parse(&[], &flags);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(p.reply, ReplyForm::Json);
        // What containerd 2.0-2.2 unmarshal into their BootstrapParams.
        let r: serde_json::Value = serde_json::from_slice(&reply(&p, "unix:///s/x")).unwrap();
        assert_eq!(
            r,
            serde_json::json!({"version": 3, "address": "unix:///s/x", "protocol": "ttrpc"})
        );
        // A binary that cannot be read gets the reply every containerd reads.
        assert_eq!(parse(&[], &flags).reply, ReplyForm::Address);
    }

    #[test]
    fn bootstrap_params_and_result() {
        let params = reference::BootstrapParams {
            instance_id: "c1".into(),
            namespace: "k8s.io".into(),
            log_level: EnumOrUnknown::new(reference::LogLevel::LOG_LEVEL_DEBUG),
            containerd_ttrpc_address: "/run/containerd/containerd.sock.ttrpc".into(),
            containerd_grpc_address: "/run/containerd/containerd.sock".into(),
            extensions: vec![reference::Extension {
                value: MessageField::some(options_any(
                    "type.googleapis.com/containerd.runc.v1.Options",
                )),
                ..Default::default()
            }],
            socket_dir: Some("/run/shims".into()),
            ..Default::default()
        };
        let p = parse(&params.write_to_bytes().unwrap(), &flags());
        assert!(p.reply == ReplyForm::Protobuf && p.debug);
        assert_eq!(
            p.ttrpc_address.as_deref(),
            Some("/run/containerd/containerd.sock.ttrpc")
        );
        assert_eq!(p.socket_dir.as_deref(), Some("/run/shims"));
        assert_eq!(p.options.binary_name, "/opt/skiff");
        let r = reference::BootstrapResult::parse_from_bytes(&reply(&p, "unix:///run/shims/x"))
            .unwrap();
        assert_eq!((r.version, r.address.as_str()), (3, "unix:///run/shims/x"));
        assert_eq!(r.protocol, "ttrpc");
        // Params naming another shim are not taken as ours.
        let mut other = params.clone();
        other.instance_id = "c2".into();
        let p = parse(&other.write_to_bytes().unwrap(), &flags());
        assert_eq!(p.reply, ReplyForm::Address);
    }
}
