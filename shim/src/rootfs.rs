//! The task's `rootfs` mounts (usually one overlay from the snapshotter,
//! or a bind mount from the native snapshotter), mounted on
//! `<bundle>/rootfs` at Create and unmounted at Delete.

use std::ffi::CString;
use std::path::Path;

use crate::api::Mount;
use crate::error::ShimError;

/// Mount options that are flags; everything else is filesystem data.
/// The bool says whether the option sets (true) or clears the flag.
const FLAGS: &[(&str, bool, libc::c_ulong)] = &[
    ("ro", true, libc::MS_RDONLY),
    ("rw", false, libc::MS_RDONLY),
    ("bind", true, libc::MS_BIND),
    ("rbind", true, libc::MS_BIND | libc::MS_REC),
    ("nosuid", true, libc::MS_NOSUID),
    ("suid", false, libc::MS_NOSUID),
    ("nodev", true, libc::MS_NODEV),
    ("dev", false, libc::MS_NODEV),
    ("noexec", true, libc::MS_NOEXEC),
    ("exec", false, libc::MS_NOEXEC),
    ("noatime", true, libc::MS_NOATIME),
    ("atime", false, libc::MS_NOATIME),
    ("nodiratime", true, libc::MS_NODIRATIME),
    ("relatime", true, libc::MS_RELATIME),
    ("strictatime", true, libc::MS_STRICTATIME),
    ("sync", true, libc::MS_SYNCHRONOUS),
    ("async", false, libc::MS_SYNCHRONOUS),
    ("dirsync", true, libc::MS_DIRSYNC),
    ("mand", true, libc::MS_MANDLOCK),
    ("nomand", false, libc::MS_MANDLOCK),
    ("remount", true, libc::MS_REMOUNT),
    ("defaults", false, 0),
];

/// mount(2) flags and the data string for a mount's options.
fn parse(options: &[String]) -> (libc::c_ulong, String) {
    let mut flags = 0;
    let mut data = Vec::new();
    for o in options {
        match FLAGS.iter().find(|(name, ..)| name == o) {
            Some((_, true, f)) => flags |= f,
            Some((_, false, f)) => flags &= !f,
            None => data.push(o.as_str()),
        }
    }
    (flags, data.join(","))
}

fn cstring(what: &str, s: &str) -> Result<CString, ShimError> {
    CString::new(s).map_err(|_| ShimError::Invalid {
        field: format!("rootfs mount {what}"),
        detail: "contains a NUL byte".into(),
    })
}

fn mount_one(m: &Mount, target: &CString) -> Result<(), ShimError> {
    let (flags, data) = parse(&m.options);
    let fail = |e: std::io::Error| ShimError::Invalid {
        field: format!("rootfs mount {} ({})", m.source, m.kind),
        detail: e.to_string(),
    };
    // The kernel takes at most a page of mount data (deep overlay stacks
    // can exceed it): refuse clearly rather than let it be cut.
    if data.len() >= 4096 {
        return Err(fail(std::io::Error::other(format!(
            "{} bytes of mount options, over the kernel's one page",
            data.len()
        ))));
    }
    let kind = if m.kind == "bind" { "none" } else { &m.kind };
    let (source, kind, data) = (
        cstring("source", &m.source)?,
        cstring("type", kind)?,
        cstring("options", &data)?,
    );
    let mount = |flags: libc::c_ulong| {
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if rc < 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        Ok(())
    };
    mount(flags)?;
    // A bind mount ignores MS_RDONLY until remounted.
    if flags & libc::MS_BIND != 0 && flags & libc::MS_RDONLY != 0 {
        mount(flags | libc::MS_REMOUNT)?;
    }
    Ok(())
}

/// Mounts every entry in order on `<bundle>/rootfs`; on failure, unmounts
/// what it mounted.
pub fn mount(bundle: &Path, mounts: &[Mount]) -> Result<(), ShimError> {
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(ShimError::io(format!("mkdir {}", target.display())))?;
    let c = cstring("target", &target.to_string_lossy())?;
    for m in mounts {
        if let Err(e) = mount_one(m, &c) {
            unmount(bundle);
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts everything on `<bundle>/rootfs`, innermost first.
pub fn unmount(bundle: &Path) {
    let target = bundle.join("rootfs");
    let Ok(c) = CString::new(target.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // Stacked mounts (several rootfs entries) each come off in turn;
    // EINVAL means nothing is mounted there any more.
    // SAFETY: umount2 with a NUL-terminated path.
    while unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) = parse(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l1:/l2",
        ]));
        assert_eq!(flags, 0);
        assert_eq!(data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
        let (flags, data) = parse(&opts(&["rbind", "ro", "nosuid"]));
        assert_eq!(
            flags,
            libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY | libc::MS_NOSUID
        );
        assert_eq!(data, "");
        let (flags, _) = parse(&opts(&["ro", "rw"]));
        assert_eq!(flags, 0);
    }

    #[test]
    fn a_bind_snapshot_mounts_and_unmounts() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var_os("SKIFF_REQUIRE_ALL").is_none(),
                "a_bind_snapshot_mounts_and_unmounts needs root"
            );
            eprintln!("SKIPPED a_bind_snapshot_mounts_and_unmounts: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("skiff-shim-rootfs-{}", std::process::id()));
        let snapshot = dir.join("snap");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::write(snapshot.join("marker"), "x").unwrap();
        let m = Mount {
            kind: "bind".into(),
            source: snapshot.to_string_lossy().into_owned(),
            options: opts(&["rbind", "ro"]),
            ..Default::default()
        };
        mount(&dir, &[m]).unwrap();
        assert!(dir.join("rootfs/marker").exists());
        let err = std::fs::write(dir.join("rootfs/new"), "y").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        unmount(&dir);
        assert!(!dir.join("rootfs/marker").exists());
        let bad = Mount {
            kind: "nosuchfs".into(),
            source: "none".into(),
            ..Default::default()
        };
        let err = mount(&dir, &[bad]).unwrap_err().to_string();
        assert!(err.contains("rootfs mount none (nosuchfs)"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
