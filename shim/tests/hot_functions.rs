//! The hot-function list (shim/hot-functions.txt, see build.rs) must name
//! functions of today's release build, nearly all of them. The linker skips names it does not
//! know without a word, and a Rust name changes with its crate's build
//! hash: one new dependency of skiff renamed nearly every Rust function in
//! the list, the daemon's code went back among the cold code, and the
//! shim's RSS per container rose from 1.3 to 1.8 MiB with every test green.
//!
//! This builds the release shim (cargo, incremental: nothing to do when it
//! is up to date) and reads the link map its build writes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "containerd-shim-skiff";

/// The share of the listed names that may be gone before the list counts
/// as stale. LTO names the local copies it makes `name.NNN`, numbered over
/// the whole program, so a change anywhere renumbers a few of them (27 of
/// 456 with the checkpoint/restore code merged); each costs at most a page
/// or two of cold text. A renamed crate, which this test is for, loses
/// nearly all of them.
const MAY_BE_GONE: f64 = 0.10;

/// Builds the release shim; returns its build script's OUT_DIR, where the
/// link writes hot-functions.map.
fn release_out_dir(workspace: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args(["build", "--release", "-q", "-p", PACKAGE])
        .arg("--message-format=json")
        // The names are the same with symbols kept; without the variable the
        // release binary stays the stripped one a package installs.
        .env_remove("SKIFF_SHIM_KEEP_SYMBOLS")
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "cargo build --release -p {PACKAGE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| {
            m["reason"] == "build-script-executed"
                && m["package_id"]
                    .as_str()
                    .is_some_and(|id| id.contains(&format!("#{PACKAGE}@")))
        })
        .and_then(|m| m["out_dir"].as_str().map(PathBuf::from))
        .expect("cargo names the shim's build script OUT_DIR")
}

/// Every name in an lld link map: a symbol's line ends with its name (the
/// other lines end with section and file names, which no function has).
fn map_names(map: &str) -> HashSet<&str> {
    map.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect()
}

/// The listed names the map does not have, in list order.
fn missing<'a>(list: &'a str, names: &HashSet<&str>) -> Vec<&'a str> {
    list.lines()
        .filter(|n| !n.is_empty() && !names.contains(n))
        .collect()
}

#[test]
fn map_names_symbols_not_sections() {
    let map = "\
             VMA              LMA     Size Align Out     In      Symbol
           9b860            9b860      1cf    16 .text
           9b860            9b860      1cf    16         /t/shim.o:(.text._ZN4shim5serve17h0123456789abcdefE)
           9b860            9b860      1cf     1                 _ZN4shim5serve17h0123456789abcdefE
           9ba30            9ba30       2c    16         /usr/lib/x86_64-linux-gnu/libc.a(fileops.o):(.text)
           9ba30            9ba30       2c     1                 _IO_file_close
";
    let names = map_names(map);
    let list =
        "_IO_file_close\n_ZN4shim5serve17h0123456789abcdefE\n_ZN4shim5serve17hfedcba9876543210E\n";
    assert_eq!(
        missing(list, &names),
        ["_ZN4shim5serve17hfedcba9876543210E"]
    );
}

#[test]
fn hot_functions_name_the_release_build() {
    let shim = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = shim.parent().unwrap();
    let list_path = shim.join("hot-functions.txt");
    let list = std::fs::read_to_string(&list_path).unwrap();
    let map_path = release_out_dir(workspace).join("hot-functions.map");
    let map = std::fs::read_to_string(&map_path)
        .unwrap_or_else(|e| panic!("{}: {e}", map_path.display()));
    let gone = missing(&list, &map_names(&map));
    let listed = list.lines().filter(|n| !n.is_empty()).count();
    eprintln!(
        "{} of the {listed} listed names are not in the release shim",
        gone.len()
    );
    assert!(
        (gone.len() as f64) <= MAY_BE_GONE * listed as f64,
        "{} of the {listed} names in {} are not in the release shim ({}), first {:?}: \
         record the list again with scripts/shim-hot-functions.sh",
        gone.len(),
        list_path.display(),
        map_path.display(),
        &gone[..gone.len().min(5)]
    );
}
