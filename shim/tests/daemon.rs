//! The shim daemon driven directly over ttrpc, as containerd drives it,
//! with this test standing in for containerd: it runs `start`, serves the
//! Events API the shim publishes to, and calls the Task API with
//! containerd's own generated client. No containerd is needed, so this
//! runs in the pure cgroup v2 guest too (scripts/v2-tests.sh), where the
//! stats are cgroup2 metrics and OOM kills are seen through
//! memory.events.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{
    ConnectRequest, CreateTaskRequest, DeleteRequest, Empty, PidsRequest, ShutdownRequest,
    StartRequest, StatsRequest, WaitRequest,
};
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::shim_sync::{create_events, Events};
use containerd_shim_protos::ttrpc::{self, context, Server, TtrpcContext};
use containerd_shim_protos::{Client, TaskClient};
use serde_json::json;

const BUSYBOX: &str = "/bin/busybox";
const LIMIT: i64 = 32 << 20;

/// The containerd namespace of this test process: the shim keeps its
/// containers' state under /run/containerd/skiff/<namespace>, and two runs
/// of these tests at once must not share (and remove) it.
fn namespace() -> String {
    format!("skiff-shim-test-{}", std::process::id())
}

/// The socket path of a `unix://` address.
fn socket_path(address: &str) -> &str {
    address.trim_start_matches("unix://")
}

fn shim_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-skiff-v2"))
}

/// Skips loudly without root or busybox; with SKIFF_REQUIRE_ALL (CI)
/// that is a failure instead.
fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    if !Path::new(BUSYBOX).exists() {
        return Some(format!("{BUSYBOX} missing (apt install busybox-static)"));
    }
    let skiff = shim_bin().with_file_name("skiff");
    if !skiff.exists() {
        return Some(format!(
            "{} missing (cargo build -p skiff)",
            skiff.display()
        ));
    }
    None
}

/// The events the shim forwarded: (topic, type name).
#[derive(Default)]
struct Collector(Mutex<Vec<(String, String)>>);

impl Events for Collector {
    fn forward(&self, _: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let env = req.envelope.unwrap_or_default();
        let kind = env
            .event
            .as_ref()
            .map(|a| a.type_url.clone())
            .unwrap_or_default();
        self.0.lock().unwrap().push((env.topic, kind));
        Ok(Empty::default())
    }
}

