//! The command line, spelled like runc's: managers call skiff exactly as they
//! call runc. Definitions only; the logic lives in `commands`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::logging;

/// Version text printed after the program name by `--version`, in runc's
/// layout (`skiff version X` then `spec: Y`).
pub const VERSION: &str = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: 1.2.1");

#[derive(Debug, Parser)]
#[command(
    name = "skiff",
    about = "skiff: a low-level OCI container runtime, command-line compatible with runc",
    version = VERSION,
    disable_version_flag = true
)]
pub struct Cli {
    /// Root directory for storage of container state (this should be located in tmpfs)
    #[arg(long, global = true, default_value = "/run/skiff", value_name = "DIR")]
    pub root: PathBuf,

    /// Set the log file to write skiff logs to (default is stderr)
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Set the log format
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: logging::Format,

    /// Enable debug logging
    #[arg(long, global = true)]
    pub debug: bool,

    /// Enable systemd cgroup support (not supported yet)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,

    /// Ignore cgroup permission errors ('true', 'false', or 'auto'); before
    /// the command, as with runc (`spec` has a `--rootless` flag of its own)
    #[arg(long, value_enum, default_value = "auto")]
    pub rootless: Rootless,

    /// Path to the criu binary (accepted for compatibility; checkpointing is not supported)
    #[arg(long, global = true, value_name = "PATH", hide = true)]
    pub criu: Option<PathBuf>,

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
        assert_eq!(cli.root, PathBuf::from("/run/containerd/runc/k8s.io"));
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
        assert_eq!(cli.root, PathBuf::from("/run/skiff"));
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
    fn missing_id_is_an_error() {
        assert!(Cli::try_parse_from(["skiff", "start"]).is_err());
    }
}
