//! Links the shim's hot functions together.
//!
//! Every running container keeps one shim daemon, and the daemon's resident
//! memory is mostly the binary's text: a page fault on file-backed text maps
//! the 64 KiB around it (fault-around), so code the daemon runs, scattered
//! among code it never runs, makes most of the 2.7 MB text resident.
//! `hot-functions.txt` lists the functions a daemon ran for a container's
//! lifecycle (recorded by scripts/shim-hot-functions.sh with callgrind); the
//! linker puts them first and together. The linker ignores names that no
//! longer exist, so a stale list builds fine and only costs memory. Rust
//! names carry a hash of their crate's build (its dependencies, the
//! profile, the compiler), so a new dependency of skiff renames nearly
//! every Rust function in the list: the release link writes a map
//! (`hot-functions.map` in OUT_DIR) and the test hot_functions checks the
//! list against it.
//!
//! The release profile keeps this binary's symbols (Cargo.toml says why)
//! and strips them here, unless SKIFF_SHIM_KEEP_SYMBOLS is set: the
//! recording script needs the names.

fn main() {
    let list = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hot-functions.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-env-changed=SKIFF_SHIM_KEEP_SYMBOLS");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if release {
        let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
        let map = std::path::Path::new(&out).join("hot-functions.map");
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={}", map.display());
        // The map names symbols as the list does, mangled.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-demangle");
        if std::env::var_os("SKIFF_SHIM_KEEP_SYMBOLS").is_none() {
            println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
        }
    }
}