impl Collector {
    fn topics(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
}

fn make_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "dd", "echo"] {
        symlink("busybox", bin.join(applet)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
}

/// A failing test must not leave its shim and container running: this
/// kills both (after a clean run there is nothing left to kill).
struct Cleanup {
    socket: String,
    id: String,
}

impl Drop for Cleanup {
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
        let _ = Command::new(shim_bin().with_file_name("skiff"))
            .args(["--root", &format!("/run/containerd/skiff/{}", namespace())])
            .args(["delete", "--force", &self.id])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir(format!("/run/containerd/skiff/{}", namespace()));
        for dir in [
            format!("/sys/fs/cgroup/skiff-shim-test-{}", std::process::id()),
            format!("/sys/fs/cgroup/pids/skiff-shim-test-{}", std::process::id()),
        ] {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// cgroup v2 when the unified hierarchy is mounted at /sys/fs/cgroup.
fn unified() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// True when the test can run; otherwise says why (a failure with
/// SKIFF_REQUIRE_ALL, as in CI).
fn ready_to_run(test: &str) -> bool {
    let Some(why) = missing_prerequisite() else {
        return true;
    };
    assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// The shim with containerd's flags for task `id`, run in `bundle`.
fn shim_command(id: &str, bundle: &Path) -> Command {
    let mut cmd = Command::new(shim_bin());
    cmd.args(["-namespace", &namespace(), "-id", id])
        .current_dir(bundle);
    cmd
}

/// Runs `start` with `input` on stdin, as containerd does; its reply.
fn run_start(mut cmd: Command, input: &[u8]) -> Vec<u8> {
    let mut start = cmd
        .arg("start")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    start.stdin.take().unwrap().write_all(input).unwrap();
    let out = start.wait_with_output().unwrap();
    assert!(out.status.success(), "start: {out:?}");
    out.stdout
}

/// The daemon's pid, as Connect reports it.
fn shim_pid(task: &TaskClient, id: &str) -> u32 {
    task.connect(
        context::with_timeout(10_000_000_000),
        &ConnectRequest {
            id: id.to_string(),
            ..Default::default()
        },
    )
    .unwrap()
    .shim_pid
}

/// Asks the daemon to shut down and waits until its socket is gone.
fn shut_down(task: &TaskClient, id: &str, socket: &str) {
    let _ = task.shutdown(
        context::with_timeout(10_000_000_000),
        &ShutdownRequest {
            id: id.to_string(),
            ..Default::default()
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(socket).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(socket).exists(),
        "the shim still serves {socket}"
    );
}

#[test]
fn daemon_serves_a_task_to_its_oom_kill() {
    if !ready_to_run("daemon_serves_a_task_to_its_oom_kill") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("skiff-shim-daemon-{}", std::process::id()));
    let bundle = dir.join("bundle");
    make_rootfs(&bundle.join("rootfs"));
    let id = format!("shimd-{}", std::process::id());

    let collector = Arc::new(Collector::default());
    let events_sock = dir.join("events.sock");
    let mut events = Server::new()
        .bind(&format!("unix://{}", events_sock.display()))
        .unwrap()
        .register_service(create_events(collector.clone()));
    events.start().unwrap();

    // The container waits for a go file, then its init overruns the
    // memory limit.
    let mut spec: serde_json::Value = serde_json::from_str(skiff::commands::spec::DEFAULT).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!([
        "sh",
        "-c",
        "echo up; while [ ! -e /tmp/go ]; do sleep 0.05; done; \
         exec dd if=/dev/zero of=/dev/null bs=128M count=1"
    ]);
    spec["root"] = json!({"path": "rootfs"});
    spec["linux"]["resources"] = json!({"memory": {"limit": LIMIT, "swap": LIMIT}});
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();

    // containerd writes the runtime options to start's stdin: the shim
    // joins the cgroup they name (a cgroup of this test's own).
    let shim_cgroup = format!("/skiff-shim-test-{}", std::process::id());
    let shim_cgroup_dir = if unified() {
        PathBuf::from(format!("/sys/fs/cgroup{shim_cgroup}"))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/pids{shim_cgroup}"))
    };
    std::fs::create_dir(&shim_cgroup_dir).unwrap();
    let start_options = Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: Options {
            shim_cgroup: shim_cgroup.clone(),
            ..Default::default()
        }
        .write_to_bytes()
        .unwrap(),
        ..Default::default()
    };
    let mut cmd = shim_command(&id, &bundle);
    cmd.arg("-address")
        .arg(dir.join("containerd.sock"))
        .env("TTRPC_ADDRESS", &events_sock);
    let address =
        String::from_utf8(run_start(cmd, &start_options.write_to_bytes().unwrap())).unwrap();
    assert!(
        address.starts_with("unix:///run/containerd/s/"),
        "{address}"
    );
    let _cleanup = Cleanup {
        socket: socket_path(&address).to_string(),
        id: id.clone(),
    };
    let task = TaskClient::new(Client::connect(&address).unwrap());
    let ctx = || context::with_timeout(60_000_000_000);
    let shim_pid = shim_pid(&task, &id);
    let score = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
    };
    assert_eq!(
        score(&shim_pid.to_string()),
        (score("self") + 1).min(1000),
        "the shim's OOM score is its starter's + 1"
    );
    let cgroups = std::fs::read_to_string(format!("/proc/{shim_pid}/cgroup")).unwrap();
    assert!(
        cgroups
            .lines()
            .any(|l| l.ends_with(&format!(":{shim_cgroup}"))),
        "the shim is not in {shim_cgroup}: {cgroups}"
    );

    let skiff = shim_bin().with_file_name("skiff");
    let log = dir.join("out.log");
    let options = Options {
        binary_name: skiff.display().to_string(),
        ..Default::default()
    };
    let created = task
        .create(
            ctx(),
            &CreateTaskRequest {
                id: id.clone(),
                bundle: bundle.display().to_string(),
                stdout: format!("file://{}", log.display()),
                options: MessageField::some(Any {
                    type_url: "containerd.runc.v1.Options".into(),
                    value: options.write_to_bytes().unwrap(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(created.pid > 0);
    let started = task
        .start(
            ctx(),
            &StartRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(started.pid, created.pid);

    // Parked until the OOM kill.
    let waiter = {
        let (task, id) = (task.clone(), id.clone());
        std::thread::spawn(move || {
            task.wait(
                context::with_timeout(120_000_000_000),
                &WaitRequest {
                    id,
                    ..Default::default()
                },
            )
        })
    };

    let pids = task
        .pids(
            ctx(),
            &PidsRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        pids.processes.iter().any(|p| p.pid == created.pid),
        "pids {:?} lack the init {}",
        pids.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        created.pid
    );
    let stats = task
        .stats(
            ctx(),
            &StatsRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap()
        .stats
        .unwrap();
    if unified() {
        assert_eq!(stats.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&stats.value).unwrap();
        assert_eq!(m.memory.usage_limit, LIMIT as u64);
        assert!(m.memory.usage > 0 && m.pids.current >= 1, "{m:?}");
    } else {
        assert_eq!(stats.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&stats.value).unwrap();
        assert_eq!(m.memory.usage.limit, LIMIT as u64);
        assert!(m.memory.usage.usage > 0 && m.pids.current >= 1, "{m:?}");
    }

    // Go: the OOM kill ends the init.
    std::fs::write(bundle.join("rootfs/tmp/go"), "").unwrap();
    let waited = waiter.join().unwrap().unwrap();
    assert_eq!(waited.exit_status, 137);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !collector.topics().iter().any(|t| t == "/tasks/oom") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let deleted = task
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(deleted.exit_status, 137);
    // The daemon goes with its socket once its last task is deleted.
    shut_down(&task, &id, socket_path(&address));

    let topics = collector.topics();
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/oom",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(
            topics.iter().any(|t| t == topic),
            "no {topic} in {topics:?}"
        );
    }
    assert!(collector
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|(t, k)| t == "/tasks/oom" && k == "containerd.events.TaskOOM"));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "up\n");

    // The container is gone with its state and cgroup.
    let state = format!("/run/containerd/skiff/{}/{id}", namespace());
    assert!(!Path::new(&state).exists(), "{state} left");
    let cgroup = if unified() {
        format!("/sys/fs/cgroup/skiff/{id}")
    } else {
        format!("/sys/fs/cgroup/memory/skiff/{id}")
    };
    assert!(!Path::new(&cgroup).exists(), "{cgroup} left");
    // The daemon removes its socket just before it exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::remove_dir(&shim_cgroup_dir).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let procs = std::fs::read_to_string(shim_cgroup_dir.join("cgroup.procs"));
    assert!(
        !shim_cgroup_dir.exists(),
        "{shim_cgroup} still busy: {procs:?}"
    );
    events.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// containerd 2.3's start: BootstrapParams on stdin (its ttrpc address,
/// the socket directory), a BootstrapResult on stdout.
#[test]
fn bootstrap_start_serves_where_containerd_asks() {
    use containerd_shim_protos::bootstrap_api::{BootstrapParams, BootstrapResult};
    if !ready_to_run("bootstrap_start_serves_where_containerd_asks") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("skiff-shim-bootstrap-{}", std::process::id()));
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let id = format!("boot-{}", std::process::id());
    let ttrpc = dir.join("containerd.sock.ttrpc");
    let params = BootstrapParams {
        instance_id: id.clone(),
        namespace: namespace(),
        containerd_ttrpc_address: ttrpc.display().to_string(),
        containerd_grpc_address: dir.join("containerd.sock").display().to_string(),
        socket_dir: Some(dir.join("s").display().to_string()),
        ..Default::default()
    };
    let mut cmd = shim_command(&id, &bundle);
    cmd.env_remove("TTRPC_ADDRESS");
    let reply = run_start(cmd, &params.write_to_bytes().unwrap());
    let result = BootstrapResult::parse_from_bytes(&reply).unwrap();
    assert_eq!((result.version, result.protocol.as_str()), (3, "ttrpc"));
    let socket = socket_path(&result.address).to_string();
    assert!(
        socket.starts_with(&format!("{}/", dir.join("s").display())),
        "{socket}"
    );
    let _cleanup = Cleanup {
        socket: socket.clone(),
        id: id.clone(),
    };
    let task = TaskClient::new(Client::connect(&result.address).unwrap());
    let shim_pid = shim_pid(&task, &id);
    // The daemon publishes to the address the params gave.
    let environ = std::fs::read(format!("/proc/{shim_pid}/environ")).unwrap();
    let wanted = format!("TTRPC_ADDRESS={}", ttrpc.display());
    assert!(
        environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()),
        "no {wanted} in the daemon's environment"
    );
    shut_down(&task, &id, &socket);
    std::fs::remove_dir_all(&dir).unwrap();
}
