//! config.md#process: what the container process is and may do.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use serde_json::{json, Value};

use super::{caps, create_fails, expect_eq, output_with, report_with};
use crate::ctx::{fail, Check, Ctx, Failure};
use crate::suite::{case, Case, Level::*};
use crate::{ensure, skip};

pub fn cases() -> Vec<Case> {
    vec![
        case("process.args", "config.md#process", Must, args),
        case(
            "process.args.path_lookup",
            "config.md#process (args[0] via PATH)",
            Must,
            path_lookup,
        ),
        case(
            "process.args.not_found_fails",
            "runtime.md#create",
            Must,
            not_found,
        ),
        case("process.env", "config.md#process", Must, env),
        case(
            "process.env.home_default",
            "runc (HOME from /etc/passwd)",
            Runc,
            home_default,
        ),
        case("process.cwd", "config.md#process", Must, cwd),
        case(
            "process.cwd.relative_fails",
            "config.md#process (cwd MUST be absolute)",
            Must,
            cwd_relative,
        ),
        case("process.user.uid", "config.md#user", Must, user_uid),
        case("process.user.gid", "config.md#user", Must, user_gid),
        case(
            "process.user.additional_gids",
            "config.md#user",
            Must,
            additional_gids,
        ),
        case("process.user.umask", "config.md#user", Must, umask),
        case(
            "process.user.umask_default",
            "runc (0022)",
            Runc,
            umask_default,
        ),
        case(
            "process.rlimits.nofile",
            "config.md#process",
            Must,
            rlimit_nofile,
        ),
        case(
            "process.rlimits.several",
            "config.md#process",
            Must,
            rlimit_several,
        ),
        case(
            "process.rlimits.unsettable_fails",
            "config.md#process",
            Must,
            rlimit_fails,
        ),
        case(
            "process.rlimits.unknown_type_fails",
            "config.md#process",
            Must,
            rlimit_unknown,
        ),
        case(
            "process.capabilities.bounding",
            "config.md#linux-process",
            Must,
            caps_bounding,
        ),
        case(
            "process.capabilities.permitted",
            "config.md#linux-process",
            Must,
            caps_permitted,
        ),
        case(
            "process.capabilities.effective",
            "config.md#linux-process",
            Must,
            caps_effective,
        ),
        case(
            "process.capabilities.inheritable",
            "config.md#linux-process",
            Must,
            caps_inheritable,
        ),
        case(
            "process.capabilities.ambient",
            "config.md#linux-process",
            Must,
            caps_ambient,
        ),
        case(
            "process.capabilities.none",
            "config.md#linux-process",
            Must,
            caps_none,
        ),
        case(
            "process.capabilities.unknown_warns",
            "config.md#linux-process (SHOULD NOT fail)",
            Should,
            caps_unknown,
        ),
        case(
            "process.no_new_privileges.true",
            "config.md#linux-process",
            Must,
            nnp_true,
        ),
        case(
            "process.no_new_privileges.false",
            "config.md#linux-process",
            Must,
            nnp_false,
        ),
        case(
            "process.oom_score_adj",
            "config.md#linux-process",
            Must,
            oom,
        ),
        case(
            "process.terminal.console_socket",
            "config.md#process (terminal)",
            Must,
            terminal_socket,
        ),
        case(
            "process.terminal.dev_console",
            "config.md#process (terminal)",
            Must,
            terminal_dev_console,
        ),
        case(
            "process.memory_policy",
            "config-linux.md#memory-policy (runtime-spec 1.3)",
            Must,
            memory_policy,
        ),
        case(
            "process.memory_policy.bad_mode_fails",
            "config-linux.md#memory-policy (runtime-spec 1.3)",
            Must,
            memory_policy_bad_mode,
        ),
        case(
            "process.pidfd_socket",
            "runc 1.2 create --pidfd-socket",
            Runc,
            pidfd_socket,
        ),
        case(
            "process.console_size",
            "config.md#process (consoleSize)",
            Must,
            console_size,
        ),
        case(
            "process.scheduler",
            "config.md#linux-process (scheduler)",
            Must,
            scheduler,
        ),
        case(
            "process.io_priority",
            "config.md#linux-process (ioPriority)",
            Must,
            io_priority,
        ),
        case(
            "process.exec_cpu_affinity",
            "config.md#linux-process (execCPUAffinity)",
            Must,
            cpu_affinity,
        ),
        case(
            "process.apparmor_profile",
            "config.md#linux-process",
            Must,
            apparmor,
        ),
        case(
            "process.selinux_label",
            "config.md#linux-process",
            Must,
            selinux,
        ),
        case(
            "process.no_runtime_fds",
            "runtime.md (no runtime fd leaks, CVE-2024-21626)",
            Must,
            no_fds,
        ),
        case(
            "process.preserve_fds",
            "runc --preserve-fds",
            Runc,
            preserve_fds,
        ),
        case(
            "process.pid_one",
            "config.md#linux-namespaces (pid)",
            Must,
            pid_one,
        ),
    ]
}

