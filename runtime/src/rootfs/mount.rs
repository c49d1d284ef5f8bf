//! Performs `mounts[]` entries with the fd-based mount API: filesystems are
//! built with fsopen/fsconfig/fsmount, binds are cloned with open_tree, both
//! get their attributes with mount_setattr, and land with move_mount on a
//! target fd resolved inside the root. No mount ever goes through a path
//! string inside the container.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::SFlag;
use oci_spec::runtime::Mount;

use super::options::MountOptions;
use super::sources::{self, Prepared};
use super::{copyup, resolve};
use crate::cgroups::Record;
use crate::syscalls::{self, MountAttr};

/// Why a mount entry failed.
#[derive(Debug, thiserror::Error)]
#[error("mounts[{index}] ({kind} on {destination}): {step}: {source}{detail}")]
pub struct MountError {
    pub index: usize,
    pub kind: String,
    pub destination: PathBuf,
    pub step: String,
    pub source: Errno,
    /// Extra words from the kernel's fs_context log, when it had any.
    pub detail: String,
}

/// What mounting needs to know beyond the entry itself.
pub struct MountContext<'a> {
    /// Bundle directory: relative bind sources are relative to it.
    pub bundle: &'a Path,
    /// The container's cgroup, for `cgroup` mounts.
    pub cgroup: &'a Record,
    /// True when the container has its own cgroup namespace.
    pub cgroupns: bool,
    /// True when the container has its own user namespace.
    pub userns: bool,
    /// Bind sources the runtime opened before fork.
    pub prepared: &'a Prepared,
    /// `linux.mountLabel`, when SELinux is enabled (it means nothing
    /// otherwise, and runc ignores it then too).
    pub selinux_label: Option<&'a str>,
}

/// The `context=` option that gives a new filesystem the SELinux mount
/// label; only for the filesystems that take one.
pub fn label_option(fs_type: &str, label: Option<&str>) -> Option<(String, Option<String>)> {
    let label = label.filter(|l| !l.is_empty())?;
    matches!(fs_type, "tmpfs" | "devpts" | "mqueue")
        .then(|| ("context".to_string(), Some(format!("\"{label}\""))))
}

/// One failing step, before the entry's identity is attached.
struct StepError {
    step: String,
    source: Errno,
    detail: String,
}

type Step<T> = Result<T, StepError>;

fn step(step: impl Into<String>) -> impl FnOnce(Errno) -> StepError {
    let step = step.into();
    move |source| StepError {
        step,
        source,
        detail: String::new(),
    }
}

/// Filesystems the runtime and the container's tools expect at exactly
/// the place the config names: they are never mounted through a symlink.
const PINNED_TYPES: [&str; 6] = ["proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"];

/// A mount's destination inside the root, and how it is resolved.
struct Dest {
    path: PathBuf,
    /// Set when no component of the path may be a symlink (even one that
    /// stays in the root): why, for the error.
    real: Option<String>,
}

impl Dest {
    /// The destination of entry `m` of kind `kind`; `dev_is_ours` when the
    /// runtime fills /dev.
    fn of(m: &Mount, kind: &str, dev_is_ours: bool) -> Dest {
        let path = m.destination().clone();
        let clean = resolve::clean(&path);
        let real = if PINNED_TYPES.contains(&kind) {
            Some(format!("{kind} must be mounted on a real directory"))
        } else if clean == Path::new("proc") || clean == Path::new("sys") {
            Some("/proc and /sys must be real directories".to_string())
        } else if dev_is_ours && clean.starts_with("dev") {
            Some("skiff fills /dev: no part of it may be a symlink".to_string())
        } else {
            None
        };
        Dest { path, real }
    }

    fn join(&self, name: &Path) -> Dest {
        Dest {
            path: self.path.join(name),
            real: self.real.clone(),
        }
    }

