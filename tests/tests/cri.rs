//! containerd's CRI plugin (what the kubelet talks to) runs pods through
//! skiff: a small CRI client (gRPC, the k8s-cri crate's API) drives a
//! private containerd with three runtime handlers: `skiff` (skiff's own
//! shim, as README configures it), `skiff-runc` (containerd's runc shim
//! calling skiff) and `runc` (the reference). Pods use the host's network (no CNI here) and a
//! busybox pause image; nothing is pulled.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatsRequest, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, ImageStatusRequest,
    LinuxContainerResources, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StatusRequest,
    StopContainerRequest, StopPodSandboxRequest, UpdateContainerResourcesRequest, VersionRequest,
};
use skiff_e2e::engines::Generation;
use skiff_e2e::{check, expect, require, wait_for, Report, Workdir};
use tonic::transport::{Channel, Endpoint, Uri};

const IMAGE: &str = "docker.io/library/busybox:e2e";
/// The sandbox ("pause") image: busybox sleeping until killed.
const PAUSE: &str = "docker.io/library/busybox-pause:e2e";
/// Where the pods' cgroups go (cgroupfs driver), removed at the end.
const CGROUP_PARENT: &str = "skiff-e2e-cri";
/// CRI's NamespaceMode NODE: the host's network, so no CNI is needed.
const HOST_NETWORK: i32 = 2;
/// CRI's ContainerState.
const RUNNING: i32 = 1;
const EXITED: i32 = 2;
/// PodSandboxState.
const SANDBOX_READY: i32 = 0;
const SANDBOX_NOT_READY: i32 = 1;

/// A blocking CRI client over containerd's unix socket.
struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// One CRI call: `cri!(client, runtime|images, method, request)`, the
/// reply or the gRPC status as a string naming the method.
macro_rules! cri {
    ($cri:expr, $service:ident, $method:ident, $req:expr) => {{
        let mut client = $cri.$service.clone();
        let req = $req;
        $cri.rt
            .block_on(async move { client.$method(req).await })
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("{}: {:?}: {}", stringify!($method), s.code(), s.message()))
    }};
}

impl Cri {
    fn connect(sock: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = sock.to_path_buf();
        // The URI is required and ignored: every connection is the socket.
        let channel = rt
            .block_on(
                Endpoint::from_static("http://localhost")
                    .timeout(Duration::from_secs(60))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    })),
            )
            .unwrap();
        Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }
}

/// The runtime handlers' tables under `prefix` (the CRI runtime plugin's
/// `containerd` table). skiff's shim is named by path with the runc
/// shim's type: CRI asks a handler for its features (`-info`) only when
/// its type is io.containerd.runc.v2, and a handler of another type
/// supports nothing for the kubelet.
fn runtimes(prefix: &str, work: &Workdir, shim: &Path) -> String {
    let skiff = skiff_e2e::skiff_bin();
    let runc = skiff_e2e::which("runc").unwrap();
    format!(
        r#"[{prefix}.runtimes.skiff]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = "{}"
[{prefix}.runtimes.skiff-runc]
  runtime_type = "io.containerd.runc.v2"
[{prefix}.runtimes.skiff-runc.options]
  BinaryName = "{}"
  Root = "{}"
[{prefix}.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{prefix}.runtimes.runc.options]
  BinaryName = "{}"
  Root = "{}"
"#,
        shim.display(),
        skiff.display(),
        work.join("skiff-runc-root").display(),
        runc.display(),
        work.join("runc-root").display(),
    )
}

