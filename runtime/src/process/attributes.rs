//! Per-process attributes from `process`: personality, I/O priority,
//! scheduler, CPU affinity, NUMA memory policy, OOM score and the session
//! keyring.

use nix::errno::Errno;
use oci_spec::runtime::{
    IOPriorityClass, LinuxMemoryPolicy, LinuxPersonality, LinuxPersonalityDomain,
    LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType,
    Scheduler,
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

/// Parses a list such as `0-3,7` (CPUs, memory nodes) into its numbers.
fn parse_ranges(list: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        if lo > hi {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

/// Parses a CPU list such as `0-3,7` into a set.
pub fn parse_cpu_list(list: &str) -> Option<nix::sched::CpuSet> {
    let mut set = nix::sched::CpuSet::new();
    for cpu in parse_ranges(list)? {
        set.set(cpu).ok()?;
    }
    Some(set)
}

/// The most memory nodes a kernel can have (`1 << CONFIG_NODES_SHIFT`,
/// whose largest value is 10).
const MAX_NUMNODES: usize = 1024;

/// `linux.memoryPolicy` as set_mempolicy(2) takes it: the mode with its
/// flags, and the node mask in 64-bit words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPolicy {
    pub mode: libc::c_int,
    pub mask: Vec<u64>,
}

/// Every mode of `linux.memoryPolicy.mode` (runtime-spec 1.3), for the
/// features document; [`memory_policy`] takes each.
pub const MEMORY_POLICY_MODES: [MemoryPolicyModeType; 7] = [
    MemoryPolicyModeType::MpolDefault,
    MemoryPolicyModeType::MpolPreferred,
    MemoryPolicyModeType::MpolBind,
    MemoryPolicyModeType::MpolInterleave,
    MemoryPolicyModeType::MpolLocal,
    MemoryPolicyModeType::MpolPreferredMany,
    MemoryPolicyModeType::MpolWeightedInterleave,
];

/// Every flag of `linux.memoryPolicy.flags`.
pub const MEMORY_POLICY_FLAGS: [MemoryPolicyFlagType; 3] = [
    MemoryPolicyFlagType::MpolFStaticNodes,
    MemoryPolicyFlagType::MpolFRelativeNodes,
    MemoryPolicyFlagType::MpolFNumaBalancing,
];

/// Converts and checks `linux.memoryPolicy`; the error names the field.
pub fn memory_policy(p: &LinuxMemoryPolicy) -> Result<MemoryPolicy, crate::validate::Invalid> {
    use crate::validate::Invalid;
    let nodes = p.nodes().as_deref().unwrap_or("");
    let list = parse_ranges(nodes).ok_or_else(|| {
        Invalid::new(
            "linux.memoryPolicy.nodes",
            format!("{nodes:?} is not a list of node numbers like 0-3,7"),
        )
    })?;
    let mut mask = Vec::new();
    for node in list {
        if node >= MAX_NUMNODES {
            return Err(Invalid::new(
                "linux.memoryPolicy.nodes",
                format!("node {node} is beyond the {MAX_NUMNODES} nodes Linux can have"),
            ));
        }
        if mask.len() <= node / 64 {
            mask.resize(node / 64 + 1, 0);
        }
        mask[node / 64] |= 1 << (node % 64);
    }
    use MemoryPolicyModeType as M;
    let (mode, nodes_needed) = match p.mode() {
        M::MpolDefault => (0, Some(false)),
        M::MpolPreferred => (1, None),
        M::MpolBind => (2, Some(true)),
        M::MpolInterleave => (3, Some(true)),
        M::MpolLocal => (4, Some(false)),
        M::MpolPreferredMany => (5, Some(true)),
        M::MpolWeightedInterleave => (6, Some(true)),
    };
    match nodes_needed {
        Some(true) if mask.is_empty() => {
            return Err(Invalid::new(
                "linux.memoryPolicy.nodes",
                format!("{} needs at least one node", p.mode()),
            ))
        }
        Some(false) if !mask.is_empty() => {
            return Err(Invalid::new(
                "linux.memoryPolicy.nodes",
                format!("{} takes no nodes", p.mode()),
            ))
        }
        _ => {}
    }
    let mut flags = 0;
    for f in p.flags().as_deref().unwrap_or_default() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        };
    }
    if flags & (3 << 14) == 3 << 14 {
        return Err(Invalid::new(
            "linux.memoryPolicy.flags",
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
        ));
    }
    if flags != 0 && matches!(p.mode(), M::MpolDefault | M::MpolLocal) {
        return Err(Invalid::new(
            "linux.memoryPolicy.flags",
            format!("{} takes no flags", p.mode()),
        ));
    }
    Ok(MemoryPolicy {
        mode: mode | flags,
        mask,
    })
}

