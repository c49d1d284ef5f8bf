//! Pieces the benchmark binaries share: busybox bundles, timing and
//! percentiles, process memory, installing the binaries under test, peer versions.

pub mod bundle;
pub mod measure;

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_e2e::Workdir;

/// Copies the shim and skiff into `work`/bin (the shim runs the skiff
/// beside it), as a package would install them: the page cache holds a
/// copied file in large folios, and a fault maps a whole folio, so the
/// binaries the linker wrote (held in single pages) would show less memory
/// than a node sees. Returns the directory and the copy of skiff.
pub fn install(work: &Workdir, shim: &Path, skiff: &Path) -> (PathBuf, PathBuf) {
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for file in [shim, skiff] {
        std::fs::copy(file, bin.join(file.file_name().unwrap())).unwrap();
    }
    let skiff = bin.join("skiff");
    (bin, skiff)
}

/// The first line `TOOL --version` prints, or why there is none.
pub fn version_of(tool: &str) -> String {
    match Command::new(tool).arg("--version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("no version printed")
            .to_string(),
        Err(e) => format!("not runnable: {e}"),
    }
}

/// Moves this process into a private mount namespace of its own, with
/// nothing propagating back to the host: the benchmarks mount their state
/// tmpfs (and detach what crun refuses) there.
pub fn private_mount_namespace() {
    use nix::mount::MsFlags;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .expect("unshare(CLONE_NEWNS): the benchmark needs root");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
}
