//! What this crate can compile and what the running kernel can enforce,
//! for the runtime's `features` output: actions the kernel reports as
//! available (SECCOMP_GET_ACTION_AVAIL), the operators and architectures
//! the compiler handles, and the filter flags it knows, split into those
//! the kernel accepts and those it does not.

use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};

use crate::arch::{self, Arch};
use crate::compile::{action_value, filter_flag};

/// Every action `action_value` maps.
const ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActNotify,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActTrap,
];

/// Every operator the compiler emits code for.
pub(crate) const OPERATORS: [LinuxSeccompOperator; 7] = [
    LinuxSeccompOperator::ScmpCmpEq,
    LinuxSeccompOperator::ScmpCmpGe,
    LinuxSeccompOperator::ScmpCmpGt,
    LinuxSeccompOperator::ScmpCmpLe,
    LinuxSeccompOperator::ScmpCmpLt,
    LinuxSeccompOperator::ScmpCmpMaskedEq,
    LinuxSeccompOperator::ScmpCmpNe,
];

/// Every flag `compile` translates.
const FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// The seccomp part of the features document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    pub actions: Vec<String>,
    pub operators: Vec<String>,
    pub archs: Vec<String>,
    pub known_flags: Vec<String>,
    pub supported_flags: Vec<String>,
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_GET_ACTION_AVAIL: libc::c_ulong = 2;

/// True when the kernel can return `value` from a filter.
fn action_available(value: u32) -> bool {
    // Only the action bits are checked, not the data (errno) bits.
    let action = value & 0xffff_0000;
    // SAFETY: the kernel reads one u32 through the pointer.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        ) == 0
    }
}

/// True when the kernel accepts `flag`: with a NULL program a known flag
/// gets as far as copying the program (EFAULT), an unknown one is EINVAL.
/// WAIT_KILLABLE_RECV is only valid together with NEW_LISTENER.
pub(crate) fn flag_accepted(flag: u32) -> bool {
    let flag = if flag == crate::flag::WAIT_KILLABLE_RECV {
        flag | crate::flag::NEW_LISTENER
    } else {
        flag
    };
    // SAFETY: a NULL program pointer is never dereferenced by us; the
    // kernel fails the copy with EFAULT.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flag as libc::c_ulong,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

fn name<T: std::fmt::Display>(v: T) -> String {
    v.to_string()
}

/// Probes the kernel and describes what can be used here.
pub fn features() -> Features {
    let actions = ACTIONS
        .iter()
        .filter(|a| action_available(action_value(**a, None)))
        .map(name)
        .collect();
    let archs = Arch::ALL.iter().map(|a| name(arch::to_oci(*a))).collect();
    let known_flags = FLAGS.iter().map(name).collect();
    let supported_flags = FLAGS
        .iter()
        .filter(|f| flag_accepted(filter_flag(**f)))
        .map(name)
        .collect();
    Features {
        actions,
        operators: OPERATORS.iter().map(name).collect(),
        archs,
        known_flags,
        supported_flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_specs() {
        let f = features();
        assert!(f.actions.contains(&"SCMP_ACT_ALLOW".to_string()));
        assert!(f.actions.contains(&"SCMP_ACT_ERRNO".to_string()));
        assert_eq!(f.operators.len(), 7);
        assert!(f.operators.contains(&"SCMP_CMP_MASKED_EQ".to_string()));
        assert_eq!(
            f.archs,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        assert!(f
            .known_flags
            .contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_string()));
        // TSYNC has been in every kernel with seccomp(2).
        assert!(f
            .supported_flags
            .contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_string()));
        for a in Arch::ALL {
            assert_eq!(
                arch::from_oci(arch::to_oci(a)),
                Some(a),
                "listed archs compile"
            );
        }
    }
}