    fn not_real(&self) -> impl FnOnce(resolve::NotReal) -> StepError + '_ {
        move |e| StepError {
            step: e.describe(),
            source: e.source,
            detail: self
                .real
                .as_ref()
                .map(|why| format!(" ({why})"))
                .unwrap_or_default(),
        }
    }

    /// The directory to mount on, made if missing.
    fn dir(&self, root: BorrowedFd<'_>) -> Step<OwnedFd> {
        match self.real {
            Some(_) => resolve::mkdir_all_real(root, &self.path).map_err(self.not_real()),
            None => resolve::mkdir_all(root, &self.path).map_err(step("target")),
        }
    }

    /// The file to bind a file on, made if missing.
    fn file(&self, root: BorrowedFd<'_>) -> Step<OwnedFd> {
        match self.real {
            Some(_) => resolve::ensure_file_real(root, &self.path).map_err(self.not_real()),
            None => resolve::ensure_file(root, &self.path).map_err(step("target")),
        }
    }

    /// With `dest-nofollow`, the destination itself when it is a symlink
    /// (resolved inside the root up to its last component), to mount on.
    /// A destination that must be real never gets here as a symlink.
    fn symlink(&self, root: BorrowedFd<'_>, options: &MountOptions) -> Step<Option<OwnedFd>> {
        if !options.dest_nofollow || self.real.is_some() {
            return Ok(None);
        }
        let fd = match resolve::open(root, &self.path, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(step("target")(e)),
        };
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(step("stat target"))?;
        let is_link = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK;
        Ok(is_link.then_some(fd))
    }

    /// What is at the destination now; ENOENT when nothing is.
    fn open(&self, root: BorrowedFd<'_>, flags: OFlag) -> Step<OwnedFd> {
        match self.real {
            Some(_) => resolve::open_real(root, &self.path, flags).map_err(self.not_real()),
            None => resolve::open(root, &self.path, flags).map_err(step("target")),
        }
    }
}

/// Mounts entry `index` inside `root`. `dev_is_ours` is set when the
/// runtime fills /dev (it then relies on every mount there).
pub fn mount_entry(
    root: BorrowedFd<'_>,
    index: usize,
    m: &Mount,
    ctx: &MountContext<'_>,
    dev_is_ours: bool,
) -> Result<(), MountError> {
    let options = MountOptions::parse(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("");
    let kind = if options.bind.is_some() || typ == "bind" {
        "bind".to_string()
    } else {
        typ.to_string()
    };
    let dest = Dest::of(m, typ, dev_is_ours);
    let result = if (options.src_nofollow || options.dest_nofollow) && kind != "bind" {
        Err(StepError {
            step: "options".into(),
            source: Errno::EINVAL,
            detail: " (src-nofollow and dest-nofollow need a bind mount)".into(),
        })
    } else if options.remount {
        remount(root, &dest, &options)
    } else if kind == "bind" {
        match ctx.prepared.get(index) {
            Some(tree) => bind(root, tree, &dest, &options),
            None => {
                let source = ctx
                    .bundle
                    .join(m.source().as_deref().unwrap_or(Path::new("")));
                clone_then_bind(root, &source, &dest, &options)
            }
        }
    } else if typ.is_empty() {
        Err(StepError {
            step: "type".into(),
            source: Errno::EINVAL,
            detail: " (a mount that is not a bind needs a type)".into(),
        })
    } else if typ == "cgroup" || typ == "cgroup2" {
        cgroup(root, &dest, &options, ctx)
    } else {
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned());
        let mut options = options.clone();
        options.data.extend(label_option(typ, ctx.selinux_label));
        let res = filesystem(root, typ, source.as_deref(), &dest, &options);
        match res {
            // In a user namespace without its own network (or ipc)
            // namespace the kernel refuses a new sysfs (mqueue); runc binds
            // the host's instead, and so do we.
            Err(e)
                if e.source == Errno::EPERM
                    && ctx.userns
                    && (typ == "sysfs" || typ == "mqueue") =>
            {
                let host = if typ == "sysfs" {
                    "/sys"
                } else {
                    "/dev/mqueue"
                };
                clone_then_bind(root, Path::new(host), &dest, &options.as_rbind())
            }
            other => other,
        }
    };
    result.map_err(|e| MountError {
        index,
        kind,
        destination: m.destination().clone(),
        step: e.step,
        source: e.source,
        detail: e.detail,
    })
}

