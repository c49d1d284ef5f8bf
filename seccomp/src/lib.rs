//! OCI seccomp profiles (`linux.seccomp`) compiled to classic BPF, and
//! installed. Pure Rust, no libseccomp: every action including NOTIFY,
//! the x86-64, i386 and x32 architectures with libseccomp's bad-arch
//! semantics, all seven argument operators, and a balanced search over
//! syscall numbers instead of a linear chain.

pub mod arch;
mod bpf;
mod compile;
pub mod containers_common;
#[cfg(test)]
mod differential;
pub mod features;
mod install;
mod interp;
#[cfg(test)]
mod libseccomp;
mod tables;

pub use compile::{action_value, compile, flag, ret, Filter, SeccompError};
pub use install::{install, InstallError};
/// The kernel release whose syscall tables skiff knows.
pub use tables::KERNEL as SYSCALLS_KERNEL;
