//! The shim binary's own lifecycle, as containerd drives it: `start`
//! (spawn the daemon or join the pod's), `delete` (clean up after a lost
//! shim), serving until Shutdown.

use std::path::Path;
use std::sync::Arc;

use containerd_shim::api::Options;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::{read_address, read_options, write_address};
use containerd_shim::{Config, DeleteResponse, ExitSignal, Flags, StartOpts};

use crate::events::Publisher;
use crate::rootfs;
use crate::runtime::Runtime;
use crate::service::Service;

/// The annotation CRI puts on every container of a pod: containers of one
/// pod share one shim.
const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

pub struct Shim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
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

/// The runtime named by the options containerd saved in the bundle.
fn runtime_for(bundle: &Path, namespace: &str) -> Runtime {
    let opts = read_options(bundle).unwrap_or_else(|_| Options::default());
    Runtime::locate(&opts.binary_name, &opts.root, namespace)
}

/// Removes a shim socket nobody serves any more. A pod's shim that is
/// alive keeps its socket: containerd runs `delete` for one container of
/// a pod too.
fn remove_dead_socket(address: &str) {
    let path = address
        .trim()
        .strip_prefix("unix://")
        .unwrap_or(address.trim());
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

impl Shim {
    /// The Task service the daemon serves.
    pub fn service(&self, publisher: Publisher) -> Service {
        Service::new(self.namespace.clone(), Some(publisher), self.exit.clone())
    }
}

impl containerd_shim::Shim for Shim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Shim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let cwd = std::env::current_dir().map_err(|e| containerd_shim::Error::IoError {
            context: "current dir".into(),
            err: e,
        })?;
        let group = grouping(&cwd, &opts.id);
        let (_, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
        write_address(&address)?;
        Ok(address)
    }

    /// containerd lost the shim: force-delete the container, unmount its
    /// rootfs, remove the dead shim's socket and report it killed.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = std::env::current_dir().map_err(|e| containerd_shim::Error::IoError {
            context: "current dir".into(),
            err: e,
        })?;
        let runtime = runtime_for(&bundle, &self.namespace);
        if let Err(e) = runtime.delete(&self.id, &bundle) {
            log::warn!("delete {}: {e}", self.id);
        }
        rootfs::unmount(&bundle);
        if let Ok(address) = read_address() {
            remove_dead_socket(&address);
        }
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(Timestamp::now()),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    /// Only the crate's own serving loop calls this, and serve.rs
    /// replaces that loop; it is here because the trait asks for it.
    fn create_task_service(&self, _: RemotePublisher) -> Service {
        let publisher = std::env::var("TTRPC_ADDRESS")
            .ok()
            .and_then(|a| Publisher::connect(&a, &self.namespace).ok());
        Service::new(self.namespace.clone(), publisher, self.exit.clone())
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
}
