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
        6 binary_name: String,
        7 root: String,
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

    /// containerd.types.introspection.RuntimeInfo, the `-info` reply.
    pub struct RuntimeInfo {
        1 name: String,
        2 version: Option<RuntimeVersion>,
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
