//! `skiff checkpoint` and `skiff restore`: runc's flags, turned into the
//! options of `criu::checkpoint` and `criu::restore`.

use std::os::fd::AsFd;
use std::path::Path;

use super::create::load_bundle_from;
use crate::cli::{CheckpointArgs, CriuArgs, RestoreArgs};
use crate::container::Container;
use crate::criu::checkpoint::CheckpointOptions;
use crate::criu::restore::RestoreOptions;
use crate::criu::{self, Common};
use crate::error::Error;
use crate::state::Root;
use crate::{fdpass, supervise, terminal};

/// The shared options; the image path defaults to ./checkpoint, as runc's.
fn common(criu_path: &Path, args: &CriuArgs) -> Result<Common, Error> {
    Ok(Common {
        criu: criu_path.to_path_buf(),
        image_path: args
            .image_path
            .clone()
            .unwrap_or_else(|| Path::new("checkpoint").to_path_buf()),
        work_path: args.work_path.clone(),
        tcp_established: args.tcp_established,
        ext_unix_sk: args.ext_unix_sk,
        shell_job: args.shell_job,
        file_locks: args.file_locks,
        manage_cgroups_mode: args
            .manage_cgroups_mode
            .as_deref()
            .map(criu::parse_cg_mode)
            .transpose()?,
        empty_ns: criu::parse_empty_ns(&args.empty_ns)?,
        lazy_pages: args.lazy_pages,
        status_fd: None,
    })
}

pub fn checkpoint(root: &Root, criu_path: &Path, args: &CheckpointArgs) -> Result<i32, Error> {
    let mut common = common(criu_path, &args.criu)?;
    common.status_fd = args.status_fd;
    let opts = CheckpointOptions {
        common,
        leave_running: args.leave_running,
        pre_dump: args.pre_dump,
        parent_path: args.parent_path.clone(),
        auto_dedup: args.criu.auto_dedup,
    };
    let container = Container::load(root, &args.id)?;
    criu::checkpoint::checkpoint(&container, &opts)?;
    Ok(0)
}

pub fn restore(
    root: &Root,
    criu_path: &Path,
    args: &RestoreArgs,
    systemd_cgroup: bool,
) -> Result<i32, Error> {
    let bundle = load_bundle_from(args.bundle.as_deref())?;
    let mut console = match &args.console_socket {
        Some(path) => Some(
            terminal::connect_console_socket(path).map_err(|e| Error::Message(e.to_string()))?,
        ),
        None => None,
    };
    let mut opts = RestoreOptions {
        common: common(criu_path, &args.criu)?,
        pid_file: args.pid_file.as_deref(),
        parent_path: args.parent_path.as_deref(),
        console: None,
        systemd_cgroup,
    };
    if args.detach {
        opts.console = console;
        criu::restore::restore(root, &args.id, &bundle, &opts)?;
        return Ok(0);
    }
    // As `run`: the restored init is supervised in the foreground, and
    // without a console socket skiff relays its terminal. Whether it has
    // one is the image's to say (CRIU hands over a pty master only for a
    // dumped pty), so the relay end is offered whatever the bundle says.
    let (forwarded, _) = super::run::prepare_to_supervise(args.no_subreaper)?;
    let relay_end = match console {
        Some(_) => None,
        None => {
            let (ours, theirs) = super::run::relay_socket()?;
            console = Some(theirs);
            Some(ours)
        }
    };
    opts.console = console;
    let container = criu::restore::restore(root, &args.id, &bundle, &opts)?;
    // Closing our copy of the other end makes the receive below end at
    // once when no master was sent.
    drop(opts);
    let master = match relay_end.map(|sock| fdpass::recv(sock.as_fd(), &mut [0u8; 64])) {
        Some(Ok((_, master))) => master,
        Some(Err(e)) => {
            let _ = container.delete(true);
            return Err(Error::Message(format!("receiving the pty master: {e}")));
        }
        None => None,
    };
    let code = supervise::supervise(container.stored.pid, &forwarded, master)
        .map_err(|e| Error::Message(format!("supervising the container: {e}")));
    if let Err(e) = container.delete(true) {
        crate::warn!("deleting container {}: {e}", container.stored.id);
    }
    code
}
