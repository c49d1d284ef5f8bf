//! One module per subcommand; each parses nothing and decides little: it
//! calls the library and prints what runc would print.

mod checkpoint;
mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod resume;
mod run;
pub mod spec;
mod start;
mod state;
mod update;

use crate::cli::{Cli, Command};
use crate::error::Error;
use crate::state::Root;

/// Runs the parsed command; returns the process exit code.
pub fn dispatch(cli: &Cli) -> Result<i32, Error> {
    let root = state_root(cli)?;
    let rootless = crate::rootless::enabled(cli.rootless);
    match &cli.command {
        Command::Spec(args) => spec::run(args),
        Command::Create(args) => create::run(&root, args, rootless, cli.systemd_cgroup),
        Command::Start(args) => start::run(&root, &args.id),
        Command::State(args) => state::run(&root, &args.id),
        Command::Kill(args) => kill::run(&root, args),
        Command::Delete(args) => delete::run(&root, args),
        Command::Run(args) => run::run(&root, args, rootless, cli.systemd_cgroup),
        Command::List(args) => list::run(&root, args),
        Command::Pause(args) => pause::run(&root, &args.id),
        Command::Resume(args) => resume::run(&root, &args.id),
        Command::Ps(args) => ps::run(&root, args),
        Command::Events(args) => events::run(&root, args),
        Command::Update(args) => update::run(&root, args),
        Command::Exec(args) => exec::run(&root, args).map_err(|e| Error::Exec(Box::new(e))),
        Command::Features => features::run(),
        Command::Checkpoint(args) => checkpoint::checkpoint(&root, &cli.criu, args),
        Command::Restore(args) => checkpoint::restore(&root, &cli.criu, args, cli.systemd_cgroup),
    }
}

/// `--root`, or runc's default for this user (made private and sticky
/// when it is under `$XDG_RUNTIME_DIR`).
fn state_root(cli: &Cli) -> Result<Root, Error> {
    if let Some(path) = &cli.root {
        return Ok(Root::new(path.clone()));
    }
    let (path, xdg) = crate::rootless::default_root();
    if xdg {
        crate::rootless::prepare_xdg_root(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Root::new(path))
}
