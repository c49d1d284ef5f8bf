//! Links the runtime's hot functions together (see
//! build-support/hot_functions.rs for why and how).
//!
//! The peak memory of `skiff run` is mostly the binary's text: the parent,
//! the container's init and an `exec`'s child are all this binary, and the
//! code they run is a small part of it. `hot-functions.txt` lists the
//! functions `run`, create/start/delete and `exec` ran. The release profile
//! strips this binary as usual: the recording script reads the addresses
//! from the link map, not from symbols.

include!("../build-support/hot_functions.rs");

fn main() {
    link_hot_functions(None);
}
