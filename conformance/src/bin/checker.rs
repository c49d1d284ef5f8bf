//! skiff-checker: copied into every conformance bundle and run as (or by)
//! the container process. It reports, as JSON on stdout, what the process
//! can observe about itself: the conformance runner compares that with the
//! config. Static, std + libc only, so it runs in any rootfs.
//!
//!   skiff-checker report              everything below, one JSON object
//!   skiff-checker stat PATH...        type, device numbers, mode, owner
//!   skiff-checker cat PATH            file content (or the error)
//!   skiff-checker write PATH TEXT     "ok" or the errno name
//!   skiff-checker mkdir PATH          "ok" or the errno name
//!   skiff-checker ls DIR              entries, one a line
//!   skiff-checker syscall NAME        runs one syscall, prints "ok" or the errno
//!   skiff-checker syscall-probe       ~50 syscalls, name -> "ok" or errno
//!   skiff-checker syscall-loop N      ns per getppid over N calls
//!   skiff-checker sleep SECS | exit CODE | wait-signal | pause

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;

use serde_json::{json, Value};

fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EROFS => "EROFS",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ENOSYS => "ENOSYS",
        libc::EBADF => "EBADF",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::ENXIO => "ENXIO",
        libc::ENODEV => "ENODEV",
        libc::EFAULT => "EFAULT",
        libc::ENOMEM => "ENOMEM",
        libc::EAGAIN => "EAGAIN",
        libc::ENOTSUP => "ENOTSUP",
        libc::EBUSY => "EBUSY",
        libc::ENOSPC => "ENOSPC",
        libc::EMFILE => "EMFILE",
        libc::E2BIG => "E2BIG",
        libc::ESRCH => "ESRCH",
        libc::ENOTTY => "ENOTTY",
        _ => return format!("E{e}"),
    };
    name.to_string()
}

fn last_errno() -> String {
    errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn io_errno(e: &std::io::Error) -> String {
    errno_name(e.raw_os_error().unwrap_or(0))
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn status_field(status: &str, key: &str) -> Value {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| Value::String(v.trim().to_string()))
        .unwrap_or(Value::Null)
}

fn rlimits() -> Value {
    const NAMES: [(&str, libc::__rlimit_resource_t); 16] = [
        ("RLIMIT_CPU", libc::RLIMIT_CPU),
        ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        ("RLIMIT_DATA", libc::RLIMIT_DATA),
        ("RLIMIT_STACK", libc::RLIMIT_STACK),
        ("RLIMIT_CORE", libc::RLIMIT_CORE),
        ("RLIMIT_RSS", libc::RLIMIT_RSS),
        ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        ("RLIMIT_AS", libc::RLIMIT_AS),
        ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        ("RLIMIT_NICE", libc::RLIMIT_NICE),
        ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ];
    let mut out = BTreeMap::new();
    for (name, res) in NAMES {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into l.
        if unsafe { libc::getrlimit(res, &mut l) } == 0 {
            out.insert(name.to_string(), json!([l.rlim_cur, l.rlim_max]));
        }
    }
    json!(out)
}

fn namespaces() -> Value {
    let mut out = BTreeMap::new();
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        if let Ok(link) = std::fs::read_link(format!("/proc/self/ns/{ns}")) {
            out.insert(ns.to_string(), Value::String(link.display().to_string()));
        }
    }
    json!(out)
}

fn mounts() -> Value {
    let info = read("/proc/self/mountinfo").unwrap_or_default();
    let list: Vec<Value> = info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(json!({
                "root": left.get(3)?,
                "target": left.get(4)?,
                "options": left.get(5)?,
                "optional": left[6..].join(" "),
                "fstype": right.first()?,
                "source": right.get(1)?,
                "super": right.get(2).copied().unwrap_or(""),
            }))
        })
        .collect();
    json!(list)
}

