//! Loading a device program and attaching it to a cgroup v2 directory
//! (`bpf(2)`), replacing the ones attached before.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::devices::BpfInsn;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a valid bpf_attr prefix of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Programs attached to the cgroup as device filters now.
fn attached(cgroup: BorrowedFd<'_>) -> Vec<OwnedFd> {
    let mut ids = [0u32; 64];
    let mut q = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..QueryAttr::default()
    };
    if bpf(BPF_PROG_QUERY, &mut q).is_err() {
        return Vec::new();
    }
    ids[..q.prog_cnt as usize]
        .iter()
        .filter_map(|id| {
            let mut g = GetFdAttr {
                prog_id: *id,
                ..GetFdAttr::default()
            };
            // SAFETY: on success the kernel returns a fresh fd.
            bpf(BPF_PROG_GET_FD_BY_ID, &mut g)
                .ok()
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
        })
        .collect()
}

/// Loads `program` and makes it the cgroup's only device filter.
pub fn set_device_filter(cgroup: BorrowedFd<'_>, program: &[BpfInsn]) -> std::io::Result<()> {
    let license = c"Apache";
    let mut log = vec![0u8; 65536];
    let mut load = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..LoadAttr::default()
    };
    let prog = match bpf(BPF_PROG_LOAD, &mut load) {
        // SAFETY: fresh fd from the kernel.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
        Err(e) => {
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            return Err(std::io::Error::new(e.kind(), format!("{e}: {text}")));
        }
    };
    let old = attached(cgroup);
    let mut attach = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attach)?;
    // The new filter is in place before the old ones go: no moment
    // without one.
    for fd in old {
        let mut detach = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..AttachAttr::default()
        };
        bpf(BPF_PROG_DETACH, &mut detach)?;
    }
    Ok(())
}
