//! The `skiff` binary: parse, dispatch, and turn an error into runc's one
//! log line and exit status 1.

use clap::Parser;

use skiff::{cli::Cli, commands, logging};

fn main() {
    let cli = Cli::parse();
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
            std::process::exit(1);
        }
    }
}
