//! The architectures a profile can name, and their syscall numbers. On an
//! x86-64 host a process can enter the kernel as x86-64, as i386 (int 0x80
//! or a 32-bit binary) or as x32 (x86-64's audit value, numbers with bit 30
//! set): a filter must decide all three.

use oci_spec::runtime::Arch as OciArch;

use crate::tables;

/// The audit architecture value of x86-64 (and x32) in `seccomp_data.arch`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// The audit architecture value of i386.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// The bit x32 syscall numbers carry.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// An architecture this host can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    X86,
    X32,
}

impl Arch {
    /// The native architecture of the build.
    pub const NATIVE: Arch = Arch::X86_64;
    /// Every architecture skiff has syscall tables for.
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::X86, Arch::X32];

    /// `seccomp_data.arch` for this architecture.
    pub fn audit(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => AUDIT_ARCH_X86_64,
            Arch::X86 => AUDIT_ARCH_I386,
        }
    }

    /// True when syscall arguments are compared as 32-bit values (the low
    /// word of `seccomp_data.args`): i386, and x32, an ILP32 ABI that
    /// libseccomp (so runc and crun) treats as 32-bit too.
    pub fn is_32bit(self) -> bool {
        matches!(self, Arch::X86 | Arch::X32)
    }

    /// This architecture's column of `tables::SYSCALLS`.
    fn column(self) -> usize {
        match self {
            Arch::X86_64 => 0,
            Arch::X86 => 1,
            Arch::X32 => 2,
        }
    }

    /// The number `seccomp_data.nr` holds for the syscall of `row`, if this
    /// architecture has it.
    pub fn number(self, row: &Numbers) -> Option<u32> {
        let nr = row[self.column()];
        if nr == tables::ABSENT {
            return None;
        }
        Some(if self == Arch::X32 {
            nr | X32_SYSCALL_BIT
        } else {
            nr
        })
    }

    /// Every syscall of this architecture with its number, by name.
    pub fn syscalls(self) -> impl Iterator<Item = (&'static str, u32)> {
        tables::SYSCALLS
            .iter()
            .filter_map(move |(name, row)| Some((*name, self.number(row)?)))
    }

    /// For a socket or SysV IPC call that i386 can also reach through its
    /// multiplexer: the multiplexer's number (socketcall(2) or ipc(2)) and
    /// the call number its first argument carries.
    pub fn multiplexed(self, name: &str) -> Option<(u32, u64)> {
        if self != Arch::X86 {
            return None;
        }
        let i = MULTIPLEXED
            .binary_search_by(|(n, _, _)| n.cmp(&name))
            .ok()?;
        Some((MULTIPLEXED[i].1, MULTIPLEXED[i].2))
    }

    /// True when a rule naming `name` filters something on this
    /// architecture.
    pub fn knows(self, name: &str) -> bool {
        self.syscall(name).is_some() || self.multiplexed(name).is_some()
    }

    /// True when `name` is a syscall of an architecture skiff does not
    /// filter (a rule naming it is skipped without a warning).
    pub fn elsewhere(name: &str) -> bool {
        tables::ELSEWHERE.binary_search(&name).is_ok()
    }

    /// The number `seccomp_data.nr` holds for syscall `name`, if this
    /// architecture has it.
    pub fn syscall(self, name: &str) -> Option<u32> {
        self.number(numbers(name)?)
    }
}

/// A syscall's numbers on every architecture (`tables::ABSENT` where it
/// has none).
pub type Numbers = [u32; 3];

/// The numbers of syscall `name`: one lookup for every architecture.
pub fn numbers(name: &str) -> Option<&'static Numbers> {
    let i = tables::SYSCALLS
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()?;
    Some(&tables::SYSCALLS[i].1)
}

const SOCKETCALL: u32 = 102;
const IPC: u32 = 117;

/// i386's multiplexed calls, sorted by name for binary search: name,
/// multiplexer, call number (the `SYS_*` of linux/net.h and the `SEMOP`...
/// of linux/ipc.h). `send` and `recv` exist only this way.
const MULTIPLEXED: [(&str, u32, u64); 32] = [
    ("accept", SOCKETCALL, 5),
    ("accept4", SOCKETCALL, 18),
    ("bind", SOCKETCALL, 2),
    ("connect", SOCKETCALL, 3),
    ("getpeername", SOCKETCALL, 7),
    ("getsockname", SOCKETCALL, 6),
    ("getsockopt", SOCKETCALL, 15),
    ("listen", SOCKETCALL, 4),
    ("msgctl", IPC, 14),
    ("msgget", IPC, 13),
    ("msgrcv", IPC, 12),
    ("msgsnd", IPC, 11),
    ("recv", SOCKETCALL, 10),
    ("recvfrom", SOCKETCALL, 12),
    ("recvmmsg", SOCKETCALL, 19),
    ("recvmsg", SOCKETCALL, 17),
    ("semctl", IPC, 3),
    ("semget", IPC, 2),
    ("semop", IPC, 1),
    ("semtimedop", IPC, 4),
    ("send", SOCKETCALL, 9),
    ("sendmmsg", SOCKETCALL, 20),
    ("sendmsg", SOCKETCALL, 16),
    ("sendto", SOCKETCALL, 11),
    ("setsockopt", SOCKETCALL, 14),
    ("shmat", IPC, 21),
    ("shmctl", IPC, 24),
    ("shmdt", IPC, 22),
    ("shmget", IPC, 23),
    ("shutdown", SOCKETCALL, 13),
    ("socket", SOCKETCALL, 1),
    ("socketpair", SOCKETCALL, 8),
];

/// Maps a profile's architecture. `None`: an architecture libseccomp knows
/// but this host never runs (its rules can never match here).
pub fn from_oci(arch: OciArch) -> Option<Arch> {
    match arch {
        OciArch::ScmpArchNative => Some(Arch::NATIVE),
        OciArch::ScmpArchX86_64 => Some(Arch::X86_64),
        OciArch::ScmpArchX86 => Some(Arch::X86),
        OciArch::ScmpArchX32 => Some(Arch::X32),
        _ => None,
    }
}

/// The spec's name for an architecture.
pub fn to_oci(arch: Arch) -> OciArch {
    match arch {
        Arch::X86_64 => OciArch::ScmpArchX86_64,
        Arch::X86 => OciArch::ScmpArchX86,
        Arch::X32 => OciArch::ScmpArchX32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(Arch::X86_64.syscall("getppid"), Some(110));
        assert_eq!(Arch::X86.syscall("getppid"), Some(64));
        assert_eq!(Arch::X32.syscall("getppid"), Some(110 | X32_SYSCALL_BIT));
        assert_eq!(Arch::X86_64.syscall("socketcall"), None);
        assert_eq!(Arch::X86.syscall("socketcall"), Some(102));
        assert_eq!(Arch::X86_64.syscall("no_such_syscall"), None);
        assert_eq!(Arch::X86.multiplexed("accept4"), Some((102, 18)));
        assert_eq!(Arch::X86.multiplexed("shmget"), Some((117, 23)));
        assert_eq!(Arch::X86_64.multiplexed("shmget"), None);
        assert!(Arch::X86.knows("send") && !Arch::X86_64.knows("send"));
        assert!(Arch::elsewhere("pciconfig_read") && Arch::elsewhere("riscv_flush_icache"));
        assert!(!Arch::elsewhere("getppid") && !Arch::elsewhere("unused18"));
    }

    #[test]
    fn tables_are_sorted() {
        assert!(tables::SYSCALLS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(MULTIPLEXED.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(tables::ELSEWHERE.windows(2).all(|w| w[0] < w[1]));
    }
}
