//! Scenarios for containerd's `ctr`, shared by the suite where the stock
//! runc shim calls skiff and the suite of skiff's own shim.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{check, expect, stdout, wait_for, Report};

/// The busybox image the suites import.
pub const IMAGE: &str = "docker.io/library/busybox:e2e";

/// `ctr` against a private containerd, with named ways to run a task
/// (`ctr run` flags per runtime name).
pub struct Ctr {
    pub sock: PathBuf,
    pub runtimes: Vec<(String, Vec<String>)>,
}

impl Ctr {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(["--namespace", "skiff-e2e"]);
        // ctr keeps the IO fifos of `run` and `task exec` under
        // /run/containerd/fifo unless told otherwise, and a killed ctr
        // leaves them there: keep them in the private work directory.
        let fifo_dir = self.sock.with_file_name("fifo");
        match args {
            ["run", rest @ ..] | ["task", "exec", rest @ ..] => {
                c.args(&args[..args.len() - rest.len()])
                    .arg("--fifo-dir")
                    .arg(fifo_dir)
                    .args(rest);
            }
            _ => {
                c.args(args);
            }
        }
        c
    }

    /// The `ctr run` flags registered for `runtime`.
    fn runtime_flags(&self, runtime: &str) -> &[String] {
        self.runtimes
            .iter()
            .find(|(name, _)| name == runtime)
            .map(|(_, flags)| flags.as_slice())
            .unwrap_or_else(|| panic!("no runtime {runtime} registered"))
    }

    /// `ctr run [flags] IMAGE ID ARGS...` as a command.
    pub fn run(&self, runtime: &str, flags: &[&str], id: &str, args: &[&str]) -> Command {
        let mut c = self.cmd(&["run"]);
        c.args(self.runtime_flags(runtime))
            .args(flags)
            .arg(IMAGE)
            .arg(id)
            .args(args);
        c
    }

    pub fn output(&self, mut c: Command) -> std::process::Output {
        c.stdin(Stdio::null()).output().unwrap()
    }

    /// Kills and removes a task and container, ignoring errors.
    pub fn cleanup(&self, id: &str) {
        let _ = self.output(self.cmd(&["task", "kill", "-s", "SIGKILL", id]));
        let _ = wait_for(10, || {
            let out = self.output(self.cmd(&["task", "ls"]));
            !stdout(&out)
                .lines()
                .any(|l| l.starts_with(id) && l.contains("RUNNING"))
        });
        let _ = self.output(self.cmd(&["task", "delete", id]));
        let _ = self.output(self.cmd(&["container", "delete", id]));
    }

    pub fn task_pid(&self, id: &str) -> Option<u32> {
        let out = self.output(self.cmd(&["task", "ls"]));
        stdout(&out)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
    }
}

/// `/proc/self/status` capabilities and seccomp under `ours` equal those
/// under `theirs` with ctr's default seccomp profile.
pub fn status_matches(
    ctr: &Ctr,
    ours_rt: &'static str,
    theirs_rt: &'static str,
    report: &mut Report,
) {
    report.run(
        "status matches runc (default seccomp, caps)",
        ours_rt,
        || {
            let status = |rt: &str| {
                let out = ctr.output(ctr.run(
                    rt,
                    &["--rm", "--seccomp"],
                    &format!("status-{rt}"),
                    &[
                        "grep",
                        "-E",
                        "^(Cap|Seccomp|NoNewPrivs)",
                        "/proc/self/status",
                    ],
                ));
                stdout(&out)
            };
            let (ours, theirs) = (status(ours_rt), status(theirs_rt));
            expect!(
                ours == theirs && ours.contains("Seccomp:\t2"),
                "{ours_rt}:\n{ours}\n{theirs_rt}:\n{theirs}"
            );
            Ok(())
        },
    );
}

