//! `skiff exec [options] ID COMMAND [ARG...]` or `--process FILE`: a new
//! process in a live container, built the way runc builds it (the
//! container's `process` with the flags applied, or the given process JSON
//! as it is), then run in the foreground (exit code and signals as with
//! `run`) or detached.

use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use oci_spec::runtime::{Capability, Process};

use crate::cli::ExecArgs;
use crate::container::{Container, ExecOptions};
use crate::error::Error;
use crate::state::{self, Root};
use crate::{activation, signals, supervise, terminal};

pub fn run(root: &Root, args: &ExecArgs) -> Result<i32, Error> {
    let container = Container::load(root, &args.id)?;
    let process = match &args.process {
        Some(path) => read_process(path)?,
        None => {
            let spec = state::load_spec(&container.dir)?;
            let base = spec.process().clone().unwrap_or_default();
            from_flags(base, args)?
        }
    };
    let listen = activation::listen_fds();
    let mut process = process;
    activation::announce(&mut process, listen);
    let tty = process.terminal().unwrap_or(false);
    let console = match &args.console_socket {
        Some(path) => Some(
            terminal::connect_console_socket(path).map_err(|e| Error::Message(e.to_string()))?,
        ),
        None => None,
    };
    let pidfd_socket = super::create::connect_pidfd_socket(args.pidfd_socket.as_deref())?;
    let mut opts = ExecOptions {
        console: console.as_ref().map(AsFd::as_fd),
        pidfd_socket: pidfd_socket.as_ref().map(AsFd::as_fd),
        preserve_fds: listen + args.preserve_fds,
        sigmask: None,
        ignore_paused: args.ignore_paused,
        sub_cgroups: &args.cgroup,
    };
    if args.detach {
        let execd = container.exec(&process, &opts)?;
        write_pid_file(args.pid_file.as_deref(), execd.pid)?;
        return Ok(0);
    }
    let forwarded = signals::forwarded_set();
    let mut original = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut original))
        .map_err(|e| Error::Message(format!("blocking signals: {e}")))?;
    opts.sigmask = Some(original);
    // A terminal without a console socket: skiff itself relays the pty.
    let mut relay = None;
    if tty && console.is_none() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::Message(format!("console socketpair: {e}")))?;
        relay = Some((ours, theirs));
    }
    if let Some((_, theirs)) = &relay {
        opts.console = Some(theirs.as_fd());
    }
    let execd = container.exec(&process, &opts)?;
    let master = match relay {
        Some((ours, _)) => Some(
            terminal::recv_fd(ours.as_fd())
                .map(|(_, master)| master)
                .map_err(|e| Error::Message(format!("receiving the pty master: {e}")))?,
        ),
        None => None,
    };
    write_pid_file(args.pid_file.as_deref(), execd.pid)?;
    supervise::supervise(execd.pid, &forwarded, master)
        .map_err(|e| Error::Message(format!("supervising the exec process: {e}")))
}

fn write_pid_file(path: Option<&Path>, pid: libc::pid_t) -> Result<(), Error> {
    match path {
        Some(p) => Ok(state::write_pid_file(p, pid)?),
        None => Ok(()),
    }
}

/// A process JSON, as containerd passes it, read as runc reads it: a
/// missing or null `user` is uid 0, gid 0 (Go's zero value), where the
/// spec types require it. Errors name the field (`process.cwd`).
fn read_process(path: &Path) -> Result<Process, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let fail = |field: &str, what: &dyn std::fmt::Display| {
        Error::Message(format!("--process {}: {field}: {what}", path.display()))
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| fail("process", &e))?;
    let Some(fields) = value.as_object_mut() else {
        return Err(fail("process", &"not a JSON object"));
    };
    if fields.get("user").is_none_or(serde_json::Value::is_null) {
        fields.insert("user".into(), serde_json::json!({}));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = match e.path().to_string() {
            p if p == "." => "process".to_string(),
            p => format!("process.{p}"),
        };
        let inner = e.into_inner().to_string();
        // serde names a missing field in its message; it belongs in the path.
        match inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((name, _)) => {
                field = format!("{field}.{name}");
                fail(&field, &"missing")
            }
            None => fail(&field, &inner),
        }
    })
}

/// The container's process with runc's exec flags applied.
fn from_flags(mut p: Process, a: &ExecArgs) -> Result<Process, Error> {
    if a.command.is_empty() {
        return Err(Error::Message(
            "exec: a command is required (or --process FILE)".into(),
        ));
    }
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        p.set_env(Some(merge_env(
            p.env().as_deref().unwrap_or_default(),
            &a.env,
        )));
    }
    if let Some(user) = &a.user {
        let (uid, gid) = parse_user(user)?;
        let mut u = p.user().clone();
        u.set_uid(uid);
        if let Some(gid) = gid {
            u.set_gid(gid);
        }
        p.set_user(u);
    }
    if !a.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(u);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    if !a.cap.is_empty() {
        add_caps(&mut p, &a.cap)?;
    }
    Ok(p)
}

/// The container's environment with `extra` applied: a key given again
/// replaces the old value instead of shadowing it.
fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or_default().to_string();
    let mut out: Vec<String> = base.to_vec();
    for e in extra {
        let k = key(e);
        out.retain(|old| key(old) != k);
        out.push(e.clone());
    }
    out
}

/// `--user uid[:gid]`, numeric as with runc.
fn parse_user(text: &str) -> Result<(u32, Option<u32>), Error> {
    let bad = || Error::Message(format!("--user {text:?}: expected <uid>[:<gid>] (numbers)"));
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((uid, gid))
}

/// `--cap`: runc adds each to the bounding, effective and permitted sets,
/// and to the ambient set when the process has inheritable capabilities.
fn add_caps(p: &mut Process, names: &[String]) -> Result<(), Error> {
    let mut caps = p.capabilities().clone().unwrap_or_default();
    for name in names {
        let json = serde_json::Value::String(name.clone());
        let cap: Capability = serde_json::from_value(json)
            .map_err(|_| Error::Message(format!("--cap {name}: unknown capability")))?;
        let add = |set: Option<&std::collections::HashSet<Capability>>| {
            let mut s = set.cloned().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        caps.set_bounding(add(caps.bounding().as_ref()));
        caps.set_effective(add(caps.effective().as_ref()));
        caps.set_permitted(add(caps.permitted().as_ref()));
        if caps.inheritable().as_ref().is_some_and(|s| !s.is_empty()) {
            caps.set_ambient(add(caps.ambient().as_ref()));
        }
    }
    p.set_capabilities(Some(caps));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_by_key() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let merged = merge_env(&base, &["A=2".into(), "B=3".into()]);
        assert_eq!(merged, ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("root").is_err() && parse_user("1:x").is_err());
    }

    #[test]
    fn caps_go_to_three_sets() {
        let mut p = Process::default();
        add_caps(&mut p, &["CAP_SYS_ADMIN".into(), "NET_RAW".into()]).unwrap();
        let c = p.capabilities().as_ref().unwrap();
        for set in [c.bounding(), c.effective(), c.permitted()] {
            assert!(set.as_ref().unwrap().contains(&Capability::SysAdmin));
            assert!(set.as_ref().unwrap().contains(&Capability::NetRaw));
        }
        assert!(add_caps(&mut p, &["CAP_BOGUS".into()]).is_err());
    }
}
