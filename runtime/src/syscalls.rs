//! Thin wrappers for the kernel calls that nix does not cover: clone3, the
//! fd-based mount API, pidfds, close_range, capabilities and scheduling
//! attributes. Each wrapper only translates arguments and errno; policy lives
//! with the callers.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::NixPath;

/// Converts a raw syscall return value into a `Result`, keeping errno.
fn check(ret: libc::c_long) -> nix::Result<libc::c_long> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Wraps a returned file descriptor number into an owned fd.
fn owned(ret: libc::c_long) -> nix::Result<OwnedFd> {
    let fd = check(ret)? as RawFd;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a `clone3` call produced, seen from the calling side.
pub enum Forked {
    /// We are the new child process.
    Child,
    /// We are the parent; the child has this pid and pidfd.
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
}

/// Forks with `clone3`, creating the namespaces in `flags` for the child and,
/// with `cgroup`, starting the child directly inside that cgroup v2 directory.
///
/// # Safety
/// The caller must be single-threaded: the child is a copy of this one thread
/// and must only run code that is safe after fork until it execs or exits.
pub unsafe fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> nix::Result<Forked> {
    let mut pidfd: RawFd = -1;
    // SAFETY: clone_args is plain integers; all-zero is its documented default.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags | libc::CLONE_PIDFD as u64;
    args.pidfd = &mut pidfd as *mut RawFd as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    if let Some(fd) = cgroup {
        // CLONE_INTO_CGROUP (bit 33) does not fit libc's c_int constant.
        args.flags |= 0x2_0000_0000;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: args is a valid clone_args of the size we pass; with a zero
    // stack the child continues on a copy of our stack, like fork().
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match check(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as libc::pid_t,
            // SAFETY: CLONE_PIDFD stored a fresh fd for the child in pidfd.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// `open_tree(2)`: an fd for the mount at `path`, or a detached copy of it.
pub fn open_tree<P: ?Sized + NixPath>(
    dirfd: Option<BorrowedFd<'_>>,
    path: &P,
    flags: libc::c_uint,
) -> nix::Result<OwnedFd> {
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    let ret = path.with_nix_path(|p| {
        // SAFETY: p is a valid C string for the duration of the call.
        unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                dirfd,
                p.as_ptr(),
                flags | libc::OPEN_TREE_CLOEXEC,
            )
        }
    })?;
    owned(ret)
}

/// `move_mount(2)` from a mount fd onto the object that `to` refers to.
pub fn move_mount_to_fd(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: both paths are empty C strings, the fds are valid.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check(ret).map(drop)
}

/// `move_mount(2)` from a mount fd onto a path (relative to the cwd).
pub fn move_mount_to_path<P: ?Sized + NixPath>(from: BorrowedFd<'_>, to: &P) -> nix::Result<()> {
    let ret = to.with_nix_path(|p| {
        // SAFETY: valid fd and C strings.
        unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                from.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                p.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        }
    })?;
    check(ret).map(drop)
}

/// `fsopen(2)`: a filesystem context for `fstype`.
pub fn fsopen(fstype: &CStr) -> nix::Result<OwnedFd> {
    // SAFETY: fstype is a valid C string.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) })
}

/// `fsconfig(FSCONFIG_SET_STRING)`.
pub fn fsconfig_set_string(fs: BorrowedFd<'_>, key: &CStr, value: &CStr) -> nix::Result<()> {
    // SAFETY: valid fd and C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    check(ret).map(drop)
}

/// `fsconfig(FSCONFIG_SET_FLAG)`.
pub fn fsconfig_set_flag(fs: BorrowedFd<'_>, key: &CStr) -> nix::Result<()> {
    // SAFETY: valid fd and C string; value must be NULL for a flag.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    check(ret).map(drop)
}

/// `fsconfig(FSCONFIG_CMD_CREATE)`: creates the superblock.
pub fn fsconfig_create(fs: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: valid fd, no pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    check(ret).map(drop)
}

/// `fsmount(2)`: a detached mount of a created filesystem context.
pub fn fsmount(fs: BorrowedFd<'_>, attr_flags: u64) -> nix::Result<OwnedFd> {
    // SAFETY: valid fd.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attr_flags as libc::c_uint,
        )
    })
}

/// Attributes for `mount_setattr(2)`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MountAttr {
    pub set: u64,
    pub clear: u64,
    pub propagation: u64,
}

