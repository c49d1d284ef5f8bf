//! Podman 4.3 (with conmon) drives skiff as its OCI runtime
//! (`--runtime skiff --cgroup-manager cgroupfs`), with private storage,
//! run and tmp directories and `--network none`. Every scenario also runs
//! with runc for comparison.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_e2e::{check, expect, require, stdout, wait_for, Pty, Report, Workdir};

const IMAGE: &str = "localhost/busybox:e2e";

struct Podman {
    work: PathBuf,
}

impl Podman {
    fn cmd(&self, runtime: &str, args: &[&str]) -> Command {
        let w = &self.work;
        let bin = if runtime == "skiff" {
            skiff_e2e::skiff_bin()
        } else {
            skiff_e2e::which("runc").unwrap()
        };
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", w.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", w.join("storage.conf"))
            .arg("--root")
            .arg(w.join("root"))
            .arg("--runroot")
            .arg(w.join("runroot"))
            .arg("--tmpdir")
            .arg(w.join("tmp"))
            .arg("--runtime")
            .arg(bin)
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args);
        c
    }

    fn out(&self, runtime: &str, args: &[&str]) -> Output {
        self.cmd(runtime, args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `podman run --rm --network none [flags] IMAGE ARGS...`
    fn run(&self, runtime: &str, flags: &[&str], args: &[&str]) -> Output {
        let mut all = vec!["run", "--rm", "--network", "none"];
        all.extend_from_slice(flags);
        all.push(IMAGE);
        all.extend_from_slice(args);
        self.out(runtime, &all)
    }

    /// Starts a detached container named `name`.
    fn start(
        &self,
        runtime: &str,
        name: &str,
        flags: &[&str],
        args: &[&str],
    ) -> Result<(), String> {
        let mut all = vec!["run", "-d", "--network", "none", "--name", name];
        all.extend_from_slice(flags);
        all.push(IMAGE);
        all.extend_from_slice(args);
        let out = self.out(runtime, &all);
        expect!(out.status.success(), "podman run -d: {out:?}");
        Ok(())
    }

    fn pid(&self, runtime: &str, name: &str) -> Option<u32> {
        let out = self.out(runtime, &["inspect", "--format", "{{.State.Pid}}", name]);
        stdout(&out).trim().parse().ok().filter(|p| *p > 0)
    }

    fn remove(&self, runtime: &str, name: &str) {
        let _ = self.out(runtime, &["rm", "-f", "-t", "0", name]);
    }
}

fn configure(work: &Workdir) {
    let w = work.path.display();
    // The bounding set here lacks CAP_SYS_RESOURCE: Podman's default
    // rlimits (1048576) cannot be set, so the suite asks for lower ones.
    std::fs::write(
        work.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             events_logfile_path = \"{w}/events.log\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("storage.conf"),
        format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{w}/root\"\nrunroot = \"{w}/runroot\"\n"),
    )
    .unwrap();
}

