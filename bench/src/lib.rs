//! Pieces the benchmark binaries share: busybox bundles, timing and
//! percentiles, process memory, installing the binaries under test, peer versions.

pub mod bundle;
pub mod measure;

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use skiff_e2e::Workdir;

/// Enters a mount namespace of the benchmark's own (nothing mounted in it
/// shows on the host, and it all goes when the benchmark exits) and
/// mounts a tmpfs on `dir`: state on tmpfs, as on a node (/run is ext4 on
/// this VM), so the disk is not what is measured.
pub fn private_tmpfs(dir: &Path) {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .expect("unshare(CLONE_NEWNS): the benchmark needs root");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
}

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
