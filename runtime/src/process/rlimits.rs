//! `process.rlimits`.

use nix::errno::Errno;
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// The kernel resource number for a spec rlimit type.
pub fn resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Why an rlimit could not be set.
#[derive(Debug, thiserror::Error)]
#[error("process.rlimits[{index}] {typ}: setrlimit(soft={soft}, hard={hard}): {source}")]
pub struct RlimitError {
    pub index: usize,
    pub typ: PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
    pub source: Errno,
}

/// Sets every rlimit. Raising a hard limit needs CAP_SYS_RESOURCE; without
/// it the kernel says EPERM and so do we, naming the limit.
pub fn apply(rlimits: &[PosixRlimit]) -> Result<(), RlimitError> {
    for (index, r) in rlimits.iter().enumerate() {
        let limit = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: valid rlimit struct.
        if unsafe { libc::setrlimit(resource(r.typ()), &limit) } < 0 {
            return Err(RlimitError {
                index,
                typ: r.typ(),
                soft: r.soft(),
                hard: r.hard(),
                source: Errno::last(),
            });
        }
    }
    Ok(())
}