/// A bind mount of a host path, cloned now.
fn clone_then_bind(
    root: BorrowedFd<'_>,
    source: &Path,
    dest: &Dest,
    options: &MountOptions,
) -> Step<()> {
    let tree = sources::clone_source(source, options)
        .map_err(step(format!("source {}", source.display())))?;
    bind(root, tree.as_fd(), dest, options)
}

/// Attaches a cloned (detached) tree at `dest`, with the entry's options.
fn bind(
    root: BorrowedFd<'_>,
    tree: BorrowedFd<'_>,
    dest: &Dest,
    options: &MountOptions,
) -> Step<()> {
    let is_dir = nix::sys::stat::fstat(tree)
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .map_err(step("stat source"))?;
    set_attributes(tree, options)?;
    let target = match dest.symlink(root, options)? {
        Some(link) => link,
        None if is_dir => dest.dir(root)?,
        None => dest.file(root)?,
    };
    syscalls::move_mount_to_fd(tree, target.as_fd()).map_err(step("move_mount"))?;
    set_propagation(tree, options)
}

/// A new filesystem instance.
fn filesystem(
    root: BorrowedFd<'_>,
    typ: &str,
    source: Option<&str>,
    dest: &Dest,
    options: &MountOptions,
) -> Step<()> {
    let mnt = new_fs(typ, source, options)?;
    if options.tmpcopyup {
        copy_up(root, &mnt, dest)?;
    }
    attach(root, mnt, dest, options)
}

/// Fills a new (still detached) filesystem with what the image has at
/// `dest`, if anything.
fn copy_up(root: BorrowedFd<'_>, mnt: &OwnedFd, dest: &Dest) -> Step<()> {
    let from = match dest.open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if e.source == Errno::ENOENT => return Ok(()),
        Err(e) => {
            return Err(StepError {
                step: format!("tmpcopyup: open the image's directory: {}", e.step),
                ..e
            })
        }
    };
    copyup::copy_dir(from.as_fd(), mnt.as_fd()).map_err(step("tmpcopyup"))
}

/// Builds a detached mount of a new `typ` filesystem.
fn new_fs(typ: &str, source: Option<&str>, options: &MountOptions) -> Step<OwnedFd> {
    let c = |s: &str| CString::new(s).map_err(|_| Errno::EINVAL);
    let fs =
        syscalls::fsopen(&c(typ).map_err(step("type"))?).map_err(step(format!("fsopen {typ}")))?;
    let config = |key: &str, value: Option<&str>| -> nix::Result<()> {
        match value {
            Some(v) => syscalls::fsconfig_set_string(fs.as_fd(), &c(key)?, &c(v)?),
            None => syscalls::fsconfig_set_flag(fs.as_fd(), &c(key)?),
        }
    };
    let with_log = |what: String| {
        let fs = &fs;
        move |source| StepError {
            step: what,
            source,
            detail: fs_log(fs.as_fd()),
        }
    };
    if let Some(src) = source.filter(|s| !s.is_empty()) {
        config("source", Some(src)).map_err(with_log("source".into()))?;
    }
    for flag in &options.sb_flags {
        config(flag, None).map_err(with_log(format!("option {flag}")))?;
    }
    for (key, value) in &options.data {
        config(key, value.as_deref()).map_err(with_log(format!("option {key}")))?;
    }
    syscalls::fsconfig_create(fs.as_fd()).map_err(with_log("create".into()))?;
    syscalls::fsmount(fs.as_fd(), options.fsmount_flags()).map_err(with_log("fsmount".into()))
}