fn stat_json(path: &str) -> Value {
    let c = match CString::new(path) {
        Ok(c) => c,
        Err(_) => return json!({"path": path, "error": "EINVAL"}),
    };
    // SAFETY: zeroed stat is valid; lstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and stat buffer.
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } != 0 {
        return json!({"path": path, "error": last_errno()});
    }
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR => "c",
        libc::S_IFBLK => "b",
        libc::S_IFIFO => "p",
        libc::S_IFDIR => "d",
        libc::S_IFLNK => "l",
        libc::S_IFSOCK => "s",
        _ => "f",
    };
    let link = std::fs::read_link(path)
        .ok()
        .map(|l| l.display().to_string());
    json!({
        "path": path,
        "type": kind,
        "major": libc::major(st.st_rdev),
        "minor": libc::minor(st.st_rdev),
        "mode": st.st_mode & 0o7777,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "link": link,
    })
}

fn sched() -> Value {
    // /proc/self/stat: nice is field 19, rt_priority 40, policy 41.
    let stat = read("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<i64>().ok());
    // SAFETY: ioprio_get(IOPRIO_WHO_PROCESS, 0) only reads.
    let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, 0) };
    json!({
        "nice": field(19),
        "rt_priority": field(40),
        "policy": field(41),
        "ioprio_class": if ioprio >= 0 { Some(ioprio >> 13) } else { None },
        "ioprio_level": if ioprio >= 0 { Some(ioprio & 0xff) } else { None },
    })
}