fn args(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.args(&["/checker", "report", "two words", "x"]);
    })?;
    expect_eq(
        "args",
        r["args"].clone(),
        json!(["/checker", "report", "two words", "x"]),
    )
}

fn path_lookup(ctx: &mut Ctx) -> Check {
    let out = output_with(ctx, &["echo", "found"], |b| {
        b.config["process"]["env"] = json!(["PATH=/nowhere:/bin"]);
    })?;
    expect_eq("output", out.as_str(), "found")
}

fn not_found(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["no-such-program"]);
    create_fails(ctx, &b)
}

fn env(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["env"] = json!(["PATH=/bin", "A=1", "SPACES=a b c", "EMPTY="]);
    })?;
    let env: Vec<&str> = r["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for want in ["PATH=/bin", "A=1", "SPACES=a b c", "EMPTY="] {
        ensure!(env.contains(&want), "{want} missing from {env:?}");
    }
    Ok(())
}

fn home_default(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    })?;
    let env: Vec<&str> = r["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        env.contains(&"HOME=/home/user"),
        "HOME not from /etc/passwd: {env:?}"
    );
    Ok(())
}

fn cwd(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["cwd"] = json!("/tmp");
    })?;
    expect_eq("cwd", r["cwd"].as_str(), Some("/tmp"))
}

fn cwd_relative(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.config["process"]["cwd"] = json!("tmp");
    create_fails(ctx, &b)
}

fn user_uid(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000})
    })?;
    expect_eq(
        "uid",
        (r["uid"].as_u64(), r["euid"].as_u64()),
        (Some(1000), Some(1000)),
    )
}

fn user_gid(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1234})
    })?;
    expect_eq(
        "gid",
        (r["gid"].as_u64(), r["egid"].as_u64()),
        (Some(1234), Some(1234)),
    )
}

fn additional_gids(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [7, 8]})
    })?;
    let mut groups: Vec<u64> = r["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    groups.sort();
    groups.dedup();
    ensure!(
        groups.contains(&7) && groups.contains(&8),
        "groups {groups:?}"
    );
    Ok(())
}

fn umask(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["user"] = json!({"uid": 0, "gid": 0, "umask": 0o077})
    })?;
    expect_eq("umask", r["umask"].as_str(), Some("0077"))
}

fn umask_default(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |_| {})?;
    expect_eq("umask", r["umask"].as_str(), Some("0022"))
}

fn rlimit_nofile(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]);
    })?;
    expect_eq(
        "RLIMIT_NOFILE",
        r["rlimits"]["RLIMIT_NOFILE"].clone(),
        json!([321, 654]),
    )
}

fn rlimit_several(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["rlimits"] = json!([
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
            {"type": "RLIMIT_MSGQUEUE", "soft": 1000, "hard": 2000}
        ]);
    })?;
    expect_eq(
        "RLIMIT_CORE",
        r["rlimits"]["RLIMIT_CORE"].clone(),
        json!([0, 0]),
    )?;
    expect_eq(
        "RLIMIT_NPROC",
        r["rlimits"]["RLIMIT_NPROC"].clone(),
        json!([500, 600]),
    )?;
    expect_eq(
        "RLIMIT_MSGQUEUE",
        r["rlimits"]["RLIMIT_MSGQUEUE"].clone(),
        json!([1000, 2000]),
    )
}

fn rlimit_fails(ctx: &mut Ctx) -> Check {
    // Above fs.nr_open no process can have that many files.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1048576);
    let mut b = ctx.bundle();
    b.config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": nr_open + 1, "hard": nr_open + 1}]);
    create_fails(ctx, &b)
}

fn rlimit_unknown(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    create_fails(ctx, &b)
}

const KILL: u64 = 1 << 5;
const NET_BIND: u64 = 1 << 10;
const CHOWN: u64 = 1;
const SETUID: u64 = 1 << 7;

fn five_sets(ctx: &mut Ctx) -> Check<Value> {
    report_with(ctx, |b| {
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        b.config["process"]["noNewPrivileges"] = json!(false);
        b.config["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SETUID"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "effective": ["CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
            "ambient": ["CAP_NET_BIND_SERVICE"]
        });
    })
}