impl MountAttr {
    /// True when applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0 && self.propagation == 0
    }
}

/// `mount_setattr(2)` on the mount `fd` refers to (AT_EMPTY_PATH).
pub fn mount_setattr_fd(fd: BorrowedFd<'_>, recursive: bool, attr: MountAttr) -> nix::Result<()> {
    mount_setattr(
        Some(fd),
        c"",
        recursive,
        libc::AT_EMPTY_PATH as libc::c_uint,
        attr,
    )
}

/// The id of the mount `fd` is on (`statx` with STATX_MNT_ID): the first
/// field of that mount's line in mountinfo.
pub fn mount_id(fd: BorrowedFd<'_>) -> nix::Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: valid fd, an empty C string and a statx buffer we own.
    let ret = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            st.as_mut_ptr(),
        )
    };
    check(ret.into())?;
    // SAFETY: statx succeeded and filled the buffer (zeroed before).
    let st = unsafe { st.assume_init() };
    if st.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(Errno::ENOSYS);
    }
    Ok(st.stx_mnt_id)
}

/// The unique id (Linux 6.8+, what `statmount` takes) of the mount that
/// `path` is on; ENOSYS from older kernels.
pub fn mount_id_unique(path: &CStr) -> nix::Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: a C string and a statx buffer we own.
    let ret = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            0,
            libc::STATX_MNT_ID_UNIQUE,
            st.as_mut_ptr(),
        )
    };
    check(ret.into())?;
    // SAFETY: statx succeeded and filled the buffer (zeroed before).
    let st = unsafe { st.assume_init() };
    if st.stx_mask & libc::STATX_MNT_ID_UNIQUE == 0 {
        return Err(Errno::ENOSYS);
    }
    Ok(st.stx_mnt_id)
}

/// What `statmount` tells of one mount: the strings mountinfo would show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountStat {
    pub fs_type: String,
    /// The mount's root within its filesystem (mountinfo's fourth field).
    pub root: String,
    /// Where it is mounted, seen from this process's root.
    pub point: String,
    /// The filesystem's own options (mountinfo's super options without
    /// `rw`/`ro`); None before Linux 6.11.
    pub options: Option<String>,
}

/// `statmount(2)` (Linux 6.8+; not in libc's x86-64 table yet).
const SYS_STATMOUNT: libc::c_long = 457;
const STATMOUNT_MNT_ROOT: u64 = 0x8;
const STATMOUNT_MNT_POINT: u64 = 0x10;
const STATMOUNT_FS_TYPE: u64 = 0x20;
const STATMOUNT_MNT_OPTS: u64 = 0x80;
/// The fixed part of `struct statmount`; string fields are offsets into
/// what follows it.
const STATMOUNT_FIXED: usize = 512;

/// `statmount(2)` of mount `id` (a unique id): its type, root, mount point
/// and options, for one mount instead of formatting the whole mount table
/// as mountinfo does.
pub fn statmount(id: u64) -> nix::Result<MountStat> {
    /// `struct mnt_id_req`, its first version.
    #[repr(C)]
    struct MntIdReq {
        size: u32,
        spare: u32,
        mnt_id: u64,
        param: u64,
    }
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id: id,
        param: STATMOUNT_MNT_ROOT | STATMOUNT_MNT_POINT | STATMOUNT_FS_TYPE | STATMOUNT_MNT_OPTS,
    };
    // u64s: the kernel writes an aligned struct.
    let mut buf = vec![0u64; 512];
    let len = buf.len() * 8;
    // SAFETY: a request and an output buffer of `len` bytes that we own.
    check(unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            &req as *const MntIdReq,
            buf.as_mut_ptr(),
            len,
            0,
        )
    })?;
    // SAFETY: reinterpreting our own u64 buffer as its bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
    let mask = u64::from_ne_bytes(bytes[8..16].try_into().unwrap_or_default());
    let size = (u32_at(0) as usize).min(len);
    let string = |flag: u64, at: usize| -> Option<String> {
        if mask & flag == 0 {
            return None;
        }
        let start = STATMOUNT_FIXED + u32_at(at) as usize;
        let text = bytes.get(start..size)?;
        let end = text.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&text[..end]).into_owned())
    };
    let (Some(fs_type), Some(root), Some(point)) = (
        string(STATMOUNT_FS_TYPE, 36),
        string(STATMOUNT_MNT_ROOT, 104),
        string(STATMOUNT_MNT_POINT, 108),
    ) else {
        return Err(Errno::ENOSYS);
    };
    Ok(MountStat {
        fs_type,
        root,
        point,
        options: string(STATMOUNT_MNT_OPTS, 4),
    })
}

