//! containerd-shim-skiff-v2: the containerd runtime v2 shim for skiff.
//! containerd runs it as `io.containerd.skiff.v2`; it keeps each task's
//! stdio and exit status and drives skiff for the container work.

mod error;
mod events;
mod legacy_start;
mod lifecycle;
mod log_binary;
mod metrics;
mod rootfs;
mod runtime;
mod serve;
mod service;
mod stdio;
mod tasks;

const RUNTIME_ID: &str = "io.containerd.skiff.v2";

fn main() {
    let args: Vec<_> = std::env::args_os().collect();
    let flags = containerd_shim::parse(&args[1..]).ok();
    if flags.as_ref().is_some_and(|f| f.version) {
        println!("containerd-shim-skiff-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {RUNTIME_ID}");
        return;
    }
    match flags {
        // No reaper in `start`: the crate's SIGCHLD handler livelocks in
        // signal-hook's unregister when the spawned daemon exits during
        // start's teardown (it does at once when it joins a pod's shim),
        // and start needs no exit statuses. Nor does it need to be a
        // subreaper: the daemon is reparented as containerd expects.
        Some(f) if f.action == "start" => legacy_start::translate_reply(|| {
            let config = containerd_shim::Config {
                no_reaper: true,
                no_sub_reaper: true,
                ..Default::default()
            };
            containerd_shim::run::<lifecycle::Shim>(RUNTIME_ID, Some(config))
        }),
        Some(f) if f.action.is_empty() && !f.info && !f.namespace.is_empty() => {
            if let Err(e) = serve::run(RUNTIME_ID, &f) {
                eprintln!("{RUNTIME_ID}: {e}");
                std::process::exit(1);
            }
        }
        // `delete`, `-info` and bad arguments.
        _ => containerd_shim::run::<lifecycle::Shim>(RUNTIME_ID, None),
    }
}
