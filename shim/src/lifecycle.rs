//! The shim binary's own lifecycle, as containerd drives it: `start`
//! (spawn the daemon, or join the pod's), `delete` (clean up after a lost
//! shim) and `-info`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::api::{Any, DeleteResponse, RuntimeInfo, RuntimeVersion, Timestamp};
use crate::bootstrap::{self, StartParams};
use crate::flags::Flags;
use crate::proto::Message;
use crate::runtime::Runtime;
use crate::ttrpc::socket_path;
use crate::{options, rootfs};

/// The annotation CRI puts on every container of a pod: containers of one
/// pod share one shim.
const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// Where shim sockets live, as containerd's own shims place them.
const SOCKET_DIR: &str = "/run/containerd/s";
/// The type containerd registers the runtime-spec features document
/// under (its value is the JSON `features` prints).
const FEATURES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the shim daemon for {0} did not come up (see containerd's log)")]
    DaemonFailed(String),
    #[error("runtime options: shim_cgroup {0}: no such cgroup on this host")]
    NoShimCgroup(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LifecycleError {
    let what = what.into();
    move |source| LifecycleError::Io { what, source }
}

/// The id whose shim serves this container: its pod's sandbox id when CRI
/// set one, otherwise its own.
fn grouping(bundle: &Path, id: &str) -> String {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|spec| {
            spec.get("annotations")?
                .get(SANDBOX_ANNOTATION)?
                .as_str()
                .map(String::from)
        })
        .unwrap_or_else(|| id.to_string())
}

/// The socket of the shim serving `group`, in `dir`: a hash, because
/// namespaces and ids can be longer than a socket path allows.
fn socket_address(dir: &str, containerd: &str, namespace: &str, group: &str) -> String {
    let digest = Sha256::digest(format!("{containerd}/{namespace}/{group}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("unix://{}/{hex}", dir.trim_end_matches('/'))
}

fn bundle_dir(flags: &Flags) -> Result<PathBuf, LifecycleError> {
    if !flags.bundle.is_empty() {
        return Ok(PathBuf::from(&flags.bundle));
    }
    std::env::current_dir().map_err(io("current dir"))
}

/// `start`: prints the address of the shim that serves this container,
/// spawning the daemon unless the pod's shim already runs, in the form
/// the calling containerd reads (see `bootstrap`).
pub fn start(flags: &Flags) -> Result<(), LifecycleError> {
    let params = bootstrap::parse(&bootstrap::read_stdin(), flags);
    let bundle = bundle_dir(flags)?;
    let group = grouping(&bundle, &flags.id);
    let dir = params.socket_dir.as_deref().unwrap_or(SOCKET_DIR);
    let address = socket_address(dir, &params.grpc_address, &flags.namespace, &group);
    if UnixStream::connect(socket_path(&address)).is_err() {
        // None: a concurrent start for the same pod won the socket, and
        // its daemon is placed by that start.
        if let Some(pid) = spawn_daemon(flags, &params, &bundle, &address)? {
            place_daemon(pid, &params, &address)?;
        }
    }
    std::fs::write(bundle.join("address"), &address).map_err(io("write the address file"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bootstrap::reply(&params, &address))
        .and_then(|()| out.flush())
        .map_err(io("write the start reply"))
}

/// The OOM score and cgroup of a daemon this start spawned and that
/// serves: on failure it is killed and its socket removed.
fn place_daemon(pid: u32, params: &StartParams, address: &str) -> Result<(), LifecycleError> {
    adjust_oom_score(pid);
    let cgroup = &params.options.shim_cgroup;
    if !cgroup.is_empty() {
        if let Err(e) = join_cgroup(pid, cgroup) {
            // SAFETY: kill(2) of the daemon we just started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = std::fs::remove_file(socket_path(address));
            return Err(e);
        }
    }
    Ok(())
}

/// Puts the daemon one step ahead of containerd (our caller) for the OOM
/// killer, as the runc shim does: under memory pressure a shim goes
/// before the manager of every shim. Best effort.
fn adjust_oom_score(pid: u32) {
    let parent = std::os::unix::process::parent_id();
    let Some(score) = std::fs::read_to_string(format!("/proc/{parent}/oom_score_adj"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let _ = std::fs::write(
        format!("/proc/{pid}/oom_score_adj"),
        (score + 1).min(1000).to_string(),
    );
}

/// Moves the daemon into the cgroup the options name (ShimCgroup), in
/// every hierarchy that has it, as the runc shim does.
fn join_cgroup(pid: u32, path: &str) -> Result<(), LifecycleError> {
    let hierarchies =
        skiff::cgroups::hierarchy::detect().map_err(io("read the host's cgroup mounts"))?;
    let mut joined = false;
    for h in hierarchies {
        let dir = h.dir_of(Path::new(path));
        if dir.is_dir() {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .map_err(io(format!("join {}", dir.display())))?;
            joined = true;
        }
    }
    if !joined {
        return Err(LifecycleError::NoShimCgroup(path.to_string()));
    }
    Ok(())
}

/// Runs this binary as the daemon, in the bundle, in its own process
/// group (a signal to containerd's group must not reach running shims),
/// and waits until it is up: it closes its stdout once listening, having
/// said `SERVING` if the socket is its own. Returns its pid then.
fn spawn_daemon(
    flags: &Flags,
    params: &StartParams,
    bundle: &Path,
    address: &str,
) -> Result<Option<u32>, LifecycleError> {
    let exe = std::env::current_exe().map_err(io("locate the shim binary"))?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(bundle)
        .args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args(["-address", &params.grpc_address, "-socket", address])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    if params.debug {
        cmd.arg("-debug");
    }
    if let Some(ttrpc) = &params.ttrpc_address {
        cmd.env("TTRPC_ADDRESS", ttrpc);
    }
    let mut child = cmd.spawn().map_err(io("spawn the shim daemon"))?;
    let mut ready = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut ready);
    }
    // The daemon is reaped by whoever inherits it once we exit.
    let pid = child.id();
    drop(child);
    if UnixStream::connect(socket_path(address)).is_err() {
        return Err(LifecycleError::DaemonFailed(flags.id.clone()));
    }
    Ok((ready == crate::server::SERVING).then_some(pid))
}

/// Removes a shim socket nobody serves any more. A pod's shim that is
/// alive keeps its socket: containerd runs `delete` for one container of
/// a pod too.
fn remove_dead_socket(address: &str) {
    let path = socket_path(address);
    if UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// `delete`: containerd lost the shim. Force-deletes the container,
/// unmounts its rootfs, removes the dead shim's socket and reports the
/// task killed.
pub fn delete(flags: &Flags) -> Result<(), LifecycleError> {
    let bundle = bundle_dir(flags)?;
    let opts = options::load(&bundle);
    let runtime = Runtime::locate(&opts.binary_name, &opts.root, &flags.namespace);
    if let Err(e) = runtime.delete(&flags.id, &bundle) {
        eprintln!("delete {}: {e}", flags.id);
    }
    rootfs::unmount(&bundle);
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        remove_dead_socket(&address);
    }
    let reply = DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(Timestamp::now()),
        ..Default::default()
    };
    std::io::stdout()
        .write_all(&reply.to_bytes())
        .map_err(io("write the delete reply"))
}

/// `-info` (containerd 2): the runtime's name and version, the options
/// containerd passed on stdin, and the runtime's `features` document.
/// containerd's CRI tells the kubelet from those features what the
/// handler supports (recursive read-only mounts, user namespaces): a
/// reply without them marks the handler as supporting neither.
pub fn info(runtime_id: &str) -> Result<(), LifecycleError> {
    let reply = runtime_info(runtime_id, &bootstrap::read_stdin());
    std::io::stdout()
        .write_all(&reply.to_bytes())
        .map_err(io("write the info reply"))
}

/// What `-info` replies to `input`: the features are those of the skiff
/// binary the options name (or the one beside the shim), as `skiff
/// features` prints them; a binary that cannot tell leaves them out, as
/// the runc shim does.
fn runtime_info(runtime_id: &str, input: &[u8]) -> RuntimeInfo {
    let given = Any::decode(input)
        .ok()
        .filter(|any| bootstrap::runtime_options(any).is_some());
    let options = given
        .as_ref()
        .and_then(bootstrap::runtime_options)
        .unwrap_or_default();
    let runtime = Runtime::locate(&options.binary_name, &options.root, "");
    let features = Command::new(&runtime.binary)
        .arg("features")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| Any {
            type_url: FEATURES_TYPE.to_string(),
            value: out.stdout,
        });
    RuntimeInfo {
        name: runtime_id.to_string(),
        version: Some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
        }),
        options: given,
        features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_group_by_sandbox_id() {
        let dir = std::env::temp_dir().join(format!("skiff-shim-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(grouping(&dir, "c1"), "c1");
        std::fs::write(
            dir.join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod9"}}"#,
        )
        .unwrap();
        assert_eq!(grouping(&dir, "c1"), "pod9");
        std::fs::write(dir.join("config.json"), r#"{"annotations":{}}"#).unwrap();
        assert_eq!(grouping(&dir, "c1"), "c1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn info_carries_the_options_and_the_runtime_features() {
        use containerd_shim_protos::protobuf::Message as _;
        use containerd_shim_protos::types::introspection::RuntimeInfo as Reference;
        let dir = std::env::temp_dir().join(format!("skiff-shim-info-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = dir.join("runtime");
        std::fs::write(
            &runtime,
            "#!/bin/sh\n[ \"$1\" = features ] && echo '{\"ociVersionMin\":\"1.0.0\"}'\n",
        )
        .unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let options = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: crate::api::Options {
                binary_name: runtime.display().to_string(),
                ..Default::default()
            }
            .to_bytes(),
        };
        let reply = runtime_info("io.containerd.skiff.v2", &options.to_bytes()).to_bytes();
        // A binary that cannot say leaves the features out.
        let quiet = Any {
            value: crate::api::Options {
                binary_name: dir.join("missing").display().to_string(),
                ..Default::default()
            }
            .to_bytes(),
            ..options.clone()
        };
        let without = runtime_info("io.containerd.skiff.v2", &quiet.to_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
        let info = Reference::parse_from_bytes(&reply).unwrap();
        assert_eq!(info.name, "io.containerd.skiff.v2");
        assert_eq!(info.options.type_url, "containerd.runc.v1.Options");
        assert_eq!(info.options.value, options.value);
        assert_eq!(info.features.type_url, FEATURES_TYPE);
        assert_eq!(info.features.value, b"{\"ociVersionMin\":\"1.0.0\"}\n");
        assert!(without.features.is_none() && without.options.is_some());
        // No options on stdin: none echoed.
        assert!(runtime_info("io.containerd.skiff.v2", &[])
            .options
            .is_none());
    }

    #[test]
    fn socket_is_a_short_stable_hash_per_group() {
        let sock = "/run/containerd/containerd.sock";
        let a = socket_address(SOCKET_DIR, sock, "k8s.io", "pod1");
        assert_eq!(a, socket_address(SOCKET_DIR, sock, "k8s.io", "pod1"));
        assert_ne!(a, socket_address(SOCKET_DIR, sock, "k8s.io", "pod2"));
        assert_eq!(
            socket_address("/run/shims/", sock, "k8s.io", "pod1"),
            a.replace(SOCKET_DIR, "/run/shims")
        );
        assert!(a.starts_with("unix:///run/containerd/s/"));
        assert_eq!(socket_path(&a).len(), SOCKET_DIR.len() + 1 + 64);
    }
}