/// Reads the messages the kernel left in an fs context, for the error.
fn fs_log(fs: BorrowedFd<'_>) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = nix::unistd::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        // Lines are "e msg", "w msg" or "i msg".
        let msg = line.get(2..).unwrap_or("").trim();
        if !msg.is_empty() {
            out.push_str(" (");
            out.push_str(msg);
            out.push(')');
        }
    }
    out
}

/// Moves a detached mount onto `dest` (a directory created in the root).
fn attach(root: BorrowedFd<'_>, mnt: OwnedFd, dest: &Dest, options: &MountOptions) -> Step<()> {
    let target = dest.dir(root)?;
    syscalls::move_mount_to_fd(mnt.as_fd(), target.as_fd()).map_err(step("move_mount"))?;
    if !options.recursive_attr.is_empty() {
        syscalls::mount_setattr_fd(mnt.as_fd(), true, options.recursive_attr)
            .map_err(step("recursive attributes"))?;
    }
    set_propagation(mnt.as_fd(), options)
}

fn set_attributes(mnt: BorrowedFd<'_>, options: &MountOptions) -> Step<()> {
    set_attr(mnt, false, options.attr).map_err(step("attributes"))?;
    set_attr(mnt, true, options.recursive_attr).map_err(step("recursive attributes"))
}

/// mount_setattr, keeping what the kernel locks. A mount namespace copied
/// into a user namespace (every rootless container's, and the mounts its
/// init clones there) locks the ro, nosuid, nodev and noexec flags each
/// mount had, and its atime mode: clearing one of those, or changing the
/// atime mode, fails with EPERM. Adding flags is fine, so an entry is
/// applied as asked and, refused, again without those changes: the mount
/// keeps its source's locked flags, as a bind does under runc.
fn set_attr(mnt: BorrowedFd<'_>, recursive: bool, attr: MountAttr) -> nix::Result<()> {
    if attr.is_empty() {
        return Ok(());
    }
    match syscalls::mount_setattr_fd(mnt, recursive, attr) {
        Err(Errno::EPERM) => {
            let flags = nix::sys::statvfs::fstatvfs(mnt).map_err(|_| Errno::EPERM)?;
            let kept = keeping_locked(attr, flags.flags());
            if kept == attr {
                return Err(Errno::EPERM);
            }
            crate::debug!(
                "mount attributes {attr:?} refused (locked flags {:?}); applying {kept:?}",
                flags.flags()
            );
            if kept.is_empty() {
                return Ok(());
            }
            syscalls::mount_setattr_fd(mnt, recursive, kept)
        }
        other => other,
    }
}