/// `mount_setattr(2)` making a detached mount id-mapped through the user
/// namespace `userns`.
pub fn mount_setattr_idmap(
    fd: BorrowedFd<'_>,
    recursive: bool,
    userns: BorrowedFd<'_>,
) -> nix::Result<()> {
    let mut raw = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    mount_setattr_raw(
        Some(fd),
        c"",
        recursive,
        libc::AT_EMPTY_PATH as libc::c_uint,
        &mut raw,
    )
}

/// `mount_setattr(2)` on a path relative to `dirfd` (or the cwd).
pub fn mount_setattr<P: ?Sized + NixPath>(
    dirfd: Option<BorrowedFd<'_>>,
    path: &P,
    recursive: bool,
    extra_flags: libc::c_uint,
    attr: MountAttr,
) -> nix::Result<()> {
    let mut raw = libc::mount_attr {
        attr_set: attr.set,
        attr_clr: attr.clear,
        propagation: attr.propagation,
        userns_fd: 0,
    };
    mount_setattr_raw(dirfd, path, recursive, extra_flags, &mut raw)
}

fn mount_setattr_raw<P: ?Sized + NixPath>(
    dirfd: Option<BorrowedFd<'_>>,
    path: &P,
    recursive: bool,
    extra_flags: libc::c_uint,
    raw: &mut libc::mount_attr,
) -> nix::Result<()> {
    let mut flags = extra_flags;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    let ret = path.with_nix_path(|p| {
        // SAFETY: valid fd, C string and attribute struct of the given size.
        unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                dirfd,
                p.as_ptr(),
                flags,
                raw as *mut libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        }
    })?;
    check(ret).map(drop)
}

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: libc::pid_t) -> nix::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd names, so a
/// recycled pid can never receive it.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> nix::Result<()> {
    // SAFETY: valid fd, no siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(ret).map(drop)
}

/// `close_range(2)` with `CLOSE_RANGE_CLOEXEC`: marks every fd from `first`
/// on as close-on-exec without closing it (closing would invalidate fds the
/// caller still holds).
pub fn cloexec_from(first: libc::c_uint) -> nix::Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    check(ret).map(drop)
}

/// `memfd_create(2)` for a file that will be executed. Linux 6.3+ wants
/// that said (`MFD_EXEC`) when `vm.memfd_noexec` is set; older kernels do
/// not know the flag (EINVAL) and make every memfd executable anyway.
pub fn memfd_create_exec(name: &CStr, flags: libc::c_uint) -> nix::Result<OwnedFd> {
    const MFD_EXEC: libc::c_uint = 0x10;
    let create = |flags: libc::c_uint| {
        // SAFETY: a valid C string and integer flags.
        owned(unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), flags) })
    };
    match create(flags | MFD_EXEC) {
        Err(Errno::EINVAL) => create(flags),
        other => other,
    }
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: runs the file `fd`
/// refers to. Returns only on failure.
pub fn execveat_empty_path(
    fd: BorrowedFd<'_>,
    argv: &[std::ffi::CString],
    env: &[std::ffi::CString],
) -> nix::Result<std::convert::Infallible> {
    let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argp.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: argp and envp are NULL-terminated arrays of C strings that
    // outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argp.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    check(ret)?;
    unreachable!("execveat returned without an error")
}

/// The kernel's capability header (version 3: 64-bit sets).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One 32-bit half of the three capability sets.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `capset(2)` for the calling thread with 64-bit masks.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and data have the layout capset(2) expects for v3.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    check(ret).map(drop)
}

/// `sched_setattr(2)` argument block (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// `sched_setattr(2)` for the calling thread.
pub fn sched_setattr(attr: &SchedAttr) -> nix::Result<()> {
    let mut attr = *attr;
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: attr is a valid sched_attr with its size set.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &mut attr as *mut SchedAttr, 0) };
    check(ret).map(drop)
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, prio)` for the calling process.
pub fn ioprio_set(class: u32, level: u32) -> nix::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    let prio = (class << IOPRIO_CLASS_SHIFT) | level;
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    check(ret).map(drop)
}