/// The scenarios every way of running containers through containerd
/// passes.
pub fn scenarios(ctr: &Ctr, rt: &str, report: &mut Report) {
    let id = |name: &str| format!("{name}-{rt}");
    report.run("run and capture stdout", rt, || {
        let out = ctr.output(ctr.run(rt, &["--rm"], &id("echo"), &["echo", "hello from busybox"]));
        expect!(stdout(&out) == "hello from busybox\n", "{out:?}");
        Ok(())
    });
    report.run("exit code", rt, || {
        let out = ctr.output(ctr.run(rt, &["--rm"], &id("exit"), &["sh", "-c", "exit 3"]));
        expect!(out.status.code() == Some(3), "{out:?}");
        Ok(())
    });
    report.run("env, workdir, read-only rootfs", rt, || {
        let out = ctr.output(ctr.run(
            rt,
            &[
                "--rm",
                "--env",
                "GREETING=hi",
                "--cwd",
                "/tmp",
                "--read-only",
            ],
            &id("env"),
            &["sh", "-c", "echo $GREETING; pwd; touch /ro 2>&1; true"],
        ));
        let text = stdout(&out);
        expect!(
            text.starts_with("hi\n/tmp\n") && text.contains("Read-only file system"),
            "{out:?}"
        );
        Ok(())
    });
    report.run("exec: exit code, pid namespace, user, cwd", rt, || {
        let c = id("exec");
        let mut run = ctr.run(rt, &["-d"], &c, &["sleep", "1000"]);
        check(&mut run);
        let result = (|| {
            let out =
                ctr.output(ctr.cmd(&["task", "exec", "--exec-id", "e1", &c, "sh", "-c", "exit 4"]));
            expect!(out.status.code() == Some(4), "exec exit code: {out:?}");
            let out = ctr.output(ctr.cmd(&[
                "task",
                "exec",
                "--exec-id",
                "e2",
                &c,
                "sh",
                "-c",
                "readlink /proc/1/ns/pid; readlink /proc/self/ns/pid",
            ]));
            let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
            expect!(
                lines.len() == 2 && lines[0] == lines[1],
                "pid namespaces: {out:?}"
            );
            let out = ctr.output(ctr.cmd(&[
                "task",
                "exec",
                "--exec-id",
                "e3",
                "--user",
                "1000",
                "--cwd",
                "/tmp",
                &c,
                "sh",
                "-c",
                "id -u; pwd",
            ]));
            expect!(stdout(&out) == "1000\n/tmp\n", "user and cwd: {out:?}");
            Ok(())
        })();
        ctr.cleanup(&c);
        result
    });
    report.run("SIGTERM trapped, SIGKILL", rt, || {
        for (signal, script, code) in [
            (
                "SIGTERM",
                "trap 'exit 42' TERM; touch /tmp/ready; while :; do sleep 0.05; done",
                42,
            ),
            (
                "SIGKILL",
                "touch /tmp/ready; while :; do sleep 0.05; done",
                137,
            ),
        ] {
            let c = id(&format!("sig{code}"));
            let mut run = ctr.run(rt, &["--rm"], &c, &["sh", "-c", script]);
            let mut child = run
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let ready = wait_for(20, || {
                ctr.task_pid(&c).is_some_and(|p| {
                    std::path::Path::new(&format!("/proc/{p}/root/tmp/ready")).exists()
                })
            });
            if ready {
                check(&mut ctr.cmd(&["task", "kill", "-s", signal, &c]));
            } else {
                ctr.cleanup(&c);
            }
            let status = child.wait().unwrap();
            expect!(ready, "{c} never started");
            expect!(status.code() == Some(code), "{signal}: {status:?}");
        }
        Ok(())
    });
    report.run("pause and resume stop a counter", rt, || {
        let c = id("pause");
        check(&mut ctr.run(
            rt,
            &["-d"],
            &c,
            &[
                "sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.01; done",
            ],
        ));
        let result = (|| {
            let pid = ctr.task_pid(&c).ok_or("no task pid")?;
            let counter = format!("/proc/{pid}/root/tmp/n");
            let read = || {
                std::fs::read_to_string(&counter)
                    .unwrap_or_default()
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            };
            expect!(wait_for(10, || read() > 0), "counter never started");
            check(&mut ctr.cmd(&["task", "pause", &c]));
            let frozen = read();
            std::thread::sleep(Duration::from_millis(300));
            expect!(read() == frozen, "counter moved while paused");
            check(&mut ctr.cmd(&["task", "resume", &c]));
            expect!(wait_for(10, || read() > frozen), "counter did not resume");
            Ok(())
        })();
        ctr.cleanup(&c);
        result
    });
    report.run("memory limit enforced (OOM kill)", rt, || {
        let c = id("oom");
        let out = ctr.output(ctr.run(
            rt,
            &["--rm", "--memory-limit", "33554432"],
            &c,
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
        ));
        expect!(out.status.code() == Some(137), "{out:?}");
        Ok(())
    });
    report.run("memory limit visible in the cgroup", rt, || {
        let c = id("memlimit");
        check(&mut ctr.run(
            rt,
            &["-d", "--memory-limit", "33554432"],
            &c,
            &["sleep", "1000"],
        ));
        let result = (|| {
            let pid = ctr.task_pid(&c).ok_or("no task pid")?;
            let cgroups =
                std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let path = cgroups
                .lines()
                .find_map(|l| {
                    l.strip_prefix(|c: char| c.is_ascii_digit())
                        .and_then(|r| r.strip_prefix(":memory:"))
                })
                .ok_or(format!("no memory cgroup: {cgroups}"))?;
            let limit = std::fs::read_to_string(format!(
                "/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
            ))
            .unwrap_or_default();
            expect!(limit.trim() == "33554432", "limit {limit:?}");
            Ok(())
        })();
        ctr.cleanup(&c);
        result
    });
    report.run("tty with a window size", rt, || {
        let script = crate::TTY_SIZE_SCRIPT;
        crate::check_tty_size(ctr.run(rt, &["--rm", "-t"], &id("tty"), &["sh", "-c", script]))
    });
    report.run("tty: typed input reaches the container", rt, || {
        let mut cmd = ctr.run(
            rt,
            &["--rm", "-t"],
            &id("ttyin"),
            &["sh", "-c", "read line; echo got:$line"],
        );
        let mut pty = crate::Pty::open(24, 80);
        pty.attach(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        // Typed once the shell can be reading: before the task exists ctr
        // has nowhere to send it.
        std::thread::sleep(Duration::from_millis(1500));
        pty.write("typed here\r");
        let text = pty.read_until(30, |t| t.contains("got:typed here"));
        let status = child.wait().unwrap();
        expect!(
            status.success() && text.contains("got:typed here"),
            "{status:?}: {text:?}"
        );
        Ok(())
    });
    report.run("piped stdin", rt, || {
        let mut run = ctr.run(
            rt,
            &["--rm"],
            &id("stdin"),
            &["sh", "-c", "read line; echo got:$line"],
        );
        let mut child = run
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // ctr loses an EOF that arrives before the task exists: the line
        // is read as soon as it comes, EOF never matters.
        std::thread::sleep(Duration::from_millis(500));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped\n").unwrap();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        expect!(stdout(&out) == "got:piped\n", "{out:?}");
        Ok(())
    });
}