/// `attr` without the changes the kernel refuses on a mount whose flags it
/// locked: clearing a flag the mount has, or touching its atime mode.
fn keeping_locked(attr: MountAttr, has: nix::sys::statvfs::FsFlags) -> MountAttr {
    use nix::sys::statvfs::FsFlags;
    let mut locked = 0;
    for (flag, bit) in [
        (FsFlags::ST_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (FsFlags::ST_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (FsFlags::ST_NODEV, libc::MOUNT_ATTR_NODEV),
        (FsFlags::ST_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
    ] {
        if has.contains(flag) {
            locked |= bit;
        }
    }
    let atime = libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODIRATIME;
    MountAttr {
        set: attr.set & !atime,
        clear: attr.clear & !(locked | atime),
        propagation: attr.propagation,
    }
}

fn set_propagation(mnt: BorrowedFd<'_>, options: &MountOptions) -> Step<()> {
    for p in &options.propagation {
        let attr = MountAttr {
            propagation: p.flag,
            ..MountAttr::default()
        };
        syscalls::mount_setattr_fd(mnt, p.recursive, attr).map_err(step("propagation"))?;
    }
    Ok(())
}

/// `remount`: new attributes for a mount that already exists at `dest`.
fn remount(root: BorrowedFd<'_>, dest: &Dest, options: &MountOptions) -> Step<()> {
    let target = dest.open(root, OFlag::O_PATH)?;
    set_attributes(target.as_fd(), options)?;
    set_propagation(target.as_fd(), options)
}

/// `cgroup` mounts: the container's own cgroup, never the host's tree. With
/// a cgroup namespace a new cgroup filesystem shows exactly that; without
/// one the container's directories are bind-mounted.
fn cgroup(
    root: BorrowedFd<'_>,
    dest: &Dest,
    options: &MountOptions,
    ctx: &MountContext<'_>,
) -> Step<()> {
    if ctx.cgroup.unified {
        let dir = &ctx.cgroup.dirs[0];
        return cgroup_hierarchy(root, dest, &dir.subsystems, &dir.path, options, ctx);
    }
    // v1: a tmpfs holding one mount per hierarchy, like the host's layout.
    let tmpfs_options = MountOptions::parse(&["nosuid", "nodev", "noexec", "mode=755"]);
    let tmpfs = new_fs("tmpfs", Some("cgroup"), &tmpfs_options)?;
    attach(root, tmpfs, dest, &MountOptions::default())?;
    let mut inner = options.clone();
    inner.propagation.clear();
    for dir in &ctx.cgroup.dirs {
        let name = dir
            .mount
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| "unified".into());
        cgroup_hierarchy(
            root,
            &dest.join(&name),
            &dir.subsystems,
            &dir.path,
            &inner,
            ctx,
        )?;
    }
    // Attributes on the holding tmpfs come last: it must stay writable
    // until every hierarchy has its mount point.
    remount(root, dest, options)
}

fn cgroup_hierarchy(
    root: BorrowedFd<'_>,
    dest: &Dest,
    subsystems: &str,
    dir: &Path,
    options: &MountOptions,
    ctx: &MountContext<'_>,
) -> Step<()> {
    if !ctx.cgroupns {
        let mut bind_options = options.clone();
        bind_options.bind = Some(false);
        return clone_then_bind(root, dir, dest, &bind_options);
    }
    let mut fs_options = options.clone();
    fs_options.data.clear();
    let typ = if subsystems.is_empty() {
        "cgroup2"
    } else {
        for s in subsystems.split(',') {
            match s.split_once('=') {
                Some((k, v)) => fs_options.data.push((k.to_string(), Some(v.to_string()))),
                None => fs_options.data.push((s.to_string(), None)),
            }
        }
        "cgroup"
    };
    filesystem(root, typ, Some("cgroup"), dest, &fs_options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_flags_are_kept() {
        use nix::sys::statvfs::FsFlags;
        let asked = MountOptions::parse(&["rw", "exec", "nosuid", "relatime"]).attr;
        let has = FsFlags::ST_RDONLY | FsFlags::ST_NOSUID | FsFlags::ST_NOATIME;
        let kept = keeping_locked(asked, has);
        // rw is dropped (the source is read-only), exec is kept (noexec is
        // not set there), nosuid is added, the atime mode is left alone.
        assert_eq!(kept.set, libc::MOUNT_ATTR_NOSUID);
        assert_eq!(kept.clear, libc::MOUNT_ATTR_NOEXEC);
        let ro = MountOptions::parse(&["ro", "nodev"]).attr;
        assert_eq!(keeping_locked(ro, has), ro);
    }

    #[test]
    fn mount_label_only_where_it_applies() {
        let label = Some("system_u:object_r:container_file_t:s0:c1,c2");
        assert_eq!(
            label_option("tmpfs", label),
            Some((
                "context".into(),
                Some("\"system_u:object_r:container_file_t:s0:c1,c2\"".into())
            ))
        );
        assert_eq!(label_option("proc", label), None);
        assert_eq!(label_option("tmpfs", None), None);
        assert_eq!(label_option("tmpfs", Some("")), None);
    }
}
