//! The messages the shim exchanges with containerd, with containerd's
//! field numbers: the Task service (runtime/task/v2 and v3 share them),
//! task events, and the types they embed. Fields the shim never reads
//! or writes are left out; a decoder skips them.

use crate::proto::message;

/// containerd.v1.types.Status.
pub mod status {
    pub const CREATED: i32 = 1;
    pub const RUNNING: i32 = 2;
    pub const STOPPED: i32 = 3;
    pub const PAUSED: i32 = 4;
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    }
}

message! {
    /// google.protobuf.Timestamp.
    pub struct Timestamp {
        1 seconds: i64,
        2 nanos: i32,
    }

    /// google.protobuf.Any: containerd's type URLs are bare type names.
    pub struct Any {
        1 type_url: String,
        2 value: Vec<u8>,
    }

    /// google.protobuf.Empty.
    pub struct Empty {}

    /// containerd.types.Mount.
    pub struct Mount {
        1 kind: String,
        2 source: String,
        3 target: String,
        4 options: Vec<String>,
    }

    /// containerd.v1.types.ProcessInfo.
    pub struct ProcessInfo {
        1 pid: u32,
    }

    /// The runc shim's runtime options (io.containerd.runc.v1.Options),
    /// which containerd passes at Create when configured.
    pub struct Options {
        1 no_pivot_root: bool,
        3 shim_cgroup: String,
        6 binary_name: String,
        7 root: String,
        9 systemd_cgroup: bool,
    }

    pub struct CreateTaskRequest {
        1 id: String,
        2 bundle: String,
        3 rootfs: Vec<Mount>,
        4 terminal: bool,
        5 stdin: String,
        6 stdout: String,
        7 stderr: String,
        8 checkpoint: String,
        9 parent_checkpoint: String,
        10 options: Option<Any>,
    }
    pub struct CreateTaskResponse {
        1 pid: u32,
    }

    /// Checkpoint: CRIU's images go to `path`, a directory containerd
    /// made (or the one its options name).
    pub struct CheckpointTaskRequest {
        1 id: String,
        2 path: String,
        3 options: Option<Any>,
    }
    /// The runc shim's checkpoint options
    /// (containerd.runc.v1.CheckpointOptions).
    pub struct CheckpointOptions {
        1 exit: bool,
        2 open_tcp: bool,
        3 external_unix_sockets: bool,
        4 terminal: bool,
        5 file_locks: bool,
        6 empty_namespaces: Vec<String>,
        7 cgroups_mode: String,
        8 image_path: String,
        9 work_path: String,
    }

    /// Every request that names a process: State, Start, Delete, Wait.
    pub struct ProcessRequest {
        1 id: String,
        2 exec_id: String,
    }
    /// Every request that names only a task: Pids, Pause, Resume, Stats,
    /// Connect, Shutdown.
    pub struct TaskRequest {
        1 id: String,
    }

    pub struct DeleteResponse {
        1 pid: u32,
        2 exit_status: u32,
        3 exited_at: Option<Timestamp>,
    }
    pub struct ExecProcessRequest {
        1 id: String,
        2 exec_id: String,
        3 terminal: bool,
        4 stdin: String,
        5 stdout: String,
        6 stderr: String,
        7 spec: Option<Any>,
    }
    pub struct ResizePtyRequest {
        1 id: String,
        2 exec_id: String,
        3 width: u32,
        4 height: u32,
    }
    pub struct StateResponse {
        1 id: String,
        2 bundle: String,
        3 pid: u32,
        4 status: i32,
        5 stdin: String,
        6 stdout: String,
        7 stderr: String,
        8 terminal: bool,
        9 exit_status: u32,
        10 exited_at: Option<Timestamp>,
        11 exec_id: String,
    }
    pub struct KillRequest {
        1 id: String,
        2 exec_id: String,
        3 signal: u32,
        4 all: bool,
    }
    pub struct CloseIoRequest {
        1 id: String,
        2 exec_id: String,
        3 stdin: bool,
    }
    pub struct PidsResponse {
        1 processes: Vec<ProcessInfo>,
    }
    pub struct UpdateTaskRequest {
        1 id: String,
        2 resources: Option<Any>,
    }
    pub struct StartResponse {
        1 pid: u32,
    }
    pub struct WaitResponse {
        1 exit_status: u32,
        2 exited_at: Option<Timestamp>,
    }
    pub struct StatsResponse {
        1 stats: Option<Any>,
    }
    pub struct ConnectResponse {
        1 shim_pid: u32,
        2 task_pid: u32,
        3 version: String,
    }

    /// containerd 2.3's bootstrap protocol (runtime/bootstrap/v1): what
    /// `start` gets on stdin and replies.
    pub struct BootstrapParams {
        1 instance_id: String,
        2 namespace: String,
        3 log_level: i32,
        5 containerd_ttrpc_address: String,
        6 containerd_grpc_address: String,
        8 extensions: Vec<Extension>,
        9 socket_dir: String,
    }
    pub struct Extension {
        1 value: Option<Any>,
    }
    pub struct BootstrapResult {
        1 version: i32,
        2 address: String,
        3 protocol: String,
    }

    /// containerd.types.introspection.RuntimeInfo, the `-info` reply.
    pub struct RuntimeInfo {
        1 name: String,
        2 version: Option<RuntimeVersion>,
        3 options: Option<Any>,
        4 features: Option<Any>,
    }
    pub struct RuntimeVersion {
        1 version: String,
    }

    /// containerd.types.Envelope and the Events.Forward request.
    pub struct Envelope {
        1 timestamp: Option<Timestamp>,
        2 namespace: String,
        3 topic: String,
        4 event: Option<Any>,
    }
    pub struct ForwardRequest {
        1 envelope: Option<Envelope>,
    }

    pub struct TaskIo {
        1 stdin: String,
        2 stdout: String,
        3 stderr: String,
        4 terminal: bool,
    }
    pub struct TaskCreate {
        1 container_id: String,
        2 bundle: String,
        3 rootfs: Vec<Mount>,
        4 io: Option<TaskIo>,
        6 pid: u32,
    }
    pub struct TaskStart {
        1 container_id: String,
        2 pid: u32,
    }
    pub struct TaskDelete {
        1 container_id: String,
        2 pid: u32,
        3 exit_status: u32,
        4 exited_at: Option<Timestamp>,
        5 id: String,
    }
    pub struct TaskExit {
        1 container_id: String,
        2 id: String,
        3 pid: u32,
        4 exit_status: u32,
        5 exited_at: Option<Timestamp>,
    }
    /// TaskOOM, TaskPaused and TaskResumed carry only the container id.
    pub struct TaskIdOnly {
        1 container_id: String,
    }
    pub struct TaskExecAdded {
        1 container_id: String,
        2 exec_id: String,
    }
    pub struct TaskExecStarted {
        1 container_id: String,
        2 exec_id: String,
        3 pid: u32,
    }
}

