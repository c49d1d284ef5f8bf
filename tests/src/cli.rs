//! The scenarios of a Docker-style command line (Podman and Docker share
//! it): run, exec, kill, stop, wait, pause, inspect, rm. Each engine says
//! how to call it and how to pick the runtime.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{check, expect, stdout, wait_for, Report};

/// How a suite talks to its engine.
pub trait Engine {
    /// The engine's command with its global flags, for `runtime`.
    fn cmd(&self, runtime: &str, args: &[&str]) -> Command;
    /// Flags of `run` that select `runtime` (Docker picks it per container).
    fn run_flags(&self, runtime: &str) -> Vec<String>;
    /// The image every scenario runs.
    fn image(&self) -> &str;
}

fn out(e: &dyn Engine, rt: &str, args: &[&str]) -> Output {
    e.cmd(rt, args).stdin(Stdio::null()).output().unwrap()
}

/// `run` with the runtime's flags and `--network none`, then `flags`,
/// the image and `args`.
fn run_cmd(e: &dyn Engine, rt: &str, flags: &[&str], args: &[&str]) -> Command {
    let mut all: Vec<String> = vec!["run".into()];
    all.extend(e.run_flags(rt));
    all.extend(["--network".into(), "none".into()]);
    all.extend(flags.iter().map(|s| s.to_string()));
    all.push(e.image().into());
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    e.cmd(rt, &refs)
}

