// Included (include!) by the build scripts of the binaries that link a
// hot-function list: shim/build.rs and runtime/build.rs.
//
// A page fault on file-backed text maps the 64 KiB around it
// (fault-around), or more where the page cache holds the binary in large
// folios, so code a process runs, scattered among code it never runs,
// makes most of the binary's text resident. `hot-functions.txt` beside the
// package's Cargo.toml lists the functions the binary runs (recorded by
// scripts/hot-functions.sh); the linker puts them first and together.
//
// The linker ignores names that no longer exist, so a stale list builds
// fine and only costs memory. Rust names carry a hash of their crate's
// build (its dependencies, the profile, whether it has a build script, the
// compiler), so a new dependency renames nearly every Rust function in the
// list: the release link writes a map (`hot-functions.map` in OUT_DIR),
// which the recording script reads the addresses from and the package's
// test hot_functions checks the list against.

/// Orders the package's binaries by its `hot-functions.txt`. With
/// `strip_unless`, release binaries are stripped here unless that variable
/// is set (for a profile that keeps symbols, see the workspace Cargo.toml).
fn link_hot_functions(strip_unless: Option<&str>) {
    let list = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("hot-functions.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    if std::env::var("PROFILE").is_ok_and(|p| p == "release") {
        let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
        let map = std::path::Path::new(&out).join("hot-functions.map");
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={}", map.display());
        // The map names symbols as the list does, mangled.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-demangle");
        if let Some(var) = strip_unless {
            println!("cargo:rerun-if-env-changed={var}");
            if std::env::var_os(var).is_none() {
                println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
            }
        }
    }
}
