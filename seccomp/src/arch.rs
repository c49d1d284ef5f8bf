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

    /// True when syscall arguments are 32 bits wide (only the low word of
    /// `seccomp_data.args` is meaningful).
    pub fn is_32bit(self) -> bool {
        self == Arch::X86
    }

    pub(crate) fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Arch::X86_64 => tables::X86_64,
            Arch::X86 => tables::X86,
            Arch::X32 => tables::X32,
        }
    }

    /// The number `seccomp_data.nr` holds for syscall `name`, if this
    /// architecture has it.
    pub fn syscall(self, name: &str) -> Option<u32> {
        let table = self.table();
        let i = table.binary_search_by(|(n, _)| n.cmp(&name)).ok()?;
        let nr = table[i].1;
        Some(if self == Arch::X32 {
            nr | X32_SYSCALL_BIT
        } else {
            nr
        })
    }
}

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
    }

    #[test]
    fn tables_are_sorted() {
        for arch in Arch::ALL {
            assert!(arch.table().windows(2).all(|w| w[0].0 < w[1].0), "{arch:?}");
        }
    }
}