/// `linux.memoryPolicy`: the thread's NUMA policy, which its children and
/// the program it executes inherit.
pub fn set_memory_policy(p: &LinuxMemoryPolicy) -> Result<(), AttributeError> {
    let policy =
        memory_policy(p).map_err(|_| fail("linux.memoryPolicy", "nodes")(Errno::EINVAL))?;
    // The kernel reads maxnode - 1 bits.
    let (mask, maxnode) = if policy.mask.is_empty() {
        (std::ptr::null(), 0)
    } else {
        (policy.mask.as_ptr(), policy.mask.len() * 64 + 1)
    };
    // SAFETY: mask points at maxnode - 1 bits (or is null with 0).
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, policy.mode, mask, maxnode) };
    if r < 0 {
        let nodes = p.nodes().as_deref().unwrap_or("");
        return Err(fail(
            "linux.memoryPolicy",
            format!("set_mempolicy({}, nodes {nodes:?})", p.mode()),
        )(Errno::last()));
    }
    Ok(())
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

    fn policy(json: serde_json::Value) -> Result<MemoryPolicy, String> {
        let p: LinuxMemoryPolicy = serde_json::from_value(json).unwrap();
        memory_policy(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn memory_policies() {
        use serde_json::json;
        assert_eq!(
            policy(
                json!({"mode": "MPOL_BIND", "nodes": "0-1,64", "flags": ["MPOL_F_STATIC_NODES"]})
            ),
            Ok(MemoryPolicy {
                mode: 2 | 1 << 15,
                mask: vec![0b11, 1]
            })
        );
        for (mode, number) in [
            ("MPOL_PREFERRED", 1),
            ("MPOL_INTERLEAVE", 3),
            ("MPOL_PREFERRED_MANY", 5),
            ("MPOL_WEIGHTED_INTERLEAVE", 6),
        ] {
            assert_eq!(
                policy(json!({"mode": mode, "nodes": "0"})).unwrap().mode,
                number
            );
        }
        assert_eq!(
            policy(json!({"mode": "MPOL_LOCAL"})),
            Ok(MemoryPolicy {
                mode: 4,
                mask: vec![]
            })
        );
        assert_eq!(
            policy(json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES"]})).unwrap().mode,
            2 | 1 << 13 | 1 << 14
        );
        assert_eq!(
            policy(json!({"mode": "MPOL_BIND", "nodes": "1-x"})).unwrap_err(),
            "linux.memoryPolicy.nodes: \"1-x\" is not a list of node numbers like 0-3,7"
        );
        assert_eq!(
            policy(json!({"mode": "MPOL_BIND", "nodes": "4096"})).unwrap_err(),
            "linux.memoryPolicy.nodes: node 4096 is beyond the 1024 nodes Linux can have"
        );
        assert_eq!(
            policy(json!({"mode": "MPOL_INTERLEAVE", "nodes": ""})).unwrap_err(),
            "linux.memoryPolicy.nodes: MPOL_INTERLEAVE needs at least one node"
        );
        assert_eq!(
            policy(json!({"mode": "MPOL_DEFAULT", "nodes": "0"})).unwrap_err(),
            "linux.memoryPolicy.nodes: MPOL_DEFAULT takes no nodes"
        );
        assert_eq!(
            policy(json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]})).unwrap_err(),
            "linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other"
        );
        assert_eq!(
            policy(json!({"mode": "MPOL_LOCAL", "flags": ["MPOL_F_STATIC_NODES"]})).unwrap_err(),
            "linux.memoryPolicy.flags: MPOL_LOCAL takes no flags"
        );
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
