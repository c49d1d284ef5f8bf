//! `skiff create`: returns once the container is `created`.

use std::os::fd::OwnedFd;
use std::path::Path;

use crate::activation;
use crate::bundle::Bundle;
use crate::cli::CreateArgs;
use crate::container::{Container, CreateOptions};
use crate::error::Error;
use crate::state::Root;
use crate::terminal;

/// Loads the bundle named by `--bundle` (default: the current directory),
/// announcing socket-activation fds to its process.
pub fn load_bundle(args: &CreateArgs) -> Result<Bundle, Error> {
    load_bundle_from(args.bundle.as_deref())
}

/// Loads the bundle in `dir` (default: the current directory).
pub fn load_bundle_from(dir: Option<&Path>) -> Result<Bundle, Error> {
    let mut bundle = Bundle::load(dir.unwrap_or(Path::new(".")))?;
    let listen = activation::listen_fds();
    if listen > 0 {
        if let Some(mut process) = bundle.spec.process().clone() {
            activation::announce(&mut process, listen);
            bundle.spec.set_process(Some(process));
        }
    }
    Ok(bundle)
}

/// The create options from the command line (connecting to the console
/// socket, when one is given).
pub fn options(
    args: &CreateArgs,
    rootless: bool,
    systemd_cgroup: bool,
) -> Result<CreateOptions<'_>, Error> {
    let console = match &args.console_socket {
        Some(path) => Some(
            terminal::connect_console_socket(path).map_err(|e| Error::Message(e.to_string()))?,
        ),
        None => None,
    };
    Ok(CreateOptions {
        pid_file: args.pid_file.as_deref(),
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        preserve_fds: activation::listen_fds() + args.preserve_fds,
        sigmask: None,
        console,
        pidfd_socket: connect_pidfd_socket(args.pidfd_socket.as_deref())?,
        rootless,
        systemd_cgroup,
    })
}

/// Connects to `--pidfd-socket` before anything is created, so a wrong
/// path leaves nothing behind (runc fails the same way, up front).
pub fn connect_pidfd_socket(path: Option<&Path>) -> Result<Option<OwnedFd>, Error> {
    path.map(|p| {
        crate::fdpass::connect(p)
            .map_err(|e| Error::Message(format!("--pidfd-socket {}: {e}", p.display())))
    })
    .transpose()
}

pub fn run(
    root: &Root,
    args: &CreateArgs,
    rootless: bool,
    systemd_cgroup: bool,
) -> Result<i32, Error> {
    let bundle = load_bundle(args)?;
    Container::create(
        root,
        &args.id,
        &bundle,
        &options(args, rootless, systemd_cgroup)?,
    )?;
    Ok(0)
}
