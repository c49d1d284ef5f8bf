//! config-linux.md#seccomp.

use serde_json::{json, Value};

use super::{create_fails, expect_eq, output_with, report_with};
use crate::ctx::{Check, Ctx};
use crate::suite::{case, Case, Level::*};

pub fn cases() -> Vec<Case> {
    vec![
        case(
            "seccomp.default_errno",
            "config-linux.md#seccomp",
            Must,
            default_errno,
        ),
        case(
            "seccomp.allow_rule",
            "config-linux.md#seccomp",
            Must,
            allow_rule,
        ),
        case(
            "seccomp.flags.wait_killable_recv_without_notify",
            "config-linux.md#seccomp (flags; libseccomp and runc 1.5)",
            Runc,
            wait_killable_without_notify,
        ),
        case(
            "seccomp.errno_ret",
            "config-linux.md#seccomp (errnoRet)",
            Must,
            errno_ret,
        ),
        case(
            "seccomp.errno_ret_without_errno_action_fails",
            "config-linux.md#seccomp (MUST fail)",
            Must,
            errno_ret_without_errno_action_fails,
        ),
        case(
            "seccomp.default_errno_ret",
            "config-linux.md#seccomp (defaultErrnoRet)",
            Must,
            default_errno_ret,
        ),
        case("seccomp.kill", "config-linux.md#seccomp", Must, kill),
        case(
            "seccomp.args_equal",
            "config-linux.md#seccomp (args)",
            Must,
            args_equal,
        ),
        case(
            "seccomp.args_masked_equal",
            "config-linux.md#seccomp (SCMP_CMP_MASKED_EQ)",
            Must,
            args_masked,
        ),
        case(
            "seccomp.mode_filter",
            "config-linux.md#seccomp",
            Must,
            mode_filter,
        ),
        case(
            "seccomp.without_nnp",
            "config-linux.md#seccomp",
            Must,
            without_nnp,
        ),
    ]
}

/// A profile that allows everything but `blocked`, which gets `action`.
fn profile(blocked: Value) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [blocked]
    })
}

fn probe(ctx: &mut Ctx, syscall: &str, arg: Option<&str>, seccomp: Value) -> Check<String> {
    let mut args = vec!["/checker", "syscall", syscall];
    if let Some(a) = arg {
        args.push(a);
    }
    output_with(ctx, &args, |b| b.config["linux"]["seccomp"] = seccomp)
}

/// What a runtime (which may install the filter before its last steps)
/// and the checker need; everything else takes the default action.
fn runtime_and_checker_syscalls() -> Vec<&'static str> {
    vec![
        "execve",
        "execveat",
        "brk",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "mmap",
        "mprotect",
        "munmap",
        "madvise",
        "read",
        "write",
        "pread64",
        "lseek",
        "exit",
        "exit_group",
        "sigaltstack",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "poll",
        "ppoll",
        "select",
        "pselect6",
        "epoll_create1",
        "epoll_ctl",
        "epoll_pwait",
        "epoll_wait",
        "getrandom",
        "sched_getaffinity",
        "sched_yield",
        "readlink",
        "readlinkat",
        "uname",
        "newfstatat",
        "fstat",
        "stat",
        "lstat",
        "statx",
        "statfs",
        "fstatfs",
        "close",
        "close_range",
        "ioctl",
        "open",
        "openat",
        "openat2",
        "fcntl",
        "dup",
        "dup2",
        "dup3",
        "futex",
        "nanosleep",
        "clock_nanosleep",
        "clock_gettime",
        "gettid",
        "getpid",
        "tgkill",
        "kill",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "getgroups",
        "setgroups",
        "setresuid",
        "setresgid",
        "setuid",
        "setgid",
        "capget",
        "capset",
        "prctl",
        "getcwd",
        "chdir",
        "fchdir",
        "access",
        "faccessat",
        "faccessat2",
        "getdents64",
        "pipe",
        "pipe2",
        "wait4",
        "waitid",
        "clone",
        "clone3",
        "fork",
        "vfork",
        "write",
        "writev",
        "readv",
        "socket",
        "connect",
        "sendmsg",
        "recvmsg",
        "getsockopt",
        "setsockopt",
        "umask",
        "sched_getattr",
        "ioprio_get",
    ]
}

