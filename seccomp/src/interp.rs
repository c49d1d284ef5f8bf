//! A classic-BPF interpreter for the subset seccomp filters use, so the
//! compiler's output is tested on synthetic syscalls without installing it,
//! and the runtime can ask a profile what it does to its own last syscall.

use crate::arch::AUDIT_ARCH_X86_64;

/// What the kernel hands a filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Data {
    pub fn x86_64(nr: u32, args: [u64; 6]) -> Data {
        Data {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args,
        }
    }

    #[cfg(test)]
    pub fn i386(nr: u32, args: [u64; 6]) -> Data {
        Data {
            nr,
            arch: crate::arch::AUDIT_ARCH_I386,
            args,
        }
    }

    fn word(&self, off: u32) -> u32 {
        match off {
            0 => self.nr,
            4 => self.arch,
            o if (16..64).contains(&o) => {
                let arg = self.args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load of offset {off}"),
        }
    }
}

/// Runs `prog` on `data`; returns the filter's verdict and the number of
/// instructions executed.
pub fn run(prog: &[libc::sock_filter], data: &Data) -> (u32, usize) {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let i = prog[pc];
        steps += 1;
        pc += 1;
        match i.code {
            0x20 => a = data.word(i.k),
            0x54 => a &= i.k,
            0x06 => return (i.k, steps),
            0x05 => pc += i.k as usize,
            0x15 => pc += if a == i.k { i.jt } else { i.jf } as usize,
            0x25 => pc += if a > i.k { i.jt } else { i.jf } as usize,
            0x35 => pc += if a >= i.k { i.jt } else { i.jf } as usize,
            c => panic!("opcode {c:#x}"),
        }
    }
}

/// The meaning of one condition (`op` as the spec spells it), straight
/// from the spec and libseccomp's manual: the datum of MASKED_EQ is masked
/// too.
#[cfg(test)]
pub fn holds(op: &str, arg: u64, value: u64, value_two: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => arg != value,
        "SCMP_CMP_LT" => arg < value,
        "SCMP_CMP_LE" => arg <= value,
        "SCMP_CMP_EQ" => arg == value,
        "SCMP_CMP_GE" => arg >= value,
        "SCMP_CMP_GT" => arg > value,
        "SCMP_CMP_MASKED_EQ" => arg & value == value_two & value,
        _ => unreachable!("{op}"),
    }
}
