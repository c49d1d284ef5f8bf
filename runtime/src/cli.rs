//! The command line, spelled like runc's: managers call skiff exactly as they
//! call runc. Definitions only; the logic lives in `commands`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::logging;

/// Version text printed after the program name by `--version`, in runc's
/// layout (`skiff version X` then `spec: Y`).
pub const VERSION: &str = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.3.0");

#[derive(Debug, Parser)]
#[command(
    name = "skiff",
    about = "skiff: a low-level OCI container runtime, command-line compatible with runc",
    version = VERSION,
    disable_version_flag = true
)]
pub struct Cli {
    /// Root directory for storage of container state (this should be located in tmpfs)
    /// [default: /run/skiff, or $XDG_RUNTIME_DIR/skiff when not root]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Set the log file to write skiff logs to (default is stderr)
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Set the log format
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: logging::Format,

    /// Enable debug logging
    #[arg(long, global = true)]
    pub debug: bool,

    /// Enable systemd cgroup support: the container's cgroup is a systemd
    /// unit, and cgroupsPath is "slice:prefix:name"
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,

    /// Ignore cgroup permission errors ('true', 'false', or 'auto': true when
    /// not root, or root in a user namespace); before the command, as with
    /// runc (`spec` has a `--rootless` flag of its own)
    #[arg(long, value_enum, default_value = "auto")]
    pub rootless: Rootless,

    /// Path to the criu binary used for checkpoint and restore
    #[arg(long, global = true, value_name = "PATH", default_value = "criu")]
    pub criu: PathBuf,

    /// Print the version
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,

    #[command(subcommand)]
    pub command: Command,
}

/// `--rootless` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Rootless {
    True,
    False,
    Auto,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new specification file
    Spec(SpecArgs),
    /// Create a container
    Create(CreateArgs),
    /// Execute the user-defined process in a created container
    Start(IdArg),
    /// Output the state of a container
    State(IdArg),
    /// Kill sends the specified signal (default: SIGTERM) to the container's init process
    Kill(KillArgs),
    /// Delete any resources held by the container
    Delete(DeleteArgs),
    /// Create and run a container
    Run(RunArgs),
    /// Lists containers started by skiff with the given root
    List(ListArgs),
    /// Suspend all processes inside the container
    Pause(IdArg),
    /// Resume all processes that have been previously paused
    Resume(IdArg),
    /// Display the processes running inside a container
    Ps(PsArgs),
    /// Display container events such as OOM notifications, cpu, memory, and IO usage statistics
    Events(EventsArgs),
    /// Update container resource constraints
    Update(UpdateArgs),
    /// Execute new process inside the container
    Exec(ExecArgs),
    /// Show the enabled features
    Features,
    /// Checkpoint a running container (with CRIU)
    Checkpoint(CheckpointArgs),
    /// Restore a container from a previous checkpoint (with CRIU)
    Restore(RestoreArgs),
}

/// The CRIU options `checkpoint` and `restore` share.
#[derive(Debug, Args)]
pub struct CriuArgs {
    /// Path for saving criu image files (default: ./checkpoint)
    #[arg(long, value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Path for saving work files and logs (default: the image path)
    #[arg(long, value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// Allow open tcp connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long)]
    pub shell_job: bool,
    /// Handle file locks, for safety
    #[arg(long)]
    pub file_locks: bool,
    /// Cgroups mode: soft (default), full, strict or ignore
    #[arg(long, value_name = "MODE")]
    pub manage_cgroups_mode: Option<String>,
    /// Create a namespace, but don't restore its properties (network)
    #[arg(long, value_name = "NS")]
    pub empty_ns: Vec<String>,
    /// Enable auto deduplication of memory images
    #[arg(long)]
    pub auto_dedup: bool,
    /// Use userfaultfd to lazily restore memory pages
    #[arg(long)]
    pub lazy_pages: bool,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Path for previous criu image files in pre-dump (relative to the image path)
    #[arg(long, value_name = "DIR")]
    pub parent_path: Option<PathBuf>,
    /// Leave the process running after checkpointing
    #[arg(long)]
    pub leave_running: bool,
    /// Dump the container's memory information only, leave the container running after this
    #[arg(long)]
    pub pre_dump: bool,
    /// Criu writes \0 to this FD once lazy-pages is ready
    #[arg(long, value_name = "FD")]
    pub status_fd: Option<i32>,
    /// The container id
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Path to the root of the bundle directory, defaults to the current directory
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Path of the previous (pre-)dump the images continue from, relative to the image path: their parent link is made anew (the runc shim's flag for containerd's parent checkpoint)
    #[arg(long, value_name = "DIR")]
    pub parent_path: Option<PathBuf>,
    /// Specify the file to write the process id to
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Disable the use of the subreaper used to reap reparented processes
    #[arg(long)]
    pub no_subreaper: bool,
    /// Do not use pivot root to jail process inside rootfs (accepted: CRIU rebuilds the mount namespace itself)
    #[arg(long)]
    pub no_pivot: bool,
    /// The container id
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Path to an AF_UNIX socket which will receive a pidfd referencing the exec'd process
    #[arg(long, value_name = "PATH")]
    pub pidfd_socket: Option<PathBuf>,
    /// Current working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set environment variables (KEY=VALUE)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// UID (format: <uid>[:<gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Path to the process.json
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Path of the previous (pre-)dump the images continue from, relative to the image path: their parent link is made anew (the runc shim's flag for containerd's parent checkpoint)
    #[arg(long, value_name = "DIR")]
    pub parent_path: Option<PathBuf>,
    /// Specify the file to write the process id to
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Set the SELinux label for the process
    #[arg(long)]
    pub process_label: Option<String>,
    /// Set the AppArmor profile for the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set the no new privileges value for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Add a capability to the bounding set for the process
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Run the process in an (existing) sub-cgroup(s). Format is [<controller>:]<cgroup>
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Allow exec in a paused container
    #[arg(long)]
    pub ignore_paused: bool,
    /// The container id
    pub id: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Select one of: table or json
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: ListFormat,
    /// The container id
    pub id: String,
    /// Options passed to ps(1) for the table format (default: -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Set the stats collection interval
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// Display the container's stats then exit
    #[arg(long)]
    pub stats: bool,
    /// The container id
    pub id: String,
}

