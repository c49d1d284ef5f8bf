//! `tmpcopyup` (runc and crun's extension, which Podman uses for its tmpfs
//! mounts): a new tmpfs starts with a copy of what the image had at the
//! mount point. The copy goes from a directory fd inside the root to the
//! detached tmpfs, never following a symlink, keeping modes, owners and
//! times.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;

fn open_at(dir: BorrowedFd<'_>, name: &Path, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        name,
        flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        mode,
    )
}

fn set_owner_and_times(dir: BorrowedFd<'_>, name: &Path, st: &FileStat) -> nix::Result<()> {
    nix::unistd::fchownat(
        dir,
        name,
        Some(nix::unistd::Uid::from_raw(st.st_uid)),
        Some(nix::unistd::Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::utimensat(
        dir,
        name,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
}

/// Copies the content of directory `from` into directory `to`.
pub fn copy_dir(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> nix::Result<()> {
    let mut listing = nix::dir::Dir::from_fd(nix::unistd::dup(from)?)?;
    let names: Vec<std::ffi::CString> = listing
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let name = Path::new(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let st = nix::sys::stat::fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        if kind == SFlag::S_IFDIR {
            match nix::sys::stat::mkdirat(to, name, mode) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            let src = open_at(
                from,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )?;
            let dst = open_at(
                to,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )?;
            copy_dir(src.as_fd(), dst.as_fd())?;
            nix::sys::stat::fchmod(&dst, mode)?;
        } else if kind == SFlag::S_IFREG {
            let src = open_at(from, name, OFlag::O_RDONLY, Mode::empty())?;
            let dst = open_at(
                to,
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
                mode,
            )?;
            let mut reader = std::fs::File::from(src);
            let mut writer = std::fs::File::from(dst);
            std::io::copy(&mut reader, &mut writer)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
            nix::sys::stat::fchmod(&writer, mode)?;
        } else if kind == SFlag::S_IFLNK {
            let target = nix::fcntl::readlinkat(from, name)?;
            nix::unistd::symlinkat(target.as_os_str(), to, name)?;
        } else {
            nix::sys::stat::mknodat(to, name, kind, mode, st.st_rdev)?;
        }
        set_owner_and_times(to, name, &st)?;
    }
    Ok(())
}