/// Each direction checked against containerd's own generated code (a
/// dev-dependency): what containerd sends decodes here, what the shim
/// sends decodes there.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Message;
    use containerd_shim_protos::api as reference;
    use containerd_shim_protos::events::task as ref_events;
    use containerd_shim_protos::protobuf::well_known_types::any::Any as RefAny;
    use containerd_shim_protos::protobuf::{Message as _, MessageField};

    #[test]
    fn create_request_from_containerd() {
        let req = reference::CreateTaskRequest {
            id: "web".into(),
            bundle: "/run/b/web".into(),
            rootfs: vec![reference::Mount {
                type_: "overlay".into(),
                source: "overlay".into(),
                options: vec!["lowerdir=/l".into(), "upperdir=/u".into()],
                ..Default::default()
            }],
            terminal: true,
            stdin: "/fifo/in".into(),
            stdout: "/fifo/out".into(),
            stderr: "/fifo/err".into(),
            options: MessageField::some(RefAny {
                type_url: "containerd.runc.v1.Options".into(),
                value: containerd_shim_protos::shim::oci::Options {
                    binary_name: "/usr/bin/skiff".into(),
                    shim_cgroup: "/shims".into(),
                    root: "/run/r".into(),
                    no_pivot_root: true,
                    systemd_cgroup: true,
                    ..Default::default()
                }
                .write_to_bytes()
                .unwrap(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ours = CreateTaskRequest::decode(&req.write_to_bytes().unwrap()).unwrap();
        assert_eq!(
            (ours.id.as_str(), ours.bundle.as_str()),
            ("web", "/run/b/web")
        );
        assert_eq!(ours.rootfs[0].kind, "overlay");
        assert_eq!(ours.rootfs[0].options, ["lowerdir=/l", "upperdir=/u"]);
        assert!(ours.terminal);
        assert_eq!(
            (
                ours.stdin.as_str(),
                ours.stdout.as_str(),
                ours.stderr.as_str()
            ),
            ("/fifo/in", "/fifo/out", "/fifo/err")
        );
        let opts = Options::decode(&ours.options.unwrap().value).unwrap();
        assert_eq!(opts.binary_name, "/usr/bin/skiff");
        assert_eq!(opts.root, "/run/r");
        assert!(opts.no_pivot_root);
        assert_eq!(opts.shim_cgroup, "/shims");
        assert!(opts.systemd_cgroup);

        let exec = reference::ExecProcessRequest {
            id: "web".into(),
            exec_id: "e1".into(),
            terminal: true,
            stdout: "/o".into(),
            spec: MessageField::some(RefAny {
                value: b"{}".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ours = ExecProcessRequest::decode(&exec.write_to_bytes().unwrap()).unwrap();
        assert_eq!((ours.exec_id.as_str(), ours.stdout.as_str()), ("e1", "/o"));
        assert_eq!(ours.spec.unwrap().value, b"{}");
        let kill = reference::KillRequest {
            id: "web".into(),
            signal: 9,
            all: true,
            ..Default::default()
        };
        let ours = KillRequest::decode(&kill.write_to_bytes().unwrap()).unwrap();
        assert_eq!((ours.signal, ours.all), (9, true));
        let resize = reference::ResizePtyRequest {
            id: "web".into(),
            width: 120,
            height: 40,
            ..Default::default()
        };
        let ours = ResizePtyRequest::decode(&resize.write_to_bytes().unwrap()).unwrap();
        assert_eq!((ours.width, ours.height), (120, 40));
    }

    #[test]
    fn replies_and_events_to_containerd() {
        let at = Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        let state = StateResponse {
            id: "web".into(),
            pid: 42,
            status: status::STOPPED,
            terminal: true,
            exit_status: 137,
            exited_at: Some(at.clone()),
            exec_id: "e1".into(),
            ..Default::default()
        };
        let r = reference::StateResponse::parse_from_bytes(&state.to_bytes()).unwrap();
        assert_eq!((r.id.as_str(), r.pid, r.exit_status), ("web", 42, 137));
        assert_eq!(r.status.enum_value(), Ok(reference::Status::STOPPED));
        assert_eq!((r.exited_at.seconds, r.exited_at.nanos), (1_700_000_000, 5));
        assert_eq!(r.exec_id, "e1");
        assert!(r.terminal);

        let exit = TaskExit {
            container_id: "web".into(),
            id: "e1".into(),
            pid: 43,
            exit_status: 3,
            exited_at: Some(at),
        };
        let r = ref_events::TaskExit::parse_from_bytes(&exit.to_bytes()).unwrap();
        assert_eq!((r.container_id.as_str(), r.id.as_str()), ("web", "e1"));
        assert_eq!(
            (r.pid, r.exit_status, r.exited_at.seconds),
            (43, 3, 1_700_000_000)
        );

        let started = TaskExecStarted {
            container_id: "web".into(),
            exec_id: "e1".into(),
            pid: 44,
        };
        let r = ref_events::TaskExecStarted::parse_from_bytes(&started.to_bytes()).unwrap();
        assert_eq!((r.exec_id.as_str(), r.pid), ("e1", 44));

        let connect = ConnectResponse {
            shim_pid: 1,
            task_pid: 2,
            version: "v".into(),
        };
        let r = reference::ConnectResponse::parse_from_bytes(&connect.to_bytes()).unwrap();
        assert_eq!((r.shim_pid, r.task_pid, r.version.as_str()), (1, 2, "v"));

        let pids = PidsResponse {
            processes: vec![ProcessInfo { pid: 7 }, ProcessInfo { pid: 8 }],
        };
        let r = reference::PidsResponse::parse_from_bytes(&pids.to_bytes()).unwrap();
        assert_eq!(
            r.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
            [7, 8]
        );

        let create = TaskCreate {
            container_id: "web".into(),
            io: Some(TaskIo {
                stdout: "/o".into(),
                terminal: true,
                ..Default::default()
            }),
            pid: 9,
            ..Default::default()
        };
        let r = ref_events::TaskCreate::parse_from_bytes(&create.to_bytes()).unwrap();
        assert_eq!(
            (r.pid, r.io.stdout.as_str(), r.io.terminal),
            (9, "/o", true)
        );
    }

    /// Every message above against containerd's original (see `wire_fuzz`),
    /// and none left out.
    #[test]
    fn every_message_matches_containerd() {
        use containerd_shim_protos::bootstrap_api as boot;
        use containerd_shim_protos::protobuf::well_known_types as wkt;
        use containerd_shim_protos::shim::{event, events, oci};
        use containerd_shim_protos::types::{introspection, task};

        crate::wire_fuzz::all_match_containerd! {
            include_str!("api.rs");
            Timestamp => wkt::timestamp::Timestamp;
            Any => wkt::any::Any;
            Empty => wkt::empty::Empty;
            Mount => reference::Mount;
            ProcessInfo => task::ProcessInfo;
            Options => oci::Options;
            CreateTaskRequest => reference::CreateTaskRequest;
            CreateTaskResponse => reference::CreateTaskResponse;
            CheckpointTaskRequest => reference::CheckpointTaskRequest;
            CheckpointOptions => oci::CheckpointOptions;
            ProcessRequest => reference::StateRequest, reference::StartRequest,
                reference::DeleteRequest, reference::WaitRequest;
            TaskRequest => reference::PidsRequest, reference::PauseRequest,
                reference::ResumeRequest, reference::StatsRequest, reference::ConnectRequest,
                reference::ShutdownRequest;
            DeleteResponse => reference::DeleteResponse;
            ExecProcessRequest => reference::ExecProcessRequest;
            ResizePtyRequest => reference::ResizePtyRequest;
            StateResponse => reference::StateResponse;
            KillRequest => reference::KillRequest;
            CloseIoRequest => reference::CloseIORequest;
            PidsResponse => reference::PidsResponse;
            UpdateTaskRequest => reference::UpdateTaskRequest;
            StartResponse => reference::StartResponse;
            WaitResponse => reference::WaitResponse;
            StatsResponse => reference::StatsResponse;
            ConnectResponse => reference::ConnectResponse;
            BootstrapParams => boot::BootstrapParams;
            Extension => boot::Extension;
            BootstrapResult => boot::BootstrapResult;
            RuntimeInfo => introspection::RuntimeInfo;
            RuntimeVersion => introspection::RuntimeVersion;
            Envelope => event::Envelope;
            ForwardRequest => events::ForwardRequest;
            TaskIo => ref_events::TaskIO;
            TaskCreate => ref_events::TaskCreate;
            TaskStart => ref_events::TaskStart;
            TaskDelete => ref_events::TaskDelete;
            TaskExit => ref_events::TaskExit;
            TaskIdOnly => ref_events::TaskOOM, ref_events::TaskPaused, ref_events::TaskResumed;
            TaskExecAdded => ref_events::TaskExecAdded;
            TaskExecStarted => ref_events::TaskExecStarted;
        }
    }
}
