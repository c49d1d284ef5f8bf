//! Paths inside the container root, resolved by file descriptor. Every
//! lookup is an `openat2` with `RESOLVE_IN_ROOT`, so a symlink planted in
//! the rootfs (absolute, relative, or through `..`) resolves inside the
//! root and can never send a mount, a device or a mask to the host.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Resolution flags for paths in the container root. Magic links
/// (`/proc/self/fd/N`) are refused: they are how a leaked fd escapes.
const IN_ROOT: ResolveFlag = ResolveFlag::RESOLVE_IN_ROOT.union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

/// The normal components of `path`, with `.` dropped and `..` applied
/// lexically (openat2 would clamp `..` at the root anyway).
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Opens `path` inside `root` with `flags` (O_CLOEXEC is always added).
pub fn open(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    open_with(root, path, flags, IN_ROOT)
}

/// Opens `path` inside `root`, with extra resolve flags.
pub fn open_with(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    resolve: ResolveFlag,
) -> nix::Result<OwnedFd> {
    let rel = clean(path);
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(resolve | IN_ROOT);
    loop {
        match nix::fcntl::openat2(root, rel, how) {
            // openat2 asks to retry when a rename raced the lookup.
            Err(Errno::EAGAIN) => continue,
            other => return other,
        }
    }
}

/// Opens the directory `path` inside `root` as O_PATH, creating it and any
/// missing parents (mode 0755) the way `mkdir -p` would, but component by
/// component inside the root. A dangling symlink on the way is followed
/// (inside the root) and its target created, as runc does for images whose
/// `/var/run -> /run` points at nothing yet.
pub fn mkdir_all(root: BorrowedFd<'_>, path: &Path) -> nix::Result<OwnedFd> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    match open(root, path, dir_flags) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let mut rel = clean(path);
    // Linux's own limit on symlinks followed in one lookup.
    for _ in 0..40 {
        match mkdir_components(root, &rel)? {
            Walk::Done(fd) => return Ok(fd),
            Walk::Retarget(next) => rel = next,
        }
    }
    Err(Errno::ELOOP)
}

enum Walk {
    Done(OwnedFd),
    Retarget(PathBuf),
}

