//! containerd-shim-skiff-v2: the containerd runtime v2 shim for skiff.
//! containerd runs it as `io.containerd.skiff.v2`; it keeps each task's
//! stdio and exit status and drives skiff for the container work.

mod api;
mod bootstrap;
mod error;
mod events;
mod flags;
mod go_buildinfo;
mod lifecycle;
mod log_binary;
mod logger;
mod metrics;
mod options;
mod proto;
mod rootfs;
mod runtime;
mod server;
mod service;
mod stdio;
mod tasks;
mod ttrpc;
#[cfg(test)]
mod wire_fuzz;

const RUNTIME_ID: &str = "io.containerd.skiff.v2";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match flags::parse(&args) {
        Ok(f) => f,
        Err(e) => fail(e),
    };
    if flags.version {
        println!("containerd-shim-skiff-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {RUNTIME_ID}");
        return;
    }
    if flags.info {
        return lifecycle::info(RUNTIME_ID).unwrap_or_else(|e| fail(e));
    }
    if flags.namespace.is_empty() {
        fail("-namespace is required");
    }
    let result = match flags.action.as_str() {
        "start" => lifecycle::start(&flags).map_err(|e| e.to_string()),
        "delete" => lifecycle::delete(&flags).map_err(|e| e.to_string()),
        "" if !flags.socket.is_empty() => server::run(&flags).map_err(|e| e.to_string()),
        "" => Err("-socket is required to serve".to_string()),
        other => Err(format!("unknown action {other:?} (start, delete)")),
    };
    if let Err(e) = result {
        fail(e);
    }
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("{RUNTIME_ID}: {e}");
    std::process::exit(1);
}