fn run(e: &dyn Engine, rt: &str, flags: &[&str], args: &[&str]) -> Output {
    let mut f = vec!["--rm"];
    f.extend_from_slice(flags);
    run_cmd(e, rt, &f, args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn start(e: &dyn Engine, rt: &str, name: &str, args: &[&str]) -> Result<(), String> {
    let o = run_cmd(e, rt, &["-d", "--name", name], args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    expect!(o.status.success(), "run -d: {o:?}");
    Ok(())
}

fn pid(e: &dyn Engine, rt: &str, name: &str) -> Option<u32> {
    let o = out(e, rt, &["inspect", "--format", "{{.State.Pid}}", name]);
    stdout(&o).trim().parse().ok().filter(|p| *p > 0)
}

/// Kills first: `rm -f` alone may wait out a stop timeout (an init that
/// ignores SIGTERM, as `sleep` as pid 1 does).
fn remove(e: &dyn Engine, rt: &str, name: &str) {
    let _ = out(e, rt, &["kill", "-s", "KILL", name]);
    let _ = out(e, rt, &["rm", "-f", name]);
}

fn is_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The first scenarios of every suite: a container's output, and its exit
/// code.
fn output_and_exit_code(e: &dyn Engine, rt: &str, report: &mut Report) {
    report.run("run and capture stdout", rt, || {
        let o = run(e, rt, &[], &["echo", "hello from busybox"]);
        expect!(stdout(&o) == "hello from busybox\n", "{o:?}");
        Ok(())
    });
    report.run("exit code", rt, || {
        let o = run(e, rt, &[], &["sh", "-c", "exit 3"]);
        expect!(o.status.code() == Some(3), "{o:?}");
        Ok(())
    });
}

/// Runs every scenario for `rt`.
pub fn scenarios(e: &dyn Engine, rt: &str, report: &mut Report) {
    let name = |n: &str| format!("{n}-{rt}");
    output_and_exit_code(e, rt, report);
    report.run("user, env, workdir, hostname, read-only rootfs", rt, || {
        let o = run(
            e,
            rt,
            &[
                "--user",
                "1000:1000",
                "-e",
                "GREETING=hi",
                "-w",
                "/tmp",
                "--hostname",
                "e2e-host",
                "--read-only",
            ],
            &[
                "sh",
                "-c",
                "id -u; id -g; echo $GREETING; pwd; hostname; touch /ro 2>&1; true",
            ],
        );
        let text = stdout(&o);
        expect!(
            text.starts_with("1000\n1000\nhi\n/tmp\ne2e-host\n"),
            "{o:?}"
        );
        expect!(text.contains("Read-only file system"), "{o:?}");
        Ok(())
    });
    report.run(
        "exec: exit code, pid namespace, user, env, workdir",
        rt,
        || {
            let c = name("exec");
            start(e, rt, &c, &["sleep", "1000"])?;
            let result = (|| {
                let o = out(e, rt, &["exec", &c, "sh", "-c", "exit 4"]);
                expect!(o.status.code() == Some(4), "exec exit code: {o:?}");
                let o = out(
                    e,
                    rt,
                    &[
                        "exec",
                        &c,
                        "sh",
                        "-c",
                        "readlink /proc/1/ns/pid; readlink /proc/self/ns/pid",
                    ],
                );
                let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
                expect!(
                    lines.len() == 2 && lines[0] == lines[1],
                    "pid namespaces: {o:?}"
                );
                let o = out(
                    e,
                    rt,
                    &[
                        "exec",
                        "--user",
                        "1000",
                        "--env",
                        "A=b",
                        "--workdir",
                        "/tmp",
                        &c,
                        "sh",
                        "-c",
                        "id -u; echo $A; pwd",
                    ],
                );
                expect!(stdout(&o) == "1000\nb\n/tmp\n", "user, env, workdir: {o:?}");
                Ok(())
            })();
            remove(e, rt, &c);
            result
        },
    );
    report.run(
        "SIGTERM trapped, SIGKILL, stop with a grace period",
        rt,
        || {
            let loop_ = "touch /tmp/ready; while :; do sleep 0.05; done";
            let cases = [
                (
                    "trap",
                    format!("trap 'exit 42' TERM; {loop_}"),
                    &["kill", "-s", "TERM"][..],
                    42,
                ),
                ("kill", loop_.to_string(), &["kill", "-s", "KILL"][..], 137),
                // Ignores TERM: stop escalates to KILL after the grace period.
                (
                    "stop",
                    format!("trap '' TERM; {loop_}"),
                    &["stop", "-t", "1"][..],
                    137,
                ),
            ];
            for (what, script, command, code) in cases {
                let c = name(&format!("sig-{what}"));
                start(e, rt, &c, &["sh", "-c", &script])?;
                let result = (|| {
                    let ready = wait_for(20, || {
                        pid(e, rt, &c).is_some_and(|p| {
                            std::path::Path::new(&format!("/proc/{p}/root/tmp/ready")).exists()
                        })
                    });
                    expect!(ready, "{c} never started");
                    let started = Instant::now();
                    let mut args = command.to_vec();
                    args.push(&c);
                    let o = out(e, rt, &args);
                    expect!(o.status.success(), "{args:?}: {o:?}");
                    let waited = out(e, rt, &["wait", &c]);
                    expect!(
                        stdout(&waited).trim() == code.to_string(),
                        "{what}: exit {waited:?}"
                    );
                    if what == "stop" {
                        expect!(
                            started.elapsed() >= Duration::from_millis(900),
                            "stop did not wait for the grace period"
                        );
                    }
                    Ok(())
                })();
                remove(e, rt, &c);
                result?;
            }
            Ok(())
        },
    );
    report.run("pause and resume stop a counter", rt, || {
        let c = name("pause");
        start(
            e,
            rt,
            &c,
            &[
                "sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.01; done",
            ],
        )?;
        let result = (|| {
            let p = pid(e, rt, &c).ok_or("no pid")?;
            let counter = format!("/proc/{p}/root/tmp/n");
            let read = || {
                std::fs::read_to_string(&counter)
                    .unwrap_or_default()
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            };
            expect!(wait_for(10, || read() > 0), "counter never started");
            check(&mut e.cmd(rt, &["pause", &c]));
            let frozen = read();
            std::thread::sleep(Duration::from_millis(300));
            expect!(read() == frozen, "counter moved while paused");
            check(&mut e.cmd(rt, &["unpause", &c]));
            expect!(wait_for(10, || read() > frozen), "counter did not resume");
            Ok(())
        })();
        remove(e, rt, &c);
        result
    });
    report.run("memory limit read inside and enforced", rt, || {
        let file = if is_v2() {
            "/sys/fs/cgroup/memory.max"
        } else {
            "/sys/fs/cgroup/memory/memory.limit_in_bytes"
        };
        let o = run(e, rt, &["--memory", "32m"], &["cat", file]);
        expect!(stdout(&o).trim() == "33554432", "limit seen inside: {o:?}");
        let o = run(
            e,
            rt,
            &["--memory", "32m", "--memory-swap", "32m"],
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
        );
        expect!(o.status.code() == Some(137), "OOM kill: {o:?}");
        Ok(())
    });
    report.run("pids limit", rt, || {
        let file = if is_v2() {
            "/sys/fs/cgroup/pids.max"
        } else {
            "/sys/fs/cgroup/pids/pids.max"
        };
        let o = run(e, rt, &["--pids-limit", "12"], &["cat", file]);
        expect!(stdout(&o).trim() == "12", "{o:?}");
        let o = run(
            e,
            rt,
            &["--pids-limit", "12"],
            &[
                "sh",
                "-c",
                "sh -c 'for i in $(seq 30); do sleep 5 & done' 2>&1 | grep -c \"can't fork\"",
            ],
        );
        expect!(
            stdout(&o).trim().parse::<u32>().unwrap_or(0) > 0,
            "forks beyond the limit: {o:?}"
        );
        Ok(())
    });
    report.run("tty with a window size", rt, || {
        // Docker's client sets the size once the container runs (Podman's
        // conmon sets it before): the script waits for it.
        let script = crate::TTY_SIZE_SCRIPT;
        crate::check_tty_size(run_cmd(e, rt, &["--rm", "-t"], &["sh", "-c", script]))
    });
    report.run("piped stdin", rt, || {
        let mut cmd = run_cmd(e, rt, &["--rm", "-i"], &["sh", "-c", "cat; echo done"]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"line one\nline two\n")
            .unwrap();
        let o = child.wait_with_output().unwrap();
        expect!(stdout(&o) == "line one\nline two\ndone\n", "{o:?}");
        Ok(())
    });
}

/// The engine's default seccomp profile and capabilities give the same
/// /proc/self/status lines under skiff as under runc.
pub fn status_matches_runc(e: &dyn Engine, report: &mut Report) {
    report.run(
        "status matches runc (default seccomp, caps)",
        "skiff",
        || {
            let status = |rt: &str| {
                stdout(&run(
                    e,
                    rt,
                    &[],
                    &[
                        "grep",
                        "-E",
                        "^(Cap|Seccomp|NoNewPrivs)",
                        "/proc/self/status",
                    ],
                ))
            };
            let (ours, theirs) = (status("skiff"), status("runc"));
            expect!(
                ours == theirs && ours.contains("Seccomp:\t2"),
                "skiff:\n{ours}\nrunc:\n{theirs}"
            );
            Ok(())
        },
    );
}

/// The scenarios of an engine run by an ordinary user (rootless), for
/// `rt`: run, exit code, exec, stop, and a volume the user owns. A
/// container without delegated cgroups has no limits, pause or stats:
/// those scenarios are left out. `uid` is the user's; `volume` a
/// directory it owns.
pub fn rootless_scenarios(
    e: &dyn Engine,
    rt: &str,
    uid: u32,
    volume: &std::path::Path,
    report: &mut Report,
) {
    let name = |n: &str| format!("{n}-{rt}");
    output_and_exit_code(e, rt, report);
    report.run(
        "exec, and the container is the user on the host",
        rt,
        || {
            let c = name("exec");
            start(e, rt, &c, &["sleep", "1000"])?;
            let result = (|| {
                let o = out(e, rt, &["exec", &c, "sh", "-c", "exit 4"]);
                expect!(o.status.code() == Some(4), "exec exit code: {o:?}");
                let o = out(e, rt, &["exec", "-u", "1000", &c, "id", "-u"]);
                expect!(stdout(&o) == "1000\n", "exec -u: {o:?}");
                let p = pid(e, rt, &c).ok_or("no pid")?;
                let status =
                    std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
                let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
                let host_uid = uid.to_string();
                expect!(
                    line.split_whitespace().skip(1).all(|f| f == host_uid),
                    "container root on the host: {line}"
                );
                Ok(())
            })();
            remove(e, rt, &c);
            result
        },
    );
    report.run("stop: SIGTERM trapped, then a grace period", rt, || {
        let c = name("stop");
        let script = "trap 'exit 42' TERM; touch /tmp/ready; while :; do sleep 0.05; done";
        start(e, rt, &c, &["sh", "-c", script])?;
        let result = (|| {
            let ready = wait_for(20, || {
                pid(e, rt, &c).is_some_and(|p| {
                    std::path::Path::new(&format!("/proc/{p}/root/tmp/ready")).exists()
                })
            });
            expect!(ready, "{c} never started");
            let o = out(e, rt, &["stop", "-t", "10", &c]);
            expect!(o.status.success(), "stop: {o:?}");
            let o = out(e, rt, &["inspect", "--format", "{{.State.ExitCode}}", &c]);
            expect!(stdout(&o).trim() == "42", "exit code after stop: {o:?}");
            Ok(())
        })();
        remove(e, rt, &c);
        result
    });
    report.run("a volume the user owns", rt, || {
        let mount = format!("{}:/vol", volume.display());
        let file = format!("/vol/{rt}");
        let o = run(
            e,
            rt,
            &["-v", &mount],
            &["sh", "-c", &format!("echo hi > {file}")],
        );
        expect!(o.status.success(), "{o:?}");
        let written = volume.join(rt);
        let meta =
            std::fs::metadata(&written).map_err(|e| format!("{}: {e}", written.display()))?;
        expect!(
            std::os::unix::fs::MetadataExt::uid(&meta) == uid,
            "written as uid {} on the host",
            std::os::unix::fs::MetadataExt::uid(&meta)
        );
        Ok(())
    });
}