#[test]
fn podman_runs_skiff() {
    require!("podman", "conmon", "runc");
    // Podman 4.3 keeps its blob-info cache in /var/lib/containers/cache
    // whatever --root says.
    let _outside = skiff_e2e::CreatedOutside::watch(&["/var/lib/containers"]);
    let work = Workdir::new("podman");
    configure(&work);
    let rootfs = work.join("rootfs");
    skiff_e2e::busybox_rootfs(&rootfs);
    let tar = work.join("rootfs.tar");
    skiff_e2e::tar_dir(&rootfs, &tar);
    let podman = Podman {
        work: work.path.clone(),
    };
    check(&mut podman.cmd("skiff", &["import", tar.to_str().unwrap(), IMAGE]));
    let mut report = Report::new("podman");
    for rt in ["skiff", "runc"] {
        scenarios(&podman, rt, &mut report);
    }
    report.run(
        "status matches runc (default seccomp, caps)",
        "skiff",
        || {
            let status = |rt: &str| {
                stdout(&podman.run(
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
    let _ = podman.out("skiff", &["rm", "-a", "-f", "-t", "0"]);
    drop(work);
    skiff_e2e::remove_parent_cgroup("libpod_parent");
    report.finish();
}

fn scenarios(p: &Podman, rt: &str, report: &mut Report) {
    let name = |n: &str| format!("{n}-{rt}");
    report.run("run and capture stdout", rt, || {
        let out = p.run(rt, &[], &["echo", "hello from busybox"]);
        expect!(stdout(&out) == "hello from busybox\n", "{out:?}");
        Ok(())
    });
    report.run("exit code", rt, || {
        let out = p.run(rt, &[], &["sh", "-c", "exit 3"]);
        expect!(out.status.code() == Some(3), "{out:?}");
        Ok(())
    });
    report.run("user, env, workdir, hostname, read-only rootfs", rt, || {
        let out = p.run(
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
        let text = stdout(&out);
        expect!(
            text.starts_with("1000\n1000\nhi\n/tmp\ne2e-host\n"),
            "{out:?}"
        );
        expect!(text.contains("Read-only file system"), "{out:?}");
        Ok(())
    });
    report.run(
        "exec: exit code, pid namespace, user, env, workdir",
        rt,
        || {
            let c = name("exec");
            p.start(rt, &c, &[], &["sleep", "1000"])?;
            let result = (|| {
                let out = p.out(rt, &["exec", &c, "sh", "-c", "exit 4"]);
                expect!(out.status.code() == Some(4), "exec exit code: {out:?}");
                let out = p.out(
                    rt,
                    &[
                        "exec",
                        &c,
                        "sh",
                        "-c",
                        "readlink /proc/1/ns/pid; readlink /proc/self/ns/pid",
                    ],
                );
                let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
                expect!(
                    lines.len() == 2 && lines[0] == lines[1],
                    "pid namespaces: {out:?}"
                );
                let out = p.out(
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
                expect!(
                    stdout(&out) == "1000\nb\n/tmp\n",
                    "user, env, workdir: {out:?}"
                );
                Ok(())
            })();
            p.remove(rt, &c);
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
                p.start(rt, &c, &[], &["sh", "-c", &script])?;
                let result = (|| {
                    let ready = wait_for(20, || {
                        p.pid(rt, &c).is_some_and(|pid| {
                            std::path::Path::new(&format!("/proc/{pid}/root/tmp/ready")).exists()
                        })
                    });
                    expect!(ready, "{c} never started");
                    let started = Instant::now();
                    let mut args = command.to_vec();
                    args.push(&c);
                    let out = p.out(rt, &args);
                    expect!(out.status.success(), "{args:?}: {out:?}");
                    let waited = p.out(rt, &["wait", &c]);
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
                p.remove(rt, &c);
                result?;
            }
            Ok(())
        },
    );
    report.run("pause and resume stop a counter", rt, || {
        let c = name("pause");
        p.start(
            rt,
            &c,
            &[],
            &[
                "sh",
                "-c",
                "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.01; done",
            ],
        )?;
        let result = (|| {
            let pid = p.pid(rt, &c).ok_or("no pid")?;
            let counter = format!("/proc/{pid}/root/tmp/n");
            let read = || {
                std::fs::read_to_string(&counter)
                    .unwrap_or_default()
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            };
            expect!(wait_for(10, || read() > 0), "counter never started");
            check(&mut p.cmd(rt, &["pause", &c]));
            let frozen = read();
            std::thread::sleep(Duration::from_millis(300));
            expect!(read() == frozen, "counter moved while paused");
            check(&mut p.cmd(rt, &["unpause", &c]));
            expect!(wait_for(10, || read() > frozen), "counter did not resume");
            Ok(())
        })();
        p.remove(rt, &c);
        result
    });
    report.run("memory limit read inside and enforced", rt, || {
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let file = if v2 {
            "/sys/fs/cgroup/memory.max"
        } else {
            "/sys/fs/cgroup/memory/memory.limit_in_bytes"
        };
        let out = p.run(rt, &["--memory", "32m"], &["cat", file]);
        expect!(
            stdout(&out).trim() == "33554432",
            "limit seen inside: {out:?}"
        );
        let out = p.run(
            rt,
            &["--memory", "32m", "--memory-swap", "32m"],
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
        );
        expect!(out.status.code() == Some(137), "OOM kill: {out:?}");
        Ok(())
    });
    report.run("pids limit", rt, || {
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let file = if v2 {
            "/sys/fs/cgroup/pids.max"
        } else {
            "/sys/fs/cgroup/pids/pids.max"
        };
        let out = p.run(rt, &["--pids-limit", "12"], &["cat", file]);
        expect!(stdout(&out).trim() == "12", "{out:?}");
        let out = p.run(
            rt,
            &["--pids-limit", "12"],
            &[
                "sh",
                "-c",
                "sh -c 'for i in $(seq 30); do sleep 5 & done' 2>&1 | grep -c \"can't fork\"",
            ],
        );
        expect!(
            stdout(&out).trim().parse::<u32>().unwrap_or(0) > 0,
            "forks beyond the limit: {out:?}"
        );
        Ok(())
    });
    report.run("tty with a window size", rt, || {
        let mut pty = Pty::open(24, 91);
        let mut cmd = p.cmd(
            rt,
            &[
                "run",
                "--rm",
                "-t",
                "--network",
                "none",
                IMAGE,
                "sh",
                "-c",
                "stty size; tty",
            ],
        );
        pty.attach(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let text = pty.read_until(30, |t| t.contains("/dev/pts/"));
        let status = child.wait().unwrap();
        expect!(
            status.success() && text.contains("24 91"),
            "{status:?}: {text:?}"
        );
        Ok(())
    });
    report.run("piped stdin", rt, || {
        let mut cmd = p.cmd(
            rt,
            &[
                "run",
                "--rm",
                "-i",
                "--network",
                "none",
                IMAGE,
                "sh",
                "-c",
                "cat; echo done",
            ],
        );
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
        let out = child.wait_with_output().unwrap();
        expect!(stdout(&out) == "line one\nline two\ndone\n", "{out:?}");
        Ok(())
    });
}
