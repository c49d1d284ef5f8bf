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

fn main() {
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
    match commands::dispatch(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = e.to_string();
            logging::log(logging::Level::Error, &msg);
            if !logging::to_stderr() {
                eprintln!("{msg}");
            }
            std::process::exit(e.exit_code());
        }
    }
}