fn mkdir_components(root: BorrowedFd<'_>, rel: &Path) -> nix::Result<Walk> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let mut parent = open(root, Path::new("."), dir_flags)?;
    let mut prefix = PathBuf::new();
    let components: Vec<_> = rel.components().collect();
    for (i, name) in components.iter().enumerate() {
        let parent_prefix = prefix.clone();
        prefix.push(name);
        parent = match open(root, &prefix, dir_flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match nix::sys::stat::mkdirat(
                    parent.as_fd(),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                match open(root, &prefix, dir_flags) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) => {
                        // The name exists but leads nowhere: a dangling
                        // symlink. Continue from its target.
                        let target = nix::fcntl::readlinkat(parent.as_fd(), name.as_os_str())?;
                        let mut next = if Path::new(&target).is_absolute() {
                            PathBuf::new()
                        } else {
                            parent_prefix
                        };
                        next.push(target);
                        for rest in &components[i + 1..] {
                            next.push(rest);
                        }
                        return Ok(Walk::Retarget(clean(&next)));
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
    }
    Ok(Walk::Done(parent))
}

/// Where a path the runtime needs to be real was not: the in-root path of
/// the component at fault (`/proc`, or `/foo` of `/foo/proc`) and the
/// error there (ELOOP: a symlink; ENOTDIR: not a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReal {
    pub at: PathBuf,
    pub source: Errno,
}

impl NotReal {
    /// The fault in words: "/proc is a symlink".
    pub fn describe(&self) -> String {
        let at = self.at.display();
        match self.source {
            Errno::ELOOP => format!("{at} is a symlink"),
            Errno::ENOTDIR => format!("{at} is not a directory"),
            _ => at.to_string(),
        }
    }
}

/// Opens `name`, one component, in `dir` without following a symlink.
fn open_component(dir: BorrowedFd<'_>, name: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH);
    loop {
        match nix::fcntl::openat2(dir, name, how) {
            Err(Errno::EAGAIN) => continue,
            other => return other,
        }
    }
}

/// Like [`mkdir_all`], but no component of `path` may be a symlink, even
/// one that stays inside the root: for the places the runtime relies on
/// (procfs and sysfs mounts, /dev), where a symlink would move the mount
/// somewhere else in the container (CVE-2019-19921, CVE-2023-27561).
pub fn mkdir_all_real(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, NotReal> {
    walk_real(root, path, true)
}

/// Opens `path` with `flags` when no component of it is a symlink.
pub fn open_real(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> Result<OwnedFd, NotReal> {
    let rel = clean(path);
    let Some(name) = rel.file_name() else {
        return walk_real(root, &rel, false);
    };
    let parent = walk_real(root, rel.parent().unwrap_or(Path::new("")), false)?;
    open_component(parent.as_fd(), Path::new(name), flags).map_err(|source| NotReal {
        at: Path::new("/").join(&rel),
        source,
    })
}

/// Opens the directory `path` one component at a time, never through a
/// symlink, creating what is missing when `create` is set.
fn walk_real(root: BorrowedFd<'_>, path: &Path, create: bool) -> Result<OwnedFd, NotReal> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let mut at = PathBuf::from("/");
    let mut dir = open_component(root, Path::new("."), dir_flags).map_err(|source| NotReal {
        at: at.clone(),
        source,
    })?;
    for name in clean(path).components() {
        let name = Path::new(name.as_os_str());
        at.push(name);
        let fail = |source| NotReal {
            at: at.clone(),
            source,
        };
        dir = match open_component(dir.as_fd(), name, dir_flags) {
            Err(Errno::ENOENT) if create => {
                match nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fail(e)),
                }
                open_component(dir.as_fd(), name, dir_flags).map_err(fail)?
            }
            other => other.map_err(fail)?,
        };
    }
    Ok(dir)
}

/// [`parent_and_name`] for a path that must be real: the parent is made by
/// [`mkdir_all_real`].
pub fn parent_and_name_real(
    root: BorrowedFd<'_>,
    path: &Path,
) -> Result<(OwnedFd, PathBuf), NotReal> {
    let rel = clean(path);
    let name = rel.file_name().map(PathBuf::from).ok_or(NotReal {
        at: path.to_path_buf(),
        source: Errno::EINVAL,
    })?;
    let parent = mkdir_all_real(root, rel.parent().unwrap_or(Path::new("")))?;
    Ok((parent, name))
}

/// [`ensure_file`] for a path that must be real: neither the file nor any
/// directory above it may be a symlink.
pub fn ensure_file_real(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, NotReal> {
    let (parent, name) = parent_and_name_real(root, path)?;
    let fail = |source| NotReal {
        at: Path::new("/").join(clean(path)),
        source,
    };
    match open_component(parent.as_fd(), &name, OFlag::O_PATH) {
        Err(Errno::ENOENT) => {}
        other => return other.map_err(fail),
    }
    create_empty_file(parent.as_fd(), &name).map_err(fail)?;
    open_component(parent.as_fd(), &name, OFlag::O_PATH).map_err(fail)
}

/// Splits a path into its parent directory (opened, created if missing)
/// and final name.
pub fn parent_and_name(root: BorrowedFd<'_>, path: &Path) -> nix::Result<(OwnedFd, PathBuf)> {
    let rel = clean(path);
    let name = rel.file_name().map(PathBuf::from).ok_or(Errno::EINVAL)?;
    let parent = mkdir_all(root, rel.parent().unwrap_or(Path::new("")))?;
    Ok((parent, name))
}

/// Opens the file `path` inside `root` as O_PATH, creating an empty regular
/// file (and parents) when it is missing. A bind mount of a file needs a
/// file to land on.
pub fn ensure_file(root: BorrowedFd<'_>, path: &Path) -> nix::Result<OwnedFd> {
    match open(root, path, OFlag::O_PATH) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let (parent, name) = parent_and_name(root, path)?;
    create_empty_file(parent.as_fd(), &name)?;
    open(root, path, OFlag::O_PATH)
}

/// Creates an empty file `name` in `parent` unless something is there.
fn create_empty_file(parent: BorrowedFd<'_>, name: &Path) -> nix::Result<()> {
    match nix::fcntl::openat(
        parent,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(_) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("skiff-resolve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn root_fd(dir: &Path) -> OwnedFd {
        nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean(Path::new("/a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(clean(Path::new("/../../etc")), PathBuf::from("etc"));
        assert_eq!(clean(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn absolute_symlink_stays_inside_the_root() {
        let d = tmpdir("abs");
        let root = d.join("root");
        std::fs::create_dir_all(&root).unwrap();
        // An image that points /evil at the host's /tmp: mkdir_all must
        // create root/tmp/x, never /tmp/x on the host.
        symlink("/tmp", root.join("evil")).unwrap();
        let marker = format!("skiff-must-not-exist-{}", std::process::id());
        let fd = mkdir_all(root_fd(&root).as_fd(), &Path::new("/evil").join(&marker)).unwrap();
        drop(fd);
        assert!(root.join("tmp").join(&marker).is_dir());
        assert!(!Path::new("/tmp").join(&marker).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dotdot_symlink_is_clamped() {
        let d = tmpdir("dotdot");
        let root = d.join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();
        let fd = ensure_file(root_fd(&root).as_fd(), Path::new("/up/file")).unwrap();
        drop(fd);
        assert!(root.join("file").is_file());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn real_paths_refuse_every_symlink() {
        let d = tmpdir("real");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("evil")).unwrap();
        std::fs::write(root.join("file"), "").unwrap();
        symlink("/evil", root.join("abs")).unwrap();
        symlink("evil", root.join("rel")).unwrap();
        symlink("/nowhere", root.join("dangling")).unwrap();
        let fd = root_fd(&root);
        let not_real = |p: &str| mkdir_all_real(fd.as_fd(), Path::new(p)).unwrap_err();
        for link in ["/abs", "/rel", "/dangling"] {
            assert_eq!(
                not_real(link),
                NotReal {
                    at: link.into(),
                    source: Errno::ELOOP
                }
            );
        }
        // A symlink above the destination is named, not the destination.
        assert_eq!(not_real("/rel/proc").describe(), "/rel is a symlink");
        assert_eq!(not_real("/file").describe(), "/file is not a directory");
        assert!(!root.join("evil/proc").exists() && !root.join("nowhere").exists());
        // What is missing is created, component by component.
        drop(mkdir_all_real(fd.as_fd(), Path::new("/a/b")).unwrap());
        assert!(root.join("a/b").is_dir());
        drop(ensure_file_real(fd.as_fd(), Path::new("/a/b/f")).unwrap());
        assert!(root.join("a/b/f").is_file());
        drop(open_real(fd.as_fd(), Path::new("/a/b/f"), OFlag::O_PATH).unwrap());
        let err = open_real(fd.as_fd(), Path::new("/rel/x"), OFlag::O_PATH).unwrap_err();
        assert_eq!(err.describe(), "/rel is a symlink");
        let err = open_real(fd.as_fd(), Path::new("/a/missing"), OFlag::O_PATH).unwrap_err();
        assert_eq!((err.at, err.source), ("/a/missing".into(), Errno::ENOENT));
        symlink("/file", root.join("a/b/link")).unwrap();
        let err = ensure_file_real(fd.as_fd(), Path::new("/a/b/link")).unwrap_err();
        assert_eq!(err.describe(), "/a/b/link is a symlink");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn magic_links_are_refused() {
        let d = tmpdir("magic");
        let root = d.join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink("/proc/self/root", root.join("m")).unwrap();
        // Resolved in-root this is root/proc/self/root: absent, not the host.
        let err = open(root_fd(&root).as_fd(), Path::new("/m/etc"), OFlag::O_PATH).unwrap_err();
        assert_eq!(err, Errno::ENOENT);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
