//! The task's `rootfs` mounts (usually one overlay from the snapshotter),
//! mounted on `<bundle>/rootfs` at Create and unmounted at Delete.

use std::path::Path;

use containerd_shim::mount::mount_rootfs;
use containerd_shim::protos::api::Mount;

use crate::error::ShimError;

/// Mounts every entry in order on `<bundle>/rootfs`; on failure, unmounts
/// what it mounted.
pub fn mount(bundle: &Path, mounts: &[Mount]) -> Result<(), ShimError> {
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(ShimError::io(format!("mkdir {}", target.display())))?;
    for m in mounts {
        if let Err(e) = mount_rootfs(Some(&m.type_), Some(&m.source), &m.options, &target) {
            unmount(bundle);
            return Err(ShimError::Invalid {
                field: format!("rootfs mount {} ({})", m.source, m.type_),
                detail: e.to_string(),
            });
        }
    }
    Ok(())
}

/// Unmounts everything on `<bundle>/rootfs`, innermost first.
pub fn unmount(bundle: &Path) {
    let target = bundle.join("rootfs");
    let Ok(c) = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // Stacked mounts (several rootfs entries) each come off in turn;
    // EINVAL means nothing is mounted there any more.
    // SAFETY: umount2 with a NUL-terminated path.
    while unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {}
}