/// Go-style durations as runc takes them: `5s`, `500ms`, `1m30s`, `2h`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if total <= 0.0 {
        return Err("duration must be greater than 0".into());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Path to a file with the linux.resources JSON to apply, or '-' for stdin
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Block IO weight, 10 to 1000
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period (microseconds)
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota (microseconds per period; -1 for none)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long, alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    /// CPU realtime period (microseconds)
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (microseconds per period)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use (cpuset, e.g. 0-1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use (cpuset, e.g. 0)
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// SCHED_IDLE for the cgroup: 0 or 1
    #[arg(long)]
    pub cpu_idle: Option<i64>,
    /// Memory limit in bytes (suffixes k, m, g, t; -1 for none)
    #[arg(long, allow_hyphen_values = true, value_parser = parse_bytes)]
    pub memory: Option<i64>,
    /// Memory reservation (soft limit) in bytes
    #[arg(long, allow_hyphen_values = true, value_parser = parse_bytes)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit in bytes; -1 for unlimited swap
    #[arg(long, allow_hyphen_values = true, value_parser = parse_bytes)]
    pub memory_swap: Option<i64>,
    /// Maximum number of pids (0 is a limit: no new process; -1 for none)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// The container id
    pub id: String,
}

/// Byte sizes as runc (docker's units.RAMInBytes) takes them: a number
/// with an optional binary suffix, `512m`, `1g`, `1.5GiB`; `-1` passes.
fn parse_bytes(text: &str) -> Result<i64, String> {
    let bad =
        || format!("invalid size {text:?}: expected a number with an optional suffix (k, m, g, t)");
    let t = text.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let value: f64 = t[..split].parse().map_err(|_| bad())?;
    let unit = t[split..].trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Path to the root of the bundle directory
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Generate a configuration for a rootless container
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Path to the root of the bundle directory, defaults to the current directory
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Path to an AF_UNIX socket which will receive a pidfd referencing the init process
    #[arg(long, value_name = "PATH")]
    pub pidfd_socket: Option<PathBuf>,
    /// Specify the file to write the process id to
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot root to jail process inside rootfs
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// The container id
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Do not delete the container after it exits
    #[arg(long)]
    pub keep: bool,
    /// Disable the use of the subreaper used to reap reparented processes
    #[arg(long)]
    pub no_subreaper: bool,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// The container id
    pub id: String,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Send the specified signal to all processes inside the container
    #[arg(short, long)]
    pub all: bool,
    /// The container id
    pub id: String,
    /// The signal: a name with or without SIG, or a number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Forcibly delete the container if it is still running (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// The container id
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Select one of: table or json
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Display only container IDs
    #[arg(short, long)]
    pub quiet: bool,
}