fn report() -> Value {
    let status = read("/proc/self/status").unwrap_or_default();
    let mut groups: Vec<u32> = vec![0; 256];
    // SAFETY: buffer of 256 gid_t.
    let n = unsafe { libc::getgroups(256, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    // SAFETY: utsname is plain bytes; all-zero is valid.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills uts.
    unsafe { libc::uname(&mut uts) };
    let cstr = |buf: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates each field.
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    // SAFETY: plain syscalls without pointers.
    let (uid, gid, euid, egid, pid, ppid, pers) = unsafe {
        (
            libc::getuid(),
            libc::getgid(),
            libc::geteuid(),
            libc::getegid(),
            libc::getpid(),
            libc::getppid(),
            libc::personality(0xffff_ffff),
        )
    };
    // SAFETY: isatty only inspects fd 0.
    let stdin_tty = unsafe { libc::isatty(0) } == 1;
    json!({
        "args": std::env::args().collect::<Vec<_>>(),
        "env": std::env::vars().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "uid": uid, "gid": gid, "euid": euid, "egid": egid,
        "groups": groups,
        "pid": pid, "ppid": ppid,
        "umask": status_field(&status, "Umask"),
        "caps": {
            "bounding": status_field(&status, "CapBnd"),
            "effective": status_field(&status, "CapEff"),
            "permitted": status_field(&status, "CapPrm"),
            "inheritable": status_field(&status, "CapInh"),
            "ambient": status_field(&status, "CapAmb"),
        },
        "no_new_privs": status_field(&status, "NoNewPrivs"),
        "seccomp": status_field(&status, "Seccomp"),
        "cpus_allowed": status_field(&status, "Cpus_allowed_list"),
        "rlimits": rlimits(),
        "hostname": cstr(&uts.nodename),
        "domainname": cstr(&uts.domainname),
        "machine": cstr(&uts.machine),
        "personality": pers,
        "namespaces": namespaces(),
        "mounts": mounts(),
        "oom_score_adj": read("/proc/self/oom_score_adj").map(|s| s.trim().to_string()),
        "cgroup": read("/proc/self/cgroup"),
        "timens_offsets": read("/proc/self/timens_offsets"),
        "uid_map": read("/proc/self/uid_map"),
        "gid_map": read("/proc/self/gid_map"),
        "sched": sched(),
        "fds": fds,
        "stdin_tty": stdin_tty,
    })
}

/// A syscall by name, for seccomp cases: returns "ok" or the errno name.
fn syscall(name: &str, arg: Option<&str>) -> String {
    let arg: i64 = arg.and_then(|a| a.parse().ok()).unwrap_or(0);
    let path = c"/tmp/skiff-checker-probe";
    // SAFETY: each call gets valid arguments or harmless numbers.
    let r: i64 = unsafe {
        match name {
            "getppid" => libc::syscall(libc::SYS_getppid),
            "getpid" => libc::syscall(libc::SYS_getpid),
            "getuid" => libc::syscall(libc::SYS_getuid),
            "mkdir" => libc::syscall(libc::SYS_mkdir, path.as_ptr(), 0o755),
            "chmod" => libc::syscall(libc::SYS_chmod, c"/".as_ptr(), arg),
            "personality" => libc::syscall(libc::SYS_personality, arg),
            "socket" => libc::syscall(libc::SYS_socket, arg, libc::SOCK_STREAM, 0),
            "uname" => {
                let mut u: libc::utsname = std::mem::zeroed();
                libc::syscall(libc::SYS_uname, &mut u)
            }
            "unshare" => libc::syscall(libc::SYS_unshare, arg),
            "setns" => libc::syscall(libc::SYS_setns, -1, 0),
            "mount" => libc::syscall(
                libc::SYS_mount,
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                0,
            ),
            "kill" => libc::syscall(libc::SYS_kill, 0, 0),
            "dup" => libc::syscall(libc::SYS_dup, arg),
            _ => return format!("unknown syscall {name}"),
        }
    };
    if r < 0 {
        last_errno()
    } else {
        "ok".into()
    }
}

/// A fixed set of syscalls with harmless arguments, for comparing what a
/// seccomp profile allows under two runtimes: name -> "ok" or errno.
fn probe() -> Value {
    let null = std::ptr::null::<libc::c_void>();
    let tmp = c"/tmp/skiff-probe-dir";
    // Each result is read right after its call, before errno can change.
    let res = |r: i64| {
        if r < 0 {
            last_errno()
        } else {
            "ok".to_string()
        }
    };
    let calls: Vec<(&str, String)> = unsafe {
        // SAFETY: every call gets arguments the kernel rejects or that do
        // nothing lasting (bad magic, NULL pointers, fd -1, queries).
        vec![
            ("getppid", res(libc::syscall(libc::SYS_getppid))),
            (
                "uname",
                res({
                    let mut u: libc::utsname = std::mem::zeroed();
                    libc::syscall(libc::SYS_uname, &mut u)
                }),
            ),
            (
                "mkdir",
                res(libc::syscall(libc::SYS_mkdir, tmp.as_ptr(), 0o700)),
            ),
            ("rmdir", res(libc::syscall(libc::SYS_rmdir, tmp.as_ptr()))),
            (
                "personality(0)",
                res(libc::syscall(libc::SYS_personality, 0)),
            ),
            (
                "personality(8)",
                res(libc::syscall(libc::SYS_personality, 8)),
            ),
            (
                "personality(0x20000)",
                res(libc::syscall(libc::SYS_personality, 0x20000)),
            ),
            (
                "personality(query)",
                res(libc::syscall(libc::SYS_personality, 0xffff_ffffu32 as i64)),
            ),
            (
                "personality(1)",
                res(libc::syscall(libc::SYS_personality, 1)),
            ),
            (
                "personality(0)again",
                res(libc::syscall(libc::SYS_personality, 0)),
            ),
            (
                "socket(AF_INET)",
                res(libc::syscall(libc::SYS_socket, 2, 1, 0)),
            ),
            (
                "socket(AF_INET6)",
                res(libc::syscall(libc::SYS_socket, 10, 1, 0)),
            ),
            (
                "socket(AF_NETLINK)",
                res(libc::syscall(libc::SYS_socket, 16, 3, 0)),
            ),
            (
                "socket(AF_VSOCK)",
                res(libc::syscall(libc::SYS_socket, 40, 1, 0)),
            ),
            (
                "unshare(NEWUSER)",
                res(libc::syscall(libc::SYS_unshare, 0x1000_0000)),
            ),
            (
                "unshare(NEWNS)",
                res(libc::syscall(libc::SYS_unshare, 0x0002_0000)),
            ),
            ("setns(-1)", res(libc::syscall(libc::SYS_setns, -1, 0))),
            (
                "mount",
                res(libc::syscall(libc::SYS_mount, null, null, null, 0, null)),
            ),
            (
                "umount2",
                res(libc::syscall(
                    libc::SYS_umount2,
                    c"/nonexistent".as_ptr(),
                    0,
                )),
            ),
            (
                "reboot(bad magic)",
                res(libc::syscall(libc::SYS_reboot, 0, 0, 0, null)),
            ),
            (
                "syslog(size)",
                res(libc::syscall(libc::SYS_syslog, 10, null, 0)),
            ),
            (
                "add_key",
                res(libc::syscall(libc::SYS_add_key, null, null, null, 0, 0)),
            ),
            ("keyctl", res(libc::syscall(libc::SYS_keyctl, 0, -3, 0))),
            (
                "request_key",
                res(libc::syscall(libc::SYS_request_key, null, null, null, 0)),
            ),
            ("bpf", res(libc::syscall(libc::SYS_bpf, 0, null, 0))),
            (
                "perf_event_open",
                res(libc::syscall(libc::SYS_perf_event_open, null, 0, -1, -1, 0)),
            ),
            (
                "ptrace(PEEKUSER pid 0)",
                res(libc::syscall(libc::SYS_ptrace, 3, 0, 0, 0)),
            ),
            (
                "kexec_load",
                res(libc::syscall(libc::SYS_kexec_load, 0, 0, null, 0)),
            ),
            (
                "init_module",
                res(libc::syscall(libc::SYS_init_module, null, 0, null)),
            ),
            (
                "delete_module",
                res(libc::syscall(libc::SYS_delete_module, null, 0)),
            ),
            ("iopl", res(libc::syscall(libc::SYS_iopl, 0))),
            ("ioperm", res(libc::syscall(libc::SYS_ioperm, 0, 0, 0))),
            (
                "clock_settime",
                res(libc::syscall(libc::SYS_clock_settime, 0, null)),
            ),
            (
                "settimeofday",
                res(libc::syscall(libc::SYS_settimeofday, null, null)),
            ),
            ("acct", res(libc::syscall(libc::SYS_acct, null))),
            ("swapon", res(libc::syscall(libc::SYS_swapon, null, 0))),
            (
                "pivot_root",
                res(libc::syscall(libc::SYS_pivot_root, null, null)),
            ),
            (
                "chroot",
                res(libc::syscall(libc::SYS_chroot, c"/nonexistent".as_ptr())),
            ),
            (
                "io_uring_setup",
                res(libc::syscall(libc::SYS_io_uring_setup, 0, null)),
            ),
            ("userfaultfd", res(libc::syscall(libc::SYS_userfaultfd, -1))),
            (
                "open_by_handle_at",
                res(libc::syscall(libc::SYS_open_by_handle_at, -1, null, 0)),
            ),
            (
                "quotactl",
                res(libc::syscall(libc::SYS_quotactl, 0, null, 0, null)),
            ),
            ("vhangup", res(libc::syscall(libc::SYS_vhangup))),
            (
                "lookup_dcookie",
                res(libc::syscall(libc::SYS_lookup_dcookie, 0, null, 0)),
            ),
            (
                "mbind",
                res(libc::syscall(libc::SYS_mbind, null, 0, 0, null, 0, 0)),
            ),
            (
                "move_pages",
                res(libc::syscall(
                    libc::SYS_move_pages,
                    0,
                    0,
                    null,
                    null,
                    null,
                    0,
                )),
            ),
            (
                "process_vm_readv",
                res(libc::syscall(
                    libc::SYS_process_vm_readv,
                    0,
                    null,
                    0,
                    null,
                    0,
                    0,
                )),
            ),
            (
                "fanotify_init",
                res(libc::syscall(
                    libc::SYS_fanotify_init,
                    0xffff_ffffu32 as i64,
                    0,
                )),
            ),
            (
                "name_to_handle_at",
                res(libc::syscall(
                    libc::SYS_name_to_handle_at,
                    -1,
                    null,
                    null,
                    null,
                    0,
                )),
            ),
            ("clone(NEWUSER)", {
                let r = libc::syscall(
                    libc::SYS_clone,
                    0x1000_0000 | libc::SIGCHLD as i64,
                    null,
                    null,
                    null,
                    0,
                );
                if r == 0 {
                    libc::_exit(0);
                }
                if r > 0 {
                    libc::waitpid(r as i32, std::ptr::null_mut(), 0);
                }
                res(r)
            }),
        ]
    };
    let mut out = serde_json::Map::new();
    for (name, r) in calls {
        out.insert(name.to_string(), Value::String(r));
    }
    Value::Object(out)
}

/// The calling thread's NUMA policy: `mode=M flags=F nodes=0xMASK` (the
/// first 64 nodes), or the errno.
fn mempolicy() -> String {
    let mut mode: libc::c_int = 0;
    let mut mask = [0u64; 16];
    // SAFETY: get_mempolicy writes one int and at most 1024 bits of mask.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode,
            mask.as_mut_ptr(),
            mask.len() * 64,
            0usize,
            0usize,
        )
    };
    if r != 0 {
        return last_errno();
    }
    format!(
        "mode={} flags={:#x} nodes={:#x}",
        mode & 0xff,
        mode & !0xff,
        mask[0]
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("report");
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let out = match cmd {
        "report" => report().to_string(),
        "stat" => Value::Array(args[2..].iter().map(|p| stat_json(p)).collect()).to_string(),
        "cat" => match std::fs::read_to_string(arg(2)) {
            Ok(s) => s,
            Err(e) => format!("error {}", io_errno(&e)),
        },
        "mempolicy" => mempolicy(),
        "readlink" => match std::fs::read_link(arg(2)) {
            Ok(p) => p.display().to_string(),
            Err(e) => format!("error {}", io_errno(&e)),
        },
        "write" => match std::fs::write(arg(2), arg(3)) {
            Ok(()) => "ok".into(),
            Err(e) => io_errno(&e),
        },
        "mkdir" => match std::fs::create_dir(arg(2)) {
            Ok(()) => "ok".into(),
            Err(e) => io_errno(&e),
        },
        "ls" => match std::fs::read_dir(arg(2)) {
            Ok(d) => {
                let mut names: Vec<String> = d
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names.join("\n")
            }
            Err(e) => format!("error {}", io_errno(&e)),
        },
        "syscall" => syscall(arg(2), args.get(3).map(String::as_str)),
        "syscall-probe" => probe().to_string(),
        "syscall-loop" => {
            // Nanoseconds per getppid, over N calls (for seccomp benchmarks).
            let n: u64 = arg(2).parse().unwrap_or(1_000_000);
            let t = std::time::Instant::now();
            for _ in 0..n {
                // SAFETY: getppid takes no arguments.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            format!("{:.1}", t.elapsed().as_nanos() as f64 / n as f64)
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(
                arg(2).parse().unwrap_or(3600),
            ));
            String::new()
        }
        "exit" => std::process::exit(arg(2).parse().unwrap_or(0)),
        "pause" => loop {
            // SAFETY: pause just waits for a signal.
            unsafe { libc::pause() };
        },
        "wait-signal" => {
            // SAFETY: sigset_t is plain data; sigfillset initialises it.
            let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
            let mut sig: libc::c_int = 0;
            // SAFETY: building and waiting on a signal set we own.
            unsafe {
                libc::sigfillset(&mut set);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                println!("ready");
                let _ = std::io::stdout().flush();
                libc::sigwait(&set, &mut sig);
            }
            format!("signal {sig}")
        }
        other => {
            eprintln!("skiff-checker: unknown command {other}");
            std::process::exit(2);
        }
    };
    println!("{out}");
}
