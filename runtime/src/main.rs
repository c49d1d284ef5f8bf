//! The `skiff` binary: parse, dispatch, and turn an error into runc's one
//! log line and exit status.

use clap::Parser;

use skiff::{cli::Cli, commands, logging};

/// With `--preserve-fds N`, fds 3..3+N belong to the container. A number in
/// that range that is not open would be reused by the first file skiff
/// opens and handed to the container; park /dev/null there instead.
fn reserve_preserved_fds(cli: &Cli) {
    let n = match &cli.command {
        skiff::cli::Command::Create(c) => c.preserve_fds,
        skiff::cli::Command::Run(r) => r.create.preserve_fds,
        skiff::cli::Command::Exec(e) => e.preserve_fds,
        _ => 0,
    };
    let n = n + skiff::activation::listen_fds();
    for fd in 3..3 + n as libc::c_int {
        // SAFETY: F_GETFD only queries; open/dup2 only fill an unused number.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 && null != fd {
                    libc::dup2(null, fd);
                    libc::close(null);
                }
            }
        }
    }
}

/// The commands that fork processes into a container.
fn enters_containers(cli: &Cli) -> bool {
    use skiff::cli::Command;
    matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    )
}

fn main() {
    // Moving onto the sealed copy of the binary comes first, before any
    // parsing: everything the first process does is wasted. Any argument
    // spelling one of those commands counts (an id named "run" only costs
    // a re-exec); a failure is reported once the log is set up.
    let sealed = std::env::args_os()
        .skip(1)
        .any(|a| a == "create" || a == "run" || a == "exec")
        .then(skiff::security::sealed_exe::ensure);
    let cli = Cli::parse();
    reserve_preserved_fds(&cli);
    if let Err(e) = logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!(
            "skiff: --log {}: {e}",
            cli.log
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        std::process::exit(1);
    }
    if enters_containers(&cli) {
        // Before anything is forked: every child inherits the exe.
        if let Err(e) = sealed.unwrap_or_else(skiff::security::sealed_exe::ensure) {
            // runc's status for any failed exec.
            let code = if matches!(cli.command, skiff::cli::Command::Exec(_)) {
                255
            } else {
                1
            };
            fail(&e.to_string(), code);
        }
    }
    match commands::dispatch(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => fail(&e.to_string(), e.exit_code()),
    }
}

/// Logs the error as runc does (and on stderr too when there is a log
/// file) and exits with `code`.
fn fail(msg: &str, code: i32) -> ! {
    logging::log(logging::Level::Error, msg);
    if !logging::to_stderr() {
        eprintln!("{msg}");
    }
    std::process::exit(code);
}