/// containerd with its CRI plugin on: the pause image pinned, the three
/// handlers, no TCP streaming service, CNI directories of its own. The
/// bounding set here lacks CAP_SYS_RESOURCE, so no process may lower its
/// OOM score: CRI is told not to go below its own (the kubelet's -998 for
/// a sandbox fails under every runtime otherwise).
fn start_containerd(work: &Workdir, shim: &Path) -> skiff_e2e::Daemon {
    let w = work.path.display();
    let streaming = r#"  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#;
    let (version, config) = match Generation::current() {
        Generation::Bookworm => {
            let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
            (
                2,
                format!(
                    r#"[{cri}]
  sandbox_image = "{PAUSE}"
  enable_selinux = false
  restrict_oom_score_adj = true
{streaming}[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
{}[{cri}.cni]
  bin_dir = "{w}/cni/bin"
  conf_dir = "{w}/cni/conf"
"#,
                    runtimes(&format!("{cri}.containerd"), work, shim)
                ),
            )
        }
        Generation::Sid => {
            let images = r#"plugins."io.containerd.cri.v1.images""#;
            let runtime = r#"plugins."io.containerd.cri.v1.runtime""#;
            (
                3,
                format!(
                    r#"[{images}]
  snapshotter = "overlayfs"
[{images}.pinned_images]
  sandbox = "{PAUSE}"
[{runtime}]
  enable_selinux = false
  restrict_oom_score_adj = true
[{runtime}.containerd]
  default_runtime_name = "runc"
{}[{runtime}.cni]
  bin_dirs = ["{w}/cni/bin"]
  conf_dir = "{w}/cni/conf"
[plugins."io.containerd.grpc.v1.cri"]
{streaming}"#,
                    runtimes(&format!("{runtime}.containerd"), work, shim)
                ),
            )
        }
    };
    skiff_e2e::engines::start_containerd_with(work, None, version, "", &config)
}

fn sandbox_config(name: &str, logs: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "skiff-e2e".into(),
            attempt: 0,
        }),
        // On the host's network the pod has the host's UTS namespace and
        // name: the kubelet sends none.
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{CGROUP_PARENT}/{name}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: HOST_NETWORK,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod of one handler, stopped and removed (with its containers) when
/// dropped.
struct Pod<'a> {
    cri: &'a Cri,
    id: String,
    config: PodSandboxConfig,
}

impl<'a> Pod<'a> {
    fn run(cri: &'a Cri, handler: &str, logs: &Path) -> Result<Pod<'a>, String> {
        std::fs::create_dir_all(logs).unwrap();
        let config = sandbox_config(&format!("pod-{handler}"), logs);
        let reply = cri!(
            cri,
            runtime,
            run_pod_sandbox,
            RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.into(),
            }
        )?;
        Ok(Pod {
            cri,
            id: reply.pod_sandbox_id,
            config,
        })
    }

    fn state(&self) -> Result<i32, String> {
        let reply = cri!(
            self.cri,
            runtime,
            pod_sandbox_status,
            PodSandboxStatusRequest {
                pod_sandbox_id: self.id.clone(),
                verbose: false,
            }
        )?;
        Ok(reply.status.map_or(-1, |s| s.state))
    }

    /// Creates and starts a container running `args`, logging to `log`.
    fn container(&self, name: &str, args: &[&str], log: &str) -> Result<String, String> {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: args.iter().map(|s| s.to_string()).collect(),
            log_path: log.into(),
            ..Default::default()
        };
        let reply = cri!(
            self.cri,
            runtime,
            create_container,
            CreateContainerRequest {
                pod_sandbox_id: self.id.clone(),
                config: Some(config),
                sandbox_config: Some(self.config.clone()),
            }
        )?;
        let id = reply.container_id;
        cri!(
            self.cri,
            runtime,
            start_container,
            StartContainerRequest {
                container_id: id.clone(),
            }
        )?;
        Ok(id)
    }

    /// Runs `check` on a running container `name` of `args`, which is
    /// stopped and removed after, whatever the outcome.
    fn with_running(
        &self,
        name: &str,
        args: &[&str],
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Result<(), String> {
        let id = self.container(name, args, &format!("{name}.log"))?;
        let result = wait_state(self, &id, RUNNING).and_then(|_| check(&id));
        let _ = self.stop(&id, 0);
        let _ = self.remove(&id);
        result
    }

    /// The state and exit code of container `id`.
    fn status(&self, id: &str) -> Result<(i32, i32), String> {
        let reply = cri!(
            self.cri,
            runtime,
            container_status,
            ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }
        )?;
        let s = reply.status.ok_or("no status")?;
        Ok((s.state, s.exit_code))
    }

    fn exec(&self, id: &str, cmd: &[&str]) -> Result<(String, String, i32), String> {
        let reply = cri!(
            self.cri,
            runtime,
            exec_sync,
            ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 30,
            }
        )?;
        Ok((
            String::from_utf8_lossy(&reply.stdout).into_owned(),
            String::from_utf8_lossy(&reply.stderr).into_owned(),
            reply.exit_code,
        ))
    }

    fn stop(&self, id: &str, timeout: i64) -> Result<(), String> {
        cri!(
            self.cri,
            runtime,
            stop_container,
            StopContainerRequest {
                container_id: id.into(),
                timeout,
            }
        )
        .map(drop)
    }

    fn remove(&self, id: &str) -> Result<(), String> {
        cri!(
            self.cri,
            runtime,
            remove_container,
            RemoveContainerRequest {
                container_id: id.into(),
            }
        )
        .map(drop)
    }

    /// Stops and removes the pod; every call must succeed and the pod be
    /// gone after (the drop that follows finds nothing to do).
    fn finish(self) -> Result<(), String> {
        let id = self.id.clone();
        cri!(
            self.cri,
            runtime,
            stop_pod_sandbox,
            StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }
        )?;
        let stopped = self.state()?;
        cri!(
            self.cri,
            runtime,
            remove_pod_sandbox,
            RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }
        )?;
        let after = self.state();
        expect!(
            stopped == SANDBOX_NOT_READY,
            "pod state after stop: {stopped}"
        );
        expect!(
            after.as_ref().is_err_and(|e| e.contains("NotFound")),
            "pod status after remove: {after:?}"
        );
        Ok(())
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let id = self.id.clone();
        let _ = cri!(
            self.cri,
            runtime,
            stop_pod_sandbox,
            StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }
        );
        let _ = cri!(
            self.cri,
            runtime,
            remove_pod_sandbox,
            RemovePodSandboxRequest { pod_sandbox_id: id }
        );
    }
}

