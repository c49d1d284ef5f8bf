//! The hot-function lists (hot-functions.txt, see hot_functions.rs here)
//! must name functions of today's release build. The linker skips names it
//! does not know without a word, and a Rust name changes with its crate's
//! build hash: one new dependency of skiff renamed nearly every Rust
//! function in the shim's list, the daemon's code went back among the cold
//! code, and the shim's RSS per container rose from 1.3 to 1.8 MiB with
//! every test green.
//!
//! Included (`#[path]`) by the packages' tests hot_functions: each builds
//! its release binary (cargo, incremental: nothing to do when it is up to
//! date) and reads the link map its build writes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The share of the listed names that may be gone before a list counts as
/// stale. LTO names the local copies it makes `name.NNN`, numbered over the
/// whole program, so a change anywhere renumbers a few of them (27 of the
/// shim's 456 with the checkpoint/restore code merged); each costs at most
/// a page or two of cold text. A renamed crate, which this test is for,
/// loses nearly all of them.
const MAY_BE_GONE: f64 = 0.10;

/// Builds `package`'s release binaries; returns its build script's
/// OUT_DIR, where the link writes hot-functions.map.
fn release_out_dir(workspace: &Path, package: &str) -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args(["build", "--release", "-q", "-p", package])
        .arg("--message-format=json")
        // The names are the same with symbols kept; without the variable the
        // release binary stays the stripped one a package installs.
        .env_remove("SKIFF_SHIM_KEEP_SYMBOLS")
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "cargo build --release -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| {
            m["reason"] == "build-script-executed"
                && m["package_id"]
                    .as_str()
                    .is_some_and(|id| id.contains(&format!("#{package}@")))
        })
        .and_then(|m| m["out_dir"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo names {package}'s build script OUT_DIR"))
}

/// Every name in an lld link map: a symbol's line ends with its name (the
/// other lines end with section and file names, which no function has).
pub fn map_names(map: &str) -> HashSet<&str> {
    map.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect()
}

/// The listed names the map does not have, in list order.
pub fn missing<'a>(list: &'a str, names: &HashSet<&str>) -> Vec<&'a str> {
    list.lines()
        .filter(|n| !n.is_empty() && !names.contains(n))
        .collect()
}

/// Panics unless every name in the hot-functions.txt of the package in
/// `package_dir` is in its release build.
pub fn assert_list_names_release_build(package_dir: &Path, package: &str) {
    let workspace = package_dir.parent().unwrap();
    let list_path = package_dir.join("hot-functions.txt");
    let list = std::fs::read_to_string(&list_path).unwrap();
    let map_path = release_out_dir(workspace, package).join("hot-functions.map");
    let map = std::fs::read_to_string(&map_path)
        .unwrap_or_else(|e| panic!("{}: {e}", map_path.display()));
    let gone = missing(&list, &map_names(&map));
    let listed = list.lines().filter(|n| !n.is_empty()).count();
    assert!(
        listed >= 100,
        "{}: {listed} names: record the list with scripts/hot-functions.sh",
        list_path.display()
    );
    eprintln!(
        "{} of the {listed} listed names are not in the release build",
        gone.len()
    );
    assert!(
        (gone.len() as f64) <= MAY_BE_GONE * listed as f64,
        "{} of the {listed} names in {} are not in the release build ({}), first {:?}: \
         rename them (scripts/hot_functions.py rename) or record the list again \
         (scripts/hot-functions.sh)",
        gone.len(),
        list_path.display(),
        map_path.display(),
        &gone[..gone.len().min(5)]
    );
}