/// `list --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("5s").unwrap().as_millis(), 5000);
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert!(parse_duration("5").is_err() && parse_duration("0s").is_err());
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert!(parse_bytes("12x").is_err() && parse_bytes("").is_err());
    }

    #[test]
    fn update_and_ps_lines() {
        let Command::Update(u) = parse(&[
            "update",
            "--memory",
            "100m",
            "--cpu-quota",
            "-1",
            "--pids-limit",
            "5",
            "c",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(
            (u.memory, u.cpu_quota, u.pids_limit),
            (Some(100 << 20), Some(-1), Some(5))
        );
        let Command::Ps(p) = parse(&["ps", "--format", "json", "c", "-o", "pid,comm"]).command
        else {
            panic!()
        };
        assert_eq!(p.ps_args, vec!["-o", "pid,comm"]);
        let Command::Events(e) = parse(&["events", "--stats", "--interval", "1s", "c"]).command
        else {
            panic!()
        };
        assert!(e.stats && e.interval.as_secs() == 1);
    }

    #[test]
    fn containerd_create_line() {
        let cli = parse(&[
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/x/log.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--console-socket",
            "/tmp/s",
            "abc",
        ]);
        assert_eq!(cli.root, Some(PathBuf::from("/run/containerd/runc/k8s.io")));
        assert_eq!(cli.log_format, logging::Format::Json);
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.bundle, Some(PathBuf::from("/b")));
        assert_eq!(c.pid_file, Some(PathBuf::from("/b/init.pid")));
        assert_eq!(c.id, "abc");
    }

    #[test]
    fn global_flags_after_the_command_and_equals_form() {
        let cli = parse(&["kill", "--log-format=json", "x", "KILL"]);
        assert_eq!(cli.log_format, logging::Format::Json);
        let Command::Kill(k) = cli.command else {
            panic!("not kill")
        };
        assert_eq!(
            (k.id.as_str(), k.signal.as_str(), k.all),
            ("x", "KILL", false)
        );
    }

    #[test]
    fn defaults_match_runc() {
        let cli = parse(&["kill", "x"]);
        assert_eq!(cli.root, None);
        let Command::Kill(k) = cli.command else {
            panic!("not kill")
        };
        assert_eq!(k.signal, "SIGTERM");
        let cli = parse(&["list"]);
        let Command::List(l) = cli.command else {
            panic!("not list")
        };
        assert_eq!(l.format, ListFormat::Table);
        assert!(matches!(
            parse(&["--rootless", "true", "list"]).rootless,
            Rootless::True
        ));
    }

    #[test]
    fn spec_rootless_is_its_own_flag() {
        let cli = parse(&["--rootless", "false", "spec", "--rootless", "-b", "/b"]);
        assert_eq!(cli.rootless, Rootless::False);
        let Command::Spec(s) = cli.command else {
            panic!("not spec")
        };
        assert!(s.rootless);
        let Command::Spec(s) = parse(&["spec"]).command else {
            panic!("not spec")
        };
        assert!(!s.rootless && s.bundle.is_none());
    }

    #[test]
    fn run_flags() {
        let cli = parse(&[
            "run",
            "-d",
            "-b",
            "/b",
            "--preserve-fds",
            "2",
            "--keep",
            "x",
        ]);
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert!(r.detach && r.keep && !r.no_subreaper);
        assert_eq!(r.create.preserve_fds, 2);
    }

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert!(VERSION.ends_with(&format!("spec: {}", crate::state::OCI_VERSION)));
    }

    #[test]
    fn checkpoint_and_restore_lines() {
        let cli = parse(&[
            "--criu",
            "/opt/criu",
            "checkpoint",
            "--image-path",
            "/i",
            "--leave-running",
            "--tcp-established",
            "--manage-cgroups-mode",
            "ignore",
            "--empty-ns",
            "network",
            "c",
        ]);
        assert_eq!(cli.criu, PathBuf::from("/opt/criu"));
        let Command::Checkpoint(c) = cli.command else {
            panic!("not checkpoint")
        };
        assert!(c.leave_running && c.criu.tcp_established && !c.pre_dump);
        assert_eq!(c.criu.manage_cgroups_mode.as_deref(), Some("ignore"));
        assert_eq!(c.criu.empty_ns, vec!["network"]);
        let Command::Restore(r) =
            parse(&["restore", "-d", "-b", "/b", "--image-path", "/i", "c2"]).command
        else {
            panic!("not restore")
        };
        assert!(r.detach && r.bundle.is_some() && r.id == "c2" && r.parent_path.is_none());
        let Command::Restore(r) = parse(&["restore", "--parent-path", "../pre", "c3"]).command
        else {
            panic!("not restore")
        };
        assert_eq!(r.parent_path, Some(PathBuf::from("../pre")));
        assert_eq!(parse(&["list"]).criu, PathBuf::from("criu"));
    }

    #[test]
    fn missing_id_is_an_error() {
        assert!(Cli::try_parse_from(["skiff", "start"]).is_err());
    }
}
