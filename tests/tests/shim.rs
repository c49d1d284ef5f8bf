//! containerd (1.6, or 2.1 with SKIFF_ENGINES=sid) runs tasks through
//! skiff's own shim,
//! containerd-shim-skiff-v2 (`ctr run --runtime io.containerd.skiff.v2`,
//! found on containerd's PATH): the scenarios every containerd path
//! passes, then what only a shim does: events, update, stats, pids,
//! a containerd restart under a running task, pod grouping and bad input.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::shim::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, DeleteRequest, KillRequest,
    ShutdownRequest, StartRequest, StateRequest, UpdateTaskRequest, WaitRequest,
};
use containerd_shim_protos::ttrpc::{self, context};
use containerd_shim_protos::{Client, TaskClient};
use skiff_e2e::ctr::{Ctr, IMAGE};
use skiff_e2e::engines::Generation;
use skiff_e2e::{check, expect, require, stdout, wait_for, Report, Workdir};

/// The shim next to the skiff binary the tests built.
fn shim_bin() -> PathBuf {
    skiff_e2e::skiff_bin().with_file_name("containerd-shim-skiff-v2")
}

/// `ctr events` in the background, collecting every line.
struct EventLog {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl EventLog {
    fn start(ctr: &Ctr) -> EventLog {
        let mut child = ctr
            .cmd(&["events"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        EventLog { child, lines }
    }

    /// Waits until an event with `topic` for container `id` arrived.
    fn saw(&self, topic: &str, id: &str) -> bool {
        wait_for(10, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(topic) && l.contains(id))
        })
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ttrpc address of the shim serving task `id` (the `address` file
/// containerd keeps in the task's bundle).
fn shim_address(sock: &Path, id: &str) -> String {
    let address = std::fs::read_to_string(task_bundle(sock, id).join("address")).unwrap();
    address.trim().to_string()
}

/// The bundle containerd made for task `id`.
fn task_bundle(sock: &Path, id: &str) -> PathBuf {
    sock.parent()
        .unwrap()
        .join("state/io.containerd.runtime.v2.task/skiff-e2e")
        .join(id)
}

/// A ttrpc client of the shim serving task `id`, for what ctr 1.6 cannot
/// ask (Update) and for requests containerd would refuse itself.
struct ShimClient(TaskClient);

impl ShimClient {
    fn of(sock: &Path, id: &str) -> ShimClient {
        let address = shim_address(sock, id);
        ShimClient(TaskClient::new(Client::connect(&address).unwrap()))
    }

    fn update(&self, id: &str, resources_json: &str) -> Result<(), String> {
        let req = UpdateTaskRequest {
            id: id.to_string(),
            resources: MessageField::some(Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
                value: resources_json.as_bytes().to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.0
            .update(context::with_timeout(10_000_000_000), &req)
            .map(drop)
            .map_err(|e| format!("update: {e:?}"))
    }

    fn state(&self, id: &str) -> Result<(), String> {
        let req = StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        self.0
            .state(context::with_timeout(10_000_000_000), &req)
            .map(drop)
            .map_err(|e| format!("{e:?}"))
    }
}

/// The shims serving this test's containerd (found by its socket in their
/// `-address`): other containerds on the machine have shims of their own.
fn shim_processes(containerd: &Path) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args([
            "-f",
            &format!(
                "containerd-shim-skiff-v2 .*-address {}",
                containerd.display()
            ),
        ])
        .output()
        .unwrap();
    stdout(&out)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn containerd_runs_skiff_shim() {
    require!("containerd", "ctr", "containerd-shim-runc-v2", "runc");
    assert!(shim_bin().exists(), "{} not built", shim_bin().display());
    // The shim's state root and console sockets, and containerd's shim
    // socket directory: removed at the end if this test created them.
    let _outside = skiff_e2e::CreatedOutside::watch(&[
        "/run/containerd",
        "/run/containerd/skiff",
        "/run/skiff-shim",
    ]);
    let work = Workdir::new("shim");
    let bin = skiff_e2e::engines::shim_dir(&work, &shim_bin());
    let image = skiff_e2e::busybox_image(&work, IMAGE);
    let (rootfs, archive) = (image.rootfs, image.archive);
    let mut daemon = Some(skiff_e2e::engines::start_containerd(&work, Some(&bin)));
    let runc = skiff_e2e::which("runc").unwrap().display().to_string();
    let ctr = Ctr {
        sock: work.join("containerd.sock"),
        runtimes: vec![
            (
                "skiff".into(),
                vec!["--runtime".into(), "io.containerd.skiff.v2".into()],
            ),
            (
                "runc".into(),
                vec![
                    "--runtime".into(),
                    "io.containerd.runc.v2".into(),
                    "--runc-binary".into(),
                    runc,
                ],
            ),
        ],
    };
    check(&mut ctr.cmd(&["images", "import", archive.to_str().unwrap()]));
    let events = EventLog::start(&ctr);
    let mut report = Report::new("skiff shim");
    skiff_e2e::ctr::scenarios(&ctr, "skiff", &mut report);
    skiff_e2e::ctr::status_matches(&ctr, "skiff", "runc", &mut report);
    shim_scenarios(&ctr, &events, &mut report);
    // CRIU 4 comes with the sid engines (Debian 12's 3.17 fails on this
    // kernel).
    if Generation::current() == Generation::Sid {
        for rt in ["skiff", "runc"] {
            checkpoint_scenarios(&ctr, rt, &mut report);
        }
    }
    report.run("containerd restart under a running task", "skiff", || {
        let c = "restart-skiff";
        // Output to a log file the shim writes (`--log-uri file://`).
        let log = ctr.sock.with_file_name("restart.log");
        let uri = format!("file://{}", log.display());
        check(&mut ctr.run(
            "skiff",
            &["-d", "--log-uri", &uri],
            c,
            &["sh", "-c", "echo before; exec sleep 1000"],
        ));
        let before = ctr.task_pid(c).ok_or("no task pid")?;
        drop(daemon.take());
        daemon = Some(skiff_e2e::engines::start_containerd(&work, Some(&bin)));
        let result = (|| {
            expect!(
                ctr.task_pid(c) == Some(before),
                "task lost across the restart"
            );
            let out = ctr.output(ctr.cmd(&[
                "task",
                "exec",
                "--exec-id",
                "after",
                c,
                "echo",
                "still here",
            ]));
            expect!(
                stdout(&out) == "still here\n",
                "exec after restart: {out:?}"
            );
            let out = ctr.output(ctr.cmd(&[
                "task",
                "exec",
                "--exec-id",
                "log",
                c,
                "sh",
                "-c",
                "echo after >> /proc/1/fd/1",
            ]));
            expect!(out.status.success(), "{out:?}");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            expect!(
                text == "before\nafter\n",
                "the init's output across the restart: {text:?}"
            );
            check(&mut ctr.cmd(&["task", "kill", "-s", "SIGKILL", c]));
            let stopped = wait_for(10, || {
                stdout(&ctr.output(ctr.cmd(&["task", "ls"])))
                    .lines()
                    .any(|l| l.starts_with(c) && l.contains("STOPPED"))
            });
            expect!(stopped, "no exit after the restart");
            Ok(())
        })();
        ctr.cleanup(c);
        result
    });
    hooks_through_the_shim(&ctr.sock, &rootfs, &mut report);
    lost_shim_is_cleaned_up(&ctr, &mut report);
    drop(events);
    expect_no_leftovers(&ctr.sock, &mut report);
    drop(ctr);
    drop(daemon);
    skiff_e2e::remove_parent_cgroup("skiff-e2e");
    report.finish();
}

/// What a task may leave behind on the host: its skiff state directory,
/// mounts under its bundle and its cgroup directories.
fn leftovers(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let state = format!("/run/containerd/skiff/skiff-e2e/{id}");
    if Path::new(&state).exists() {
        found.push(state);
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&format!("/{id}/")))
            .map(String::from),
    );
    // ctr's specs put the cgroup under the namespace; a bare spec gets
    // skiff's default parent.
    for hierarchy in ["memory", "pids", "cpu", "unified", ""] {
        for parent in ["skiff-e2e", "skiff"] {
            let dir = format!("/sys/fs/cgroup/{hierarchy}/{parent}/{id}");
            if Path::new(&dir).exists() {
                found.push(dir);
            }
        }
    }
    found
}

/// A shim started by a test without containerd has no one to stop it if
/// the test fails half way: this kills it and its container (a shim
/// that shut down cleanly is gone already and nothing is left to do).
struct DirectShimCleanup {
    socket: String,
    id: &'static str,
}

impl Drop for DirectShimCleanup {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                "--",
                &format!("-socket unix://{}", self.socket),
            ])
            .status();
        let _ = std::fs::remove_file(&self.socket);
        let _ = Command::new(skiff_e2e::skiff_bin())
            .args([
                "--root",
                "/run/containerd/skiff/skiff-e2e",
                "delete",
                "--force",
                self.id,
            ])
            .stderr(Stdio::null())
            .status();
        for dir in leftovers(self.id) {
            if let Ok(procs) = std::fs::read_to_string(format!("{dir}/cgroup.procs")) {
                for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
                    // SAFETY: kill(2) of a process in the test's own cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(100));
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// What the shim's ttrpc server does with requests containerd does not
/// send: the Task service under containerd 2's name (v3) works, another
/// service is Unimplemented, and a garbage frame costs only the
/// connection it came on.
fn protocol_edges(address: &str, id: &str) -> Result<(), String> {
    // Each call on a connection of its own.
    let call = |service: &str| {
        let client = Client::connect(address).unwrap();
        let req = ttrpc::Request {
            service: service.into(),
            method: "Connect".into(),
            payload: ConnectRequest {
                id: id.into(),
                ..Default::default()
            }
            .write_to_bytes()
            .unwrap(),
            timeout_nano: 10_000_000_000,
            ..Default::default()
        };
        client.request(req)
    };
    let v3 = call("containerd.task.v3.Task");
    let pid = v3
        .as_ref()
        .ok()
        .and_then(|r| ConnectResponse::parse_from_bytes(&r.payload).ok())
        .map_or(0, |c| c.task_pid);
    expect!(pid > 0, "Connect as containerd.task.v3.Task: {v3:?}");
    let other = format!("{:?}", call("containerd.nosuch.v1.Service").err());
    expect!(
        other.contains("UNIMPLEMENTED") && other.contains("containerd.nosuch.v1.Service"),
        "unknown service: {other}"
    );
    let path = address.trim_start_matches("unix://");
    let mut raw = std::os::unix::net::UnixStream::connect(path).unwrap();
    std::io::Write::write_all(&mut raw, &[0, 0, 0, 3, 0, 0, 0, 1, 1, 0, 0xff, 0xff, 0xff]).unwrap();
    drop(raw);
    let after = call("containerd.task.v2.Task");
    expect!(after.is_ok(), "after a garbage frame: {after:?}");
    Ok(())
}

/// Drives a shim directly over ttrpc, without containerd's task service:
/// a bundle of our own with poststart and poststop hooks (which ctr cannot
/// set), through create, start, kill, wait, delete and shutdown.
fn hooks_through_the_shim(sock: &Path, rootfs: &Path, report: &mut Report) {
    report.run("poststart and poststop hooks (direct ttrpc)", "skiff", || {
        let id = "hooks-skiff";
        let bundle = sock.parent().unwrap().join("hook-bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        check(
            Command::new(skiff_e2e::skiff_bin())
                .args(["spec", "--bundle"])
                .arg(&bundle),
        );
        let config = bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        let mark = |name: &str| bundle.join(name).display().to_string();
        let hook = |file: String| {
            serde_json::json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {file}")]}])
        };
        spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sleep", "1000"]);
        spec["hooks"] = serde_json::json!({
            "poststart": hook(mark("poststart")),
            "poststop": hook(mark("poststop")),
        });
        std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
        // The shim logs to the fifo containerd makes in the bundle; hold
        // it open read-write so its writes never block or fail.
        let log = bundle.join("log");
        let c_log = std::ffi::CString::new(log.display().to_string()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_log.as_ptr(), 0o600) }, 0);
        let _log = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log)
            .unwrap();
        let out = check(
            Command::new(shim_bin())
                .args(["-namespace", "skiff-e2e", "-id", id, "-address"])
                .arg(sock)
                .arg("start")
                .current_dir(&bundle)
                .env("TTRPC_ADDRESS", sock.with_extension("sock.ttrpc"))
                .stdin(Stdio::null()),
        );
        let address = stdout(&out);
        let _cleanup = DirectShimCleanup {
            socket: address.trim().trim_start_matches("unix://").to_string(),
            id,
        };
        let shim = ShimClient(TaskClient::new(Client::connect(address.trim()).unwrap()));
        let ctx = || context::with_timeout(30_000_000_000);
        // A request asking for a terminal the spec does not have: a clear
        // error, the created container rolled back.
        let mismatch = shim.0.create(
            ctx(),
            &CreateTaskRequest {
                id: id.into(),
                bundle: bundle.display().to_string(),
                terminal: true,
                ..Default::default()
            },
        );
        let message = format!("{mismatch:?}");
        expect!(
            mismatch.is_err() && message.contains("cannot use console socket"),
            "terminal mismatch: {message}"
        );
        expect!(leftovers(id).is_empty(), "mismatch left {:?}", leftovers(id));
        let created = shim.0.create(
            ctx(),
            &CreateTaskRequest {
                id: id.into(),
                bundle: bundle.display().to_string(),
                ..Default::default()
            },
        );
        expect!(created.is_ok(), "create: {created:?}");
        protocol_edges(address.trim(), id)?;
        // A Wait sent before the exit is parked while other requests are
        // served, and answered at the exit.
        let parked = {
            let client = shim.0.clone();
            let req = WaitRequest {
                id: id.into(),
                ..Default::default()
            };
            std::thread::spawn(move || client.wait(context::with_timeout(30_000_000_000), &req))
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let start = |exec_id: &str| StartRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let started = shim.0.start(ctx(), &start(""));
        let poststart = std::fs::read_to_string(mark("poststart")).unwrap_or_default();
        let killed = shim.0.kill(
            ctx(),
            &KillRequest {
                id: id.into(),
                signal: 9,
                ..Default::default()
            },
        );
        let waited = shim.0.wait(
            ctx(),
            &WaitRequest {
                id: id.into(),
                ..Default::default()
            },
        );
        let deleted = shim.0.delete(
            ctx(),
            &DeleteRequest {
                id: id.into(),
                ..Default::default()
            },
        );
        let poststop = std::fs::read_to_string(mark("poststop")).unwrap_or_default();
        let _ = shim.0.shutdown(
            ctx(),
            &ShutdownRequest {
                id: id.into(),
                ..Default::default()
            },
        );
        let parked = parked.join().unwrap();
        expect!(started.is_ok() && killed.is_ok(), "start {started:?}, kill {killed:?}");
        expect!(
            parked.as_ref().is_ok_and(|w| w.exit_status == 137),
            "parked wait: {parked:?}"
        );
        expect!(
            waited.is_ok_and(|w| w.exit_status == 137) && deleted.is_ok_and(|d| d.exit_status == 137),
            "wait/delete did not report SIGKILL"
        );
        // Each hook got the container state on stdin.
        expect!(
            poststart.contains("\"running\"") && poststop.contains(id),
            "hooks: poststart {poststart:?}, poststop {poststop:?}"
        );
        expect!(leftovers(id).is_empty(), "left {:?}", leftovers(id));
        Ok(())
    });
}

fn lost_shim_is_cleaned_up(ctr: &Ctr, report: &mut Report) {
    report.run(
        "a killed shim: containerd's `shim delete` cleans up",
        "skiff",
        || {
            let c = "lost-skiff";
            check(&mut ctr.run("skiff", &["-d"], c, &["sleep", "1000"]));
            let init = ctr.task_pid(c).ok_or("no task pid")?;
            let result = (|| {
                // The check below must see a live task's traces.
                expect!(
                    leftovers(c).len() >= 2,
                    "no state or cgroup seen: {:?}",
                    leftovers(c)
                );
                let socket = shim_address(&ctr.sock, c).replace("unix://", "");
                expect!(Path::new(&socket).exists(), "no shim socket {socket}");
                let out = Command::new("pgrep")
                    .args(["-f", &format!("containerd-shim-skiff-v2 .*-id {c} ")])
                    .output()
                    .unwrap();
                let shim: i32 = stdout(&out)
                    .trim()
                    .parse()
                    .map_err(|_| format!("shim pid: {out:?}"))?;
                // SAFETY: kill(2) of the shim found above.
                unsafe { libc::kill(shim, libc::SIGKILL) };
                let gone = wait_for(20, || {
                    !Path::new(&format!("/proc/{init}")).exists()
                        && leftovers(c).is_empty()
                        && !Path::new(&socket).exists()
                });
                expect!(
                    gone,
                    "after the shim died: init {init} alive, socket {socket} kept or {:?} left",
                    leftovers(c)
                );
                Ok(())
            })();
            ctr.cleanup(c);
            result
        },
    );
}

fn expect_no_leftovers(containerd: &Path, report: &mut Report) {
    report.run("every shim exits after its last task", "skiff", || {
        expect!(
            wait_for(10, || shim_processes(containerd).is_empty()),
            "shims still running: {:?}",
            shim_processes(containerd)
        );
        Ok(())
    });
}

fn shim_scenarios(ctr: &Ctr, events: &EventLog, report: &mut Report) {
    report.run(
        "start's reply picks the newest task API containerd reads",
        "skiff",
        || {
            let c = "api-skiff";
            check(&mut ctr.run("skiff", &["-d"], c, &["sleep", "1000"]));
            let file = task_bundle(&ctr.sock, c).join("bootstrap.json");
            // containerd 2 keeps the reply it took in bootstrap.json;
            // containerd 1.6 reads a bare address and keeps no such file.
            let version = std::fs::read(&file)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .map(|v| v["version"].clone());
            let wanted = match Generation::current() {
                Generation::Bookworm => None,
                Generation::Sid => Some(serde_json::json!(3)),
            };
            let out = ctr.output(ctr.cmd(&["task", "exec", "--exec-id", "api", c, "true"]));
            ctr.cleanup(c);
            expect!(
                version == wanted,
                "task API version {version:?}, wanted {wanted:?}"
            );
            expect!(out.status.success(), "exec over that API: {out:?}");
            Ok(())
        },
    );
    report.run("-v and -info", "skiff", || {
        let out = check(Command::new(shim_bin()).arg("-v"));
        expect!(
            stdout(&out).starts_with("containerd-shim-skiff-v2:\n  Version:"),
            "-v: {out:?}"
        );
        let out = check(Command::new(shim_bin()).arg("-info").stdin(Stdio::null()));
        // A RuntimeInfo message: the runtime's name, and the features of
        // the skiff beside the shim.
        let has = |what: &[u8]| out.stdout.windows(what.len()).any(|w| w == what);
        expect!(
            has(b"io.containerd.skiff.v2")
                && has(b"runtime-spec/1/features/Features")
                && has(b"\"ociVersionMax\""),
            "-info: {out:?}"
        );
        Ok(())
    });
    report.run(
        "binary:// logging (containerd's logging-binary protocol)",
        "skiff",
        || {
            let dir = ctr.sock.parent().unwrap();
            let logger = dir.join("logger.sh");
            let file = dir.join("binary.log");
            std::fs::write(
                &logger,
                "#!/bin/sh\n\
             exec 5>&-\n\
             echo \"id=$CONTAINER_ID ns=$CONTAINER_NAMESPACE $1\" > \"$2\"\n\
             cat <&3 >> \"$2\" &\n\
             cat <&4 >> \"$2\"\n\
             wait\n",
            )
            .unwrap();
            std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let uri = format!("binary://{}?out={}", logger.display(), file.display());
            let c = "binlog-skiff";
            check(&mut ctr.run(
                "skiff",
                &["-d", "--log-uri", &uri],
                c,
                &[
                    "sh",
                    "-c",
                    "echo to-stdout; echo to-stderr >&2; exec sleep 1000",
                ],
            ));
            let read = || std::fs::read_to_string(&file).unwrap_or_default();
            let complete = wait_for(10, || {
                read().contains("to-stdout") && read().contains("to-stderr")
            });
            ctr.cleanup(c);
            let text = read();
            expect!(
                complete && text.starts_with(&format!("id={c} ns=skiff-e2e out\n")),
                "logging binary wrote {text:?}"
            );
            Ok(())
        },
    );
    report.run("task events reach containerd", "skiff", || {
        let c = "events-skiff";
        check(&mut ctr.run("skiff", &["-d"], c, &["sleep", "1000"]));
        let result = (|| {
            check(&mut ctr.cmd(&["task", "exec", "--exec-id", "ev1", c, "true"]));
            check(&mut ctr.cmd(&["task", "pause", c]));
            check(&mut ctr.cmd(&["task", "resume", c]));
            for topic in [
                "/tasks/create",
                "/tasks/start",
                "/tasks/exec-added",
                "/tasks/exec-started",
                "/tasks/paused",
                "/tasks/resumed",
            ] {
                expect!(events.saw(topic, c), "no {topic} event for {c}");
            }
            Ok(())
        })();
        ctr.cleanup(c);
        expect!(events.saw("/tasks/exit", c), "no /tasks/exit event for {c}");
        expect!(
            events.saw("/tasks/delete", c),
            "no /tasks/delete event for {c}"
        );
        result
    });
    report.run("OOM kill publishes /tasks/oom", "skiff", || {
        let c = "oomev-skiff";
        let out = ctr.output(ctr.run(
            "skiff",
            &["--rm", "--memory-limit", "33554432"],
            c,
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"],
        ));
        expect!(out.status.code() == Some(137), "{out:?}");
        expect!(events.saw("/tasks/oom", c), "no /tasks/oom event");
        Ok(())
    });
    report.run(
        "update, stats (task metrics) and pids (task ps)",
        "skiff",
        || {
            let c = "update-skiff";
            check(&mut ctr.run("skiff", &["-d"], c, &["sleep", "1000"]));
            let result = (|| {
                // ctr 1.6 has no `task update`: talk to the shim directly.
                let shim = ShimClient::of(&ctr.sock, c);
                shim.update(c, r#"{"memory":{"limit":50331648}}"#)?;
                let unknown = shim.state("no-such-task").err().unwrap_or_default();
                expect!(
                    unknown.contains("NOT_FOUND") || unknown.contains("not found"),
                    "state of an unknown task: {unknown}"
                );
                let pid = ctr.task_pid(c).ok_or("no task pid")?;
                let cgroups =
                    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                let limit = match cgroups
                    .lines()
                    .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
                {
                    Some(path) => std::fs::read_to_string(format!(
                        "/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
                    )),
                    None => {
                        let path = cgroups
                            .lines()
                            .find_map(|l| l.strip_prefix("0::"))
                            .ok_or("no cgroup")?;
                        std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max"))
                    }
                }
                .unwrap_or_default();
                expect!(
                    limit.trim() == "50331648",
                    "memory limit after update: {limit:?}"
                );
                let out = check(&mut ctr.cmd(&["task", "metrics", c]));
                let text = stdout(&out);
                let limit_row = text
                    .lines()
                    .any(|l| l.contains("limit") && l.contains("50331648"));
                expect!(limit_row, "metrics without the new limit:\n{text}");
                let out = check(&mut ctr.cmd(&["task", "ps", c]));
                expect!(stdout(&out).contains(&pid.to_string()), "task ps: {out:?}");
                Ok(())
            })();
            ctr.cleanup(c);
            result
        },
    );
    report.run(
        "bad input: exec id reused, kill of an exited task",
        "skiff",
        || {
            let c = "bad-skiff";
            check(&mut ctr.run("skiff", &["-d"], c, &["sleep", "1000"]));
            let result = (|| {
                let mut first = ctr.cmd(&["task", "exec", "--exec-id", "same", c, "sleep", "1000"]);
                let mut first = first
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(500));
                let out = ctr.output(ctr.cmd(&["task", "exec", "--exec-id", "same", c, "true"]));
                let _ = first.kill();
                let _ = first.wait();
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                expect!(
                    !out.status.success() && err.contains("already exists"),
                    "reused exec id: {out:?}"
                );
                Ok(())
            })();
            ctr.cleanup(c);
            result?;
            let c = "exited-skiff";
            check(&mut ctr.run("skiff", &["-d"], c, &["true"]));
            let result = (|| {
                let stopped = wait_for(10, || {
                    stdout(&ctr.output(ctr.cmd(&["task", "ls"])))
                        .lines()
                        .any(|l| l.starts_with(c) && l.contains("STOPPED"))
                });
                expect!(stopped, "task never stopped");
                let out = ctr.output(ctr.cmd(&["task", "kill", c]));
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                expect!(
                    !out.status.success() && err.contains("finished"),
                    "kill of an exited task: {out:?}"
                );
                Ok(())
            })();
            ctr.cleanup(c);
            result
        },
    );
    report.run(
        "pod grouping: one shim, a broken bundle does not hurt the other",
        "skiff",
        || {
            let pod = ["--annotation", "io.kubernetes.cri.sandbox-id=pod-skiff"];
            let run = |id: &str, args: &[&str]| {
                ctr.output(ctr.run("skiff", &[&["-d"][..], &pod[..]].concat(), id, args))
            };
            let shims_before = shim_processes(&ctr.sock).len();
            let out = run("pod-a-skiff", &["sleep", "1000"]);
            expect!(out.status.success(), "{out:?}");
            let result = (|| {
                let out = run("pod-b-skiff", &["sleep", "1000"]);
                expect!(out.status.success(), "{out:?}");
                expect!(
                    shim_processes(&ctr.sock).len() == shims_before + 1,
                    "pod containers got shims {:?}",
                    shim_processes(&ctr.sock)
                );
                let out = run("pod-c-skiff", &["/no/such/binary"]);
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                expect!(
                    !out.status.success() && err.contains("/no/such/binary"),
                    "broken bundle: {out:?}"
                );
                expect!(
                    leftovers("pod-c-skiff").is_empty(),
                    "the failed create left {:?}",
                    leftovers("pod-c-skiff")
                );
                let out = ctr.output(ctr.cmd(&[
                    "task",
                    "exec",
                    "--exec-id",
                    "alive",
                    "pod-a-skiff",
                    "echo",
                    "ok",
                ]));
                expect!(
                    stdout(&out) == "ok\n",
                    "shim stopped serving after a bad create: {out:?}"
                );
                Ok(())
            })();
            for c in ["pod-a-skiff", "pod-b-skiff", "pod-c-skiff"] {
                ctr.cleanup(c);
            }
            result
        },
    );
}

/// A counter that keeps its count in /tmp/n.
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done";

/// The count in container `c` (0 before there is one).
fn count(ctr: &Ctr, c: &str) -> u64 {
    let out = ctr.output(ctr.cmd(&["task", "exec", "--exec-id", "count", c, "cat", "/tmp/n"]));
    stdout(&out).trim().parse().unwrap_or(0)
}

/// ctr's checkpoint commands: the shim's Checkpoint (leaving the task
/// running, or ending it into a directory) and a task created from a
/// checkpoint (`ctr containers restore --live`).
fn checkpoint_scenarios(ctr: &Ctr, rt: &str, report: &mut Report) {
    report.run("ctr task checkpoint leaves the task running", rt, || {
        expect!(skiff_e2e::which("criu").is_some(), "criu is not installed");
        let c = format!("ckpt-{rt}");
        check(&mut ctr.run(rt, &["-d"], &c, &["sh", "-c", COUNTER]));
        let result = (|| {
            expect!(wait_for(10, || count(ctr, &c) > 3), "no count");
            let out = ctr.output(ctr.cmd(&["task", "checkpoint", &c]));
            expect!(out.status.success(), "checkpoint: {out:?}");
            let image = stdout(&out).trim().to_string();
            let images = stdout(&ctr.output(ctr.cmd(&["images", "ls", "-q"])));
            let _ = ctr.output(ctr.cmd(&["images", "rm", &image]));
            expect!(
                images.lines().any(|l| l == image),
                "no checkpoint image {image:?} in {images:?}"
            );
            let before = count(ctr, &c);
            expect!(
                wait_for(10, || count(ctr, &c) > before + 3),
                "the count stopped after the checkpoint"
            );
            Ok(())
        })();
        ctr.cleanup(&c);
        result
    });
    report.run(
        "ctr task checkpoint --exit --image-path ends the task",
        rt,
        || {
            let c = format!("ckpt-exit-{rt}");
            let dir = ctr.sock.with_file_name(format!("ckpt-images-{rt}"));
            check(&mut ctr.run(rt, &["-d"], &c, &["sh", "-c", COUNTER]));
            let result = (|| {
                expect!(wait_for(10, || count(ctr, &c) > 3), "no count");
                let d = dir.to_str().unwrap();
                let out =
                    ctr.output(ctr.cmd(&["task", "checkpoint", "--exit", "--image-path", d, &c]));
                expect!(out.status.success(), "checkpoint: {out:?}");
                expect!(dir.join("inventory.img").exists(), "no CRIU images in {d}");
                let stopped = wait_for(10, || {
                    stdout(&ctr.output(ctr.cmd(&["task", "ls"])))
                        .lines()
                        .any(|l| l.starts_with(&c) && l.contains("STOPPED"))
                });
                expect!(stopped, "the task did not stop");
                Ok(())
            })();
            ctr.cleanup(&c);
            let _ = std::fs::remove_dir_all(&dir);
            result
        },
    );
    report.run(
        "ctr containers checkpoint --task, restore --live as a new container",
        rt,
        || {
            let c = format!("ckpt-live-{rt}");
            let restored = format!("ckpt-restored-{rt}");
            let image = format!("skiff-e2e/ckpt-{rt}:1");
            check(&mut ctr.run(rt, &["-d"], &c, &["sh", "-c", COUNTER]));
            let result = (|| {
                // Far enough that a counter started again would be seen.
                expect!(wait_for(10, || count(ctr, &c) > 20), "no count");
                let dumped = count(ctr, &c);
                let out = ctr.output(ctr.cmd(&["containers", "checkpoint", "--task", &c, &image]));
                expect!(out.status.success(), "checkpoint: {out:?}");
                ctr.cleanup(&c);
                let out =
                    ctr.output(ctr.cmd(&["containers", "restore", "--live", &restored, &image]));
                expect!(out.status.success(), "restore: {out:?}");
                let mut first = 0;
                expect!(
                    wait_for(10, || {
                        first = count(ctr, &restored);
                        first > 0
                    }),
                    "no count in the restored task"
                );
                expect!(
                    first >= dumped,
                    "the restored count starts at {first}, it was {dumped} before the dump"
                );
                expect!(
                    wait_for(10, || count(ctr, &restored) > first + 3),
                    "the restored count does not go on"
                );
                Ok(())
            })();
            ctr.cleanup(&c);
            ctr.cleanup(&restored);
            let _ = ctr.output(ctr.cmd(&["images", "rm", &image]));
            result
        },
    );
}