fn default_errno(ctx: &mut Ctx) -> Check {
    let out = probe(
        ctx,
        "getppid",
        None,
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": runtime_and_checker_syscalls(), "action": "SCMP_ACT_ALLOW"}]
        }),
    )?;
    expect_eq("getppid under a default ERRNO", out.as_str(), "EPERM")
}

fn allow_rule(ctx: &mut Ctx) -> Check {
    let out = probe(
        ctx,
        "getpid",
        None,
        profile(json!({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"})),
    )?;
    expect_eq("getpid (not blocked)", out.as_str(), "ok")
}

/// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV concerns notifications only;
/// a profile without any still installs, its rules applied (libseccomp
/// leaves the flag out rather than have the kernel refuse it).
fn wait_killable_without_notify(ctx: &mut Ctx) -> Check {
    let mut seccomp = profile(json!({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}));
    seccomp["flags"] = json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
    let out = probe(ctx, "getppid", None, seccomp)?;
    expect_eq("getppid", out.as_str(), "EPERM")
}

fn errno_ret(ctx: &mut Ctx) -> Check {
    let out = probe(
        ctx,
        "getppid",
        None,
        profile(json!({"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22})),
    )?;
    expect_eq("getppid", out.as_str(), "EINVAL")
}

fn default_errno_ret(ctx: &mut Ctx) -> Check {
    let out = probe(
        ctx,
        "getppid",
        None,
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [{"names": runtime_and_checker_syscalls(), "action": "SCMP_ACT_ALLOW"}]
        }),
    )?;
    expect_eq("getppid under defaultErrnoRet 38", out.as_str(), "ENOSYS")
}

fn errno_ret_without_errno_action_fails(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.config["linux"]["seccomp"] =
        json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 38});
    create_fails(ctx, &b)
}

fn kill(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.args(&["/checker", "syscall", "getppid"]);
    b.config["linux"]["seccomp"] =
        profile(json!({"names": ["getppid"], "action": "SCMP_ACT_KILL"}));
    let out = ctx.run(&b);
    expect_eq(
        "exit code of a process killed by seccomp",
        out.code,
        128 + 31,
    )
}

fn args_equal(ctx: &mut Ctx) -> Check {
    let rule = json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
        "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]});
    let blocked = probe(ctx, "personality", Some("8"), profile(rule.clone()))?;
    let other = probe(ctx, "personality", Some("0"), profile(rule))?;
    expect_eq(
        "personality(8) / personality(0)",
        (blocked.as_str(), other.as_str()),
        ("EPERM", "ok"),
    )
}

fn args_masked(ctx: &mut Ctx) -> Check {
    // Block socket(AF_INET6 = 10) by its low byte only.
    let rule = json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO",
        "args": [{"index": 0, "value": 255, "valueTwo": 10, "op": "SCMP_CMP_MASKED_EQ"}]});
    let blocked = probe(ctx, "socket", Some("10"), profile(rule.clone()))?;
    let other = probe(ctx, "socket", Some("1"), profile(rule))?;
    expect_eq(
        "socket(10) / socket(1)",
        (blocked.as_str(), other.as_str()),
        ("EPERM", "ok"),
    )
}

fn mode_filter(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["linux"]["seccomp"] =
            profile(json!({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}))
    })?;
    expect_eq("Seccomp", r["seccomp"].as_str(), Some("2"))
}

fn without_nnp(ctx: &mut Ctx) -> Check {
    let out = output_with(ctx, &["/checker", "syscall", "getppid"], |b| {
        b.config["process"]["noNewPrivileges"] = json!(false);
        b.config["linux"]["seccomp"] =
            profile(json!({"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}));
    })?;
    expect_eq("getppid", out.as_str(), "EPERM")
}