fn caps_bounding(ctx: &mut Ctx) -> Check {
    let r = five_sets(ctx)?;
    expect_eq(
        "CapBnd",
        caps(&r, "bounding"),
        KILL | NET_BIND | CHOWN | SETUID,
    )
}

fn caps_inheritable(ctx: &mut Ctx) -> Check {
    let r = five_sets(ctx)?;
    expect_eq("CapInh", caps(&r, "inheritable"), NET_BIND | CHOWN)
}

fn caps_ambient(ctx: &mut Ctx) -> Check {
    let r = five_sets(ctx)?;
    expect_eq("CapAmb", caps(&r, "ambient"), NET_BIND)
}

// For a non-root user without file capabilities, execve leaves exactly
// the ambient set in permitted and effective: that is what proves the
// runtime set all three as asked.
fn caps_permitted(ctx: &mut Ctx) -> Check {
    let r = five_sets(ctx)?;
    expect_eq("CapPrm", caps(&r, "permitted"), NET_BIND)
}

fn caps_effective(ctx: &mut Ctx) -> Check {
    // As root, execve makes effective = permitted; set them apart from
    // the bounding set to see the permitted set survive.
    let r = report_with(ctx, |b| {
        b.config["process"]["capabilities"] = json!({
            "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL"]
        });
    })?;
    expect_eq("CapEff", caps(&r, "effective"), KILL | CHOWN)
}

fn caps_none(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["capabilities"] = json!({});
    })?;
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        expect_eq(set, caps(&r, set), 0)?;
    }
    Ok(())
}

fn caps_unknown(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["capabilities"]["bounding"] =
            json!(["CAP_KILL", "CAP_NOT_A_CAPABILITY"]);
    })?;
    expect_eq("CapBnd", caps(&r, "bounding"), KILL)
}

fn nnp_true(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["noNewPrivileges"] = json!(true)
    })?;
    expect_eq("NoNewPrivs", r["no_new_privs"].as_str(), Some("1"))
}

fn nnp_false(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["noNewPrivileges"] = json!(false)
    })?;
    expect_eq("NoNewPrivs", r["no_new_privs"].as_str(), Some("0"))
}

fn oom(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| b.config["process"]["oomScoreAdj"] = json!(123))?;
    expect_eq("oom_score_adj", r["oom_score_adj"].as_str(), Some("123"))
}

/// A unix socket named `name` listening in the case's directory.
fn listening_socket(
    ctx: &Ctx,
    name: &str,
) -> Check<(std::os::unix::net::UnixListener, std::path::PathBuf)> {
    let path = ctx.dir.join(name);
    let l =
        std::os::unix::net::UnixListener::bind(&path).map_err(|e| Failure::Fail(e.to_string()))?;
    Ok((l, path))
}

/// Receives the fd the runtime sends (runc's SCM_RIGHTS format): a pty
/// master, a pidfd.
fn receive_fd(l: &std::os::unix::net::UnixListener) -> Check<OwnedFd> {
    l.set_nonblocking(false).ok();
    let (conn, _) = l
        .accept()
        .map_err(|e| Failure::Fail(format!("accept: {e}")))?;
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .map_err(|e| Failure::Fail(format!("recvmsg: {e}")))?;
    for c in msg.cmsgs().map_err(|e| Failure::Fail(e.to_string()))? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    fail("no fd in the message")
}

/// Creates a terminal container with `args`, takes the master, starts it,
/// and returns everything it printed.
fn terminal_output(ctx: &mut Ctx, args: &[&str], size: Option<(u64, u64)>) -> Check<String> {
    let (listener, path) = listening_socket(ctx, "console.sock")?;
    let mut b = ctx.bundle();
    b.args(args);
    b.config["process"]["terminal"] = json!(true);
    if let Some((h, w)) = size {
        b.config["process"]["consoleSize"] = json!({"height": h, "width": w});
    }
    let accept = std::thread::spawn(move || receive_fd(&listener));
    let id = ctx.create(&b, &["--console-socket", &path.display().to_string()])?;
    let master = accept
        .join()
        .map_err(|_| Failure::Fail("console receiver panicked".into()))??;
    ctx.rt(&["start", &id]).ok("start")?;
    let mut out = String::new();
    let mut f = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    Ok(out)
}

/// The container's process runs under the NUMA policy asked for, flags
/// included (node 0 exists on every machine).
fn memory_policy(ctx: &mut Ctx) -> Check {
    let out = output_with(ctx, &["/checker", "mempolicy"], |b| {
        b.config["linux"]["memoryPolicy"] =
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]});
    })?;
    expect_eq(
        "get_mempolicy",
        out.as_str(),
        "mode=2 flags=0x8000 nodes=0x1",
    )
}

