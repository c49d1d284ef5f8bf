//! Per-process attributes from `process`: personality, I/O priority,
//! scheduler, CPU affinity, OOM score and the session keyring.

use nix::errno::Errno;
use oci_spec::runtime::{
    IOPriorityClass, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, Scheduler,
};

use crate::syscalls::{self, SchedAttr};

/// Why an attribute could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {what}: {source}")]
pub struct AttributeError {
    pub field: &'static str,
    pub what: String,
    pub source: Errno,
}

fn fail(field: &'static str, what: impl Into<String>) -> impl FnOnce(Errno) -> AttributeError {
    let what = what.into();
    move |source| AttributeError {
        field,
        what,
        source,
    }
}

/// `linux.personality`.
pub fn set_personality(p: &LinuxPersonality) -> Result<(), AttributeError> {
    let domain = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality takes a plain integer.
    if unsafe { libc::personality(domain) } < 0 {
        return Err(fail("linux.personality", "personality")(Errno::last()));
    }
    Ok(())
}

/// `process.ioPriority`.
pub fn set_io_priority(class: IOPriorityClass, priority: i64) -> Result<(), AttributeError> {
    let class = match class {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    syscalls::ioprio_set(class, priority as u32).map_err(fail("process.ioPriority", "ioprio_set"))
}

/// The sched_attr for `process.scheduler`.
pub fn sched_attr(s: &Scheduler) -> SchedAttr {
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let flags = s
        .flags()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .fold(0u64, |acc, f| {
            acc | match f {
                LinuxSchedulerFlag::SchedResetOnFork => 0x01,
                LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
                LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
                LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
                LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
                LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
                LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
            }
        });
    SchedAttr {
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..SchedAttr::default()
    }
}

/// `process.scheduler`.
pub fn set_scheduler(s: &Scheduler) -> Result<(), AttributeError> {
    syscalls::sched_setattr(&sched_attr(s)).map_err(fail("process.scheduler", "sched_setattr"))
}

/// Parses a CPU list such as `0-3,7` into a set.
pub fn parse_cpu_list(list: &str) -> Option<nix::sched::CpuSet> {
    let mut set = nix::sched::CpuSet::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        if lo > hi {
            return None;
        }
        for cpu in lo..=hi {
            set.set(cpu).ok()?;
        }
    }
    Some(set)
}

/// `process.execCPUAffinity`: the final affinity (after the process is in
/// its cgroup), or the initial one when no final one is given.
pub fn set_cpu_affinity(list: &str) -> Result<(), AttributeError> {
    let set = parse_cpu_list(list)
        .ok_or(Errno::EINVAL)
        .map_err(fail("process.execCPUAffinity", list))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(fail("process.execCPUAffinity", "sched_setaffinity"))
}

/// Joins a new session keyring named after the container, so containers
/// never share the caller's keys.
pub fn join_session_keyring(id: &str) -> Result<(), AttributeError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = std::ffi::CString::new(format!("_ses.{id}"))
        .map_err(|_| Errno::EINVAL)
        .map_err(fail("keyring", "name"))?;
    // SAFETY: keyctl with a valid C string.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let e = Errno::last();
        // Kernels without keyrings (or seccomp'd callers) cannot do this;
        // runc carries on as well.
        if e != Errno::ENOSYS {
            return Err(fail("session keyring", "keyctl(JOIN_SESSION_KEYRING)")(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let s = parse_cpu_list("0-2,5").unwrap();
        assert!(s.is_set(0).unwrap() && s.is_set(2).unwrap() && s.is_set(5).unwrap());
        assert!(!s.is_set(3).unwrap());
        assert!(parse_cpu_list("3-1").is_none());
        assert!(parse_cpu_list("x").is_none());
    }

    #[test]
    fn scheduler_conversion() {
        let s: Scheduler = serde_json::from_value(serde_json::json!({
            "policy": "SCHED_FIFO", "priority": 10, "flags": ["SCHED_RESET_ON_FORK"]
        }))
        .unwrap();
        let a = sched_attr(&s);
        assert_eq!((a.policy, a.priority, a.flags, a.nice), (1, 10, 1, 0));
    }
}
