//! Links the shim's hot functions together (see
//! build-support/hot_functions.rs for why and how).
//!
//! Every running container keeps one shim daemon, and the daemon's resident
//! memory is mostly the binary's text: `hot-functions.txt` lists the
//! functions a daemon ran for a container's lifecycle.
//!
//! The release profile keeps this binary's symbols (Cargo.toml says why)
//! and strips them here, unless SKIFF_SHIM_KEEP_SYMBOLS is set: callgrind,
//! in the recording script, needs the names.

include!("../build-support/hot_functions.rs");

fn main() {
    link_hot_functions(Some("SKIFF_SHIM_KEEP_SYMBOLS"));
}
