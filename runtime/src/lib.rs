//! skiff: a low-level OCI container runtime, command-line compatible with
//! runc. The library holds the whole create pipeline so the binary, the
//! shim and the tests can all drive it.

pub mod activation;
pub mod bundle;
pub mod cgroups;
pub mod cli;
pub mod commands;
pub mod container;
pub mod criu;
pub mod dbus;
pub mod error;
pub mod fdpass;
pub mod features;
pub mod hooks;
pub mod idmap;
pub mod logging;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod procfs;
pub mod resctrl;
pub mod rootfs;
pub mod rootless;
pub mod security;
pub mod signals;
pub mod spawn;
pub mod state;
pub mod supervise;
pub mod syscalls;
pub mod terminal;
pub mod timestamp;
pub mod validate;