fn memory_policy_bad_mode(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_SIDEWAYS", "nodes": "0"});
    create_fails(ctx, &b)
}

/// The runtime sends a pidfd of the init to `--pidfd-socket` before
/// `create` returns.
fn pidfd_socket(ctx: &mut Ctx) -> Check {
    let (listener, path) = listening_socket(ctx, "pidfd.sock")?;
    let mut b = ctx.bundle();
    b.args(&["/checker", "sleep", "600"]);
    let accept = std::thread::spawn(move || receive_fd(&listener));
    let id = ctx.create(&b, &["--pidfd-socket", &path.display().to_string()])?;
    let pidfd = accept
        .join()
        .map_err(|_| Failure::Fail("pidfd receiver panicked".into()))??;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))
        .map_err(|e| Failure::Fail(e.to_string()))?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse::<i64>().ok());
    expect_eq("pidfd's pid", pid, ctx.state(&id)?["pid"].as_i64())
}

fn terminal_socket(ctx: &mut Ctx) -> Check {
    let out = terminal_output(ctx, &["/checker", "report"], None)?;
    let r: Value =
        serde_json::from_str(out.trim()).map_err(|e| Failure::Fail(format!("{e}: {out}")))?;
    expect_eq("stdin is a tty", r["stdin_tty"].as_bool(), Some(true))
}

fn terminal_dev_console(ctx: &mut Ctx) -> Check {
    let out = terminal_output(ctx, &["/checker", "stat", "/dev/console"], None)?;
    let v: Value =
        serde_json::from_str(out.trim()).map_err(|e| Failure::Fail(format!("{e}: {out}")))?;
    expect_eq("/dev/console type", v[0]["type"].as_str(), Some("c"))?;
    expect_eq(
        "/dev/console is a pty (major 136)",
        v[0]["major"].as_u64(),
        Some(136),
    )
}

fn console_size(ctx: &mut Ctx) -> Check {
    let out = terminal_output(ctx, &["stty", "size"], Some((33, 101)))?;
    expect_eq("stty size", out.trim(), "33 101")
}

fn scheduler(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    })?;
    expect_eq("policy", r["sched"]["policy"].as_i64(), Some(3))?;
    expect_eq("nice", r["sched"]["nice"].as_i64(), Some(7))
}

fn io_priority(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    })?;
    expect_eq(
        "ioprio class/level",
        (
            r["sched"]["ioprio_class"].as_i64(),
            r["sched"]["ioprio_level"].as_i64(),
        ),
        (Some(2), Some(6)),
    )
}

fn cpu_affinity(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["process"]["execCPUAffinity"] = json!({"final": "0"});
    })?;
    expect_eq("Cpus_allowed_list", r["cpus_allowed"].as_str(), Some("0"))
}

fn apparmor(ctx: &mut Ctx) -> Check {
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if !enabled {
        skip!("AppArmor is not enabled on this host");
    }
    let out = output_with(ctx, &["cat", "/proc/self/attr/current"], |b| {
        b.config["process"]["apparmorProfile"] = json!("unconfined");
    })?;
    ensure!(out.contains("unconfined"), "profile {out}");
    Ok(())
}

fn selinux(ctx: &mut Ctx) -> Check {
    if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        skip!("SELinux is not enabled on this host");
    }
    let _ = ctx;
    fail("SELinux hosts are not covered yet")
}

fn no_fds(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |_| {})?;
    let fds: Vec<&str> = r["fds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    // 0-2 and the one the checker's read_dir holds.
    ensure!(fds.len() <= 4, "fds open in the container: {fds:?}");
    Ok(())
}

fn preserve_fds(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "cat", "/proc/self/fd/3"]);
    b.write();
    let file = ctx.dir.join("fd3");
    std::fs::write(&file, "passed along").map_err(|e| Failure::Fail(e.to_string()))?;
    let f = std::fs::File::open(&file).map_err(|e| Failure::Fail(e.to_string()))?;
    let raw = f.as_raw_fd();
    let id = ctx.id();
    let out = ctx.rt_with(
        &[
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            &b.dir.display().to_string(),
            &id,
        ],
        Duration::from_secs(60),
        |c| {
            // SAFETY: only dup2/fcntl between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(c, move || {
                    if raw == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0);
                    } else {
                        libc::dup2(raw, 3);
                    }
                    Ok(())
                });
            }
        },
    );
    let out = out.ok("run --preserve-fds 1")?;
    expect_eq("fd 3 content", out.stdout.trim(), "passed along")
}

fn pid_one(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |_| {})?;
    expect_eq("pid in a new pid namespace", r["pid"].as_i64(), Some(1))
}