/// Waits for container `id` to reach `state`; its exit code then.
fn wait_state(pod: &Pod, id: &str, state: i32) -> Result<i32, String> {
    let mut last = Ok((-1, -1));
    let reached = wait_for(20, || {
        last = pod.status(id);
        last.as_ref().is_ok_and(|(s, _)| *s == state)
    });
    expect!(
        reached,
        "container {id} never reached state {state}: {last:?}"
    );
    Ok(last?.1)
}

/// The memory limit file of the container's cgroup, read inside it.
fn memory_limit_file() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup/memory.max"
    } else {
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    }
}

fn scenarios(cri: &Cri, handler: &str, logs: &Path, report: &mut Report) {
    let mut pod = None;
    report.run("pod sandbox runs and is ready", handler, || {
        let p = Pod::run(cri, handler, &logs.join(handler))?;
        let state = p.state()?;
        pod = Some(p);
        expect!(state == SANDBOX_READY, "pod state {state}");
        Ok(())
    });
    let Some(pod) = pod else {
        return;
    };
    report.run(
        "container: create, start, stop with a grace period, remove",
        handler,
        || {
            let script = "trap 'exit 42' TERM; touch /tmp/ready; while :; do sleep 0.05; done";
            let id = pod.container("trap", &["sh", "-c", script], "trap.log")?;
            wait_state(&pod, &id, RUNNING)?;
            // Running is said once the process is there, before the shell
            // set its trap.
            let ready = wait_for(20, || {
                pod.exec(&id, &["test", "-e", "/tmp/ready"])
                    .is_ok_and(|(_, _, code)| code == 0)
            });
            expect!(ready, "the trap was never set");
            pod.stop(&id, 10)?;
            let code = wait_state(&pod, &id, EXITED)?;
            pod.remove(&id)?;
            expect!(code == 42, "exit code after stop: {code}");
            let gone = pod.status(&id);
            expect!(
                gone.as_ref().is_err_and(|e| e.contains("NotFound")),
                "status after remove: {gone:?}"
            );
            Ok(())
        },
    );
    report.run("exit code of a finished container", handler, || {
        let id = pod.container("exit", &["sh", "-c", "exit 7"], "exit.log")?;
        let code = wait_state(&pod, &id, EXITED)?;
        pod.remove(&id)?;
        expect!(code == 7, "exit code {code}");
        Ok(())
    });
    report.run(
        "exec: stdout, stderr, exit code, same pid namespace",
        handler,
        || {
            pod.with_running("exec", &["sleep", "1000"], |id| {
                let got = pod.exec(id, &["sh", "-c", "echo out; echo err >&2; exit 3"])?;
                expect!(got == ("out\n".into(), "err\n".into(), 3), "exec: {got:?}");
                let (out, _, _) = pod.exec(
                    id,
                    &[
                        "sh",
                        "-c",
                        "readlink /proc/1/ns/pid; readlink /proc/self/ns/pid",
                    ],
                )?;
                let lines: Vec<&str> = out.lines().collect();
                expect!(
                    lines.len() == 2 && lines[0] == lines[1],
                    "pid namespaces: {out:?}"
                );
                Ok(())
            })
        },
    );
    report.run("logs in CRI format", handler, || {
        let id = pod.container(
            "logs",
            &["sh", "-c", "echo to-stdout; echo to-stderr >&2"],
            "logs.log",
        )?;
        wait_state(&pod, &id, EXITED)?;
        let file = logs.join(handler).join("logs.log");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        pod.remove(&id)?;
        // <time> <stream> F <line>: F for a full line.
        expect!(
            text.contains(" stdout F to-stdout\n") && text.contains(" stderr F to-stderr\n"),
            "{}: {text:?}",
            file.display()
        );
        Ok(())
    });
    report.run("stats: cpu and memory", handler, || {
        let busy = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 1000";
        pod.with_running("stats", &["sh", "-c", busy], |id| {
            let mut last = None;
            let seen = wait_for(20, || {
                last = cri!(
                    cri,
                    runtime,
                    container_stats,
                    ContainerStatsRequest {
                        container_id: id.into(),
                    }
                )
                .ok()
                .and_then(|r| r.stats);
                last.as_ref().is_some_and(|s| {
                    let cpu = s.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds);
                    let mem = s.memory.as_ref().and_then(|m| m.working_set_bytes);
                    cpu.is_some_and(|c| c.value > 0) && mem.is_some_and(|m| m.value > 0)
                })
            });
            expect!(seen, "no cpu and memory usage: {last:?}");
            Ok(())
        })
    });
    report.run(
        "update resources: memory limit seen inside",
        handler,
        || {
            pod.with_running("update", &["sleep", "1000"], |id| {
                cri!(
                    cri,
                    runtime,
                    update_container_resources,
                    UpdateContainerResourcesRequest {
                        container_id: id.into(),
                        linux: Some(LinuxContainerResources {
                            memory_limit_in_bytes: 64 << 20,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                )?;
                let (out, err, code) = pod.exec(id, &["cat", memory_limit_file()])?;
                expect!(
                    out.trim() == (64u64 << 20).to_string(),
                    "limit inside: {out:?} {err:?} {code}"
                );
                Ok(())
            })
        },
    );
    report.run("pod sandbox stops and is removed", handler, || pod.finish());
}

#[test]
fn cri_runs_skiff() {
    require!("containerd", "ctr", "containerd-shim-runc-v2", "runc");
    let shim = skiff_e2e::skiff_bin().with_file_name("containerd-shim-skiff-v2");
    assert!(shim.exists(), "{} not built", shim.display());
    // The shims' sockets and skiff's shim state: removed at the end if
    // this test created them.
    let _outside = skiff_e2e::CreatedOutside::watch(&[
        "/run/containerd",
        "/run/containerd/skiff",
        "/var/lib/containerd",
    ]);
    let work = Workdir::new("cri");
    let image = skiff_e2e::busybox_image(&work, IMAGE);
    let pause_dir: PathBuf = work.join("pause");
    let pause = skiff_e2e::oci_archive(&image.tar, &pause_dir, PAUSE, &["sleep", "2147483647"]);
    let daemon = start_containerd(&work, &shim);
    let sock = work.join("containerd.sock");
    // CRI keeps its containers in containerd's k8s.io namespace.
    for archive in [&image.archive, &pause] {
        check(
            std::process::Command::new("ctr")
                .arg("--address")
                .arg(&sock)
                .args(["--namespace", "k8s.io", "images", "import"])
                .arg(archive),
        );
    }
    let cri = Cri::connect(&sock);
    let mut report = Report::new("cri");
    report.run("version and image status", "skiff", || {
        let v = cri!(cri, runtime, version, VersionRequest::default())?;
        expect!(v.runtime_name == "containerd", "version: {v:?}");
        let status = cri!(
            cri,
            images,
            image_status,
            ImageStatusRequest {
                image: Some(ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                verbose: false,
            }
        )?;
        expect!(status.image.is_some(), "image {IMAGE} not seen by CRI");
        Ok(())
    });
    // containerd 2 tells the kubelet what each handler supports, from
    // the runtime's `features` (through the shim's `-info`); 1.6 tells
    // nothing, so there is nothing to compare.
    if Generation::current() == Generation::Sid {
        report.run(
            "handler features (recursive read-only mounts, user namespaces) as runc's",
            "skiff",
            || {
                let status = cri!(cri, runtime, status, StatusRequest { verbose: false })?;
                let features = |name: &str| {
                    status
                        .runtime_handlers
                        .iter()
                        .find(|h| h.name == name)
                        .and_then(|h| h.features)
                };
                let runc = features("runc");
                expect!(
                    runc.is_some_and(|f| f.recursive_read_only_mounts && f.user_namespaces),
                    "runc's features: {runc:?}"
                );
                for handler in ["skiff", "skiff-runc"] {
                    let ours = features(handler);
                    expect!(ours == runc, "{handler}: {ours:?}, runc: {runc:?}");
                }
                Ok(())
            },
        );
    }
    let logs = work.join("logs");
    for handler in ["skiff", "skiff-runc", "runc"] {
        scenarios(&cri, handler, &logs, &mut report);
    }
    drop(cri);
    drop(daemon);
    drop(work);
    skiff_e2e::remove_parent_cgroup(CGROUP_PARENT);
    report.finish();
}
