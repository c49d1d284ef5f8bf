//! `linux.seccomp` to a BPF program.
//!
//! Layout: dispatch on `seccomp_data.arch`; per architecture a balanced
//! binary search over syscall-number intervals (adjacent numbers with the
//! same rules share one interval, gaps are the default action); each leaf
//! runs the rules of its syscall in profile order, first match wins, and
//! falls back to the default action. A process of an architecture the
//! profile does not list is killed (libseccomp's bad-arch action, which
//! runc keeps).

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use crate::arch::{self, Arch, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::bpf::{Asm, Cmp, Insn, Label};

/// Kernel return values.
pub mod ret {
    pub const KILL_PROCESS: u32 = 0x8000_0000;
    pub const KILL_THREAD: u32 = 0x0000_0000;
    pub const TRAP: u32 = 0x0003_0000;
    pub const ERRNO: u32 = 0x0005_0000;
    pub const USER_NOTIF: u32 = 0x7fc0_0000;
    pub const TRACE: u32 = 0x7ff0_0000;
    pub const LOG: u32 = 0x7ffc_0000;
    pub const ALLOW: u32 = 0x7fff_0000;
    /// The bits that select the action (the rest is its data).
    pub const ACTION_FULL: u32 = 0xffff_0000;
}

/// `seccomp(2)` filter flags.
pub mod flag {
    pub const TSYNC: u32 = 1;
    pub const LOG: u32 = 2;
    pub const SPEC_ALLOW: u32 = 4;
    pub const NEW_LISTENER: u32 = 8;
    pub const WAIT_KILLABLE_RECV: u32 = 32;
}

const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

/// A profile that cannot be compiled, naming the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "linux.seccomp.syscalls[{rule}].errnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE"
    )]
    ErrnoWithoutErrnoAction { rule: usize },
    #[error("linux.seccomp.defaultErrnoRet: only valid with a default action of SCMP_ACT_ERRNO or SCMP_ACT_TRACE")]
    DefaultErrnoWithoutErrnoAction,
    #[error("linux.seccomp.syscalls[{rule}].args[{arg}].index: {index} is above 5 (a syscall has six arguments)")]
    ArgIndex {
        rule: usize,
        arg: usize,
        index: usize,
    },
    #[error("linux.seccomp.syscalls[{rule}].names: empty")]
    NoNames { rule: usize },
    #[error("linux.seccomp.listenerPath: required when an action is SCMP_ACT_NOTIFY")]
    NotifyWithoutListener,
    #[error("linux.seccomp: the program has {0} instructions, more than the kernel's 4096")]
    TooLarge(usize),
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone)]
pub struct Filter {
    pub program: Vec<libc::sock_filter>,
    /// seccomp(2) flags (NEW_LISTENER when an action is NOTIFY).
    pub flags: u32,
    /// Syscall names no architecture has (skipped, as runc and crun do;
    /// the caller warns). A name known only on architectures the profile
    /// does not list, or that skiff does not filter, is skipped silently:
    /// no process here can call it.
    pub unknown: Vec<String>,
}

impl Filter {
    /// True when installing returns a user-notification listener fd.
    pub fn has_listener(&self) -> bool {
        self.flags & flag::NEW_LISTENER != 0
    }

    /// Whether syscall `nr` of x86-64 (with all-zero arguments) gets
    /// through: allowed, logged, or passed to the notification agent. The
    /// runtime's own last syscall (execve) must.
    pub fn lets_through(&self, nr: u32) -> bool {
        let data = crate::interp::Data::x86_64(nr, [0; 6]);
        let verdict = crate::interp::run(&self.program, &data).0 & ret::ACTION_FULL;
        matches!(verdict, ret::ALLOW | ret::LOG | ret::USER_NOTIF)
    }

    /// Drops the optional flags this kernel does not accept (LOG,
    /// SPEC_ALLOW and WAIT_KILLABLE_RECV are newer than seccomp itself),
    /// so that installing takes one syscall; returns the dropped flags.
    pub fn drop_unsupported_flags(&mut self) -> u32 {
        let optional = flag::LOG | flag::SPEC_ALLOW | flag::WAIT_KILLABLE_RECV;
        let dropped: u32 = (0..32)
            .map(|bit| 1u32 << bit)
            .filter(|f| self.flags & optional & f != 0 && !crate::features::flag_accepted(*f))
            .sum();
        self.flags &= !dropped;
        dropped
    }
}

/// The return value for an action.
pub fn action_value(action: LinuxSeccompAction, errno: Option<u32>) -> u32 {
    let data = |e: Option<u32>| e.unwrap_or(libc::EPERM as u32) & 0xffff;
    match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ret::KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => ret::KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => ret::TRAP,
        LinuxSeccompAction::ScmpActErrno => ret::ERRNO | data(errno),
        LinuxSeccompAction::ScmpActTrace => ret::TRACE | data(errno),
        LinuxSeccompAction::ScmpActLog => ret::LOG,
        LinuxSeccompAction::ScmpActNotify => ret::USER_NOTIF,
        LinuxSeccompAction::ScmpActAllow => ret::ALLOW,
    }
}

/// The seccomp(2) bit for a spec filter flag.
pub fn filter_flag(f: LinuxSeccompFilterFlag) -> u32 {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => flag::TSYNC,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => flag::LOG,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => flag::SPEC_ALLOW,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => flag::WAIT_KILLABLE_RECV,
    }
}

fn takes_errno(action: LinuxSeccompAction) -> bool {
    matches!(
        action,
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
    )
}

/// One argument condition, normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cond {
    index: u32,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

/// One rule for one syscall: all conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    action: u32,
    conds: Vec<Cond>,
}

/// The rules a syscall number has, in profile order.
type Chain = Vec<Rule>;

fn conds(rule: usize, args: &[LinuxSeccompArg]) -> Result<Vec<Cond>, SeccompError> {
    args.iter()
        .enumerate()
        .map(|(arg, a)| {
            if a.index() > 5 {
                return Err(SeccompError::ArgIndex {
                    rule,
                    arg,
                    index: a.index(),
                });
            }
            Ok(Cond {
                index: a.index() as u32,
                op: a.op(),
                value: a.value(),
                // Go runtimes omit a zero valueTwo (`omitempty`):
                // containerd's default profile masks clone flags with
                // `(flags & CLONE_NEW*) == 0` written without it.
                value_two: a.value_two().unwrap_or(0),
            })
        })
        .collect()
}

/// Drops the rules that can never decide: those after the first
/// unconditional rule, and the conditional ones just before it with its
/// action (matched or not, the action is the same). On i386 a profile's
/// socket calls and its unconditional `socketcall` meet so.
fn prune(chain: &mut Chain) {
    let Some(last) = chain.iter().position(|r| r.conds.is_empty()) else {
        return;
    };
    let action = chain[last].action;
    chain.truncate(last + 1);
    let keep = chain[..last]
        .iter()
        .rposition(|r| r.action != action)
        .map_or(0, |i| i + 1);
    chain.drain(keep..last);
}

/// A rule's conditions for its multiplexed form: argument 0 is the call.
fn multiplexed(conds: &[Cond], call: u64) -> Vec<Cond> {
    let is_call = Cond {
        index: 0,
        op: LinuxSeccompOperator::ScmpCmpEq,
        value: call,
        value_two: 0,
    };
    std::iter::once(is_call)
        .chain(conds.iter().filter(|c| c.index != 0).copied())
        .collect()
}

/// Validates and compiles a profile.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let default_action = profile.default_action();
    if profile.default_errno_ret().is_some() && !takes_errno(default_action) {
        return Err(SeccompError::DefaultErrnoWithoutErrnoAction);
    }
    let default = action_value(default_action, profile.default_errno_ret());

    // The native architecture is always filtered (libseccomp's filter starts
    // with it); listed ones are added.
    let mut arches = vec![Arch::NATIVE];
    for a in profile.architectures().as_deref().unwrap_or_default() {
        if let Some(a) = arch::from_oci(*a) {
            if !arches.contains(&a) {
                arches.push(a);
            }
        }
    }

    let mut flags = 0;
    for f in profile.flags().as_deref().unwrap_or_default() {
        flags |= filter_flag(*f);
    }

    let mut chains: BTreeMap<Arch, BTreeMap<u32, Chain>> =
        arches.iter().map(|a| (*a, BTreeMap::new())).collect();
    let mut unknown = Vec::new();
    let mut notify = default_action == LinuxSeccompAction::ScmpActNotify;
    for (i, sc) in profile
        .syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if sc.names().is_empty() {
            return Err(SeccompError::NoNames { rule: i });
        }
        if sc.errno_ret().is_some() && !takes_errno(sc.action()) {
            return Err(SeccompError::ErrnoWithoutErrnoAction { rule: i });
        }
        let conds = conds(i, sc.args().as_deref().unwrap_or_default())?;
        // Conditions are ANDed, unless two test the same argument: then
        // each is a rule of its own (ORed). runc and crun both map a rule
        // so (libseccomp refuses two conditions on one argument), and
        // profiles written for them rely on it.
        let shares_an_arg = conds
            .iter()
            .enumerate()
            .any(|(j, c)| conds[..j].iter().any(|d| d.index == c.index));
        let groups: Vec<Vec<Cond>> = if shares_an_arg {
            conds.into_iter().map(|c| vec![c]).collect()
        } else {
            vec![conds]
        };
        let action = action_value(sc.action(), sc.errno_ret());
        // A rule that does what the default does changes nothing (runc and
        // libseccomp skip it too).
        if action == default {
            continue;
        }
        notify |= sc.action() == LinuxSeccompAction::ScmpActNotify;
        for name in sc.names() {
            let numbers = arch::numbers(name);
            let mut known = false;
            for (a, map) in chains.iter_mut() {
                if let Some(nr) = numbers.and_then(|row| a.number(row)) {
                    known = true;
                    let chain = map.entry(nr).or_default();
                    chain.extend(groups.iter().map(|conds| Rule {
                        action,
                        conds: conds.clone(),
                    }));
                }
                // i386 reaches socket and IPC calls through socketcall(2)
                // and ipc(2) too: the rule covers those, as libseccomp's
                // (so runc's and crun's) does. As there, the first
                // argument's test becomes the call number's, and the other
                // conditions keep their argument index.
                if let Some((mux, call)) = a.multiplexed(name) {
                    known = true;
                    let chain = map.entry(mux).or_default();
                    chain.extend(groups.iter().map(|conds| Rule {
                        action,
                        conds: multiplexed(conds, call),
                    }));
                }
            }
            if !known
                && !Arch::ALL.iter().any(|a| a.knows(name))
                && !Arch::elsewhere(name)
                && !unknown.contains(name)
            {
                unknown.push(name.clone());
            }
        }
    }
    if notify {
        if profile.listener_path().is_none() {
            return Err(SeccompError::NotifyWithoutListener);
        }
        flags |= flag::NEW_LISTENER;
    } else {
        // The kernel takes WAIT_KILLABLE_RECV only with a listener; with
        // no notification there is nothing for it to change, and
        // libseccomp (hence runc 1.5 and crun) leaves it out then.
        flags &= !flag::WAIT_KILLABLE_RECV;
    }

    for chain in chains.values_mut().flat_map(BTreeMap::values_mut) {
        prune(chain);
    }
    let program = generate(&arches, &chains, default);
    if program.len() > 4096 {
        return Err(SeccompError::TooLarge(program.len()));
    }
    Ok(Filter {
        program,
        flags,
        unknown,
    })
}

/// What an interval of syscall numbers `[start, next start)` does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    Default,
    BadArch,
    /// The rules, and whether arguments are compared on their low word
    /// only (`Arch::is_32bit`).
    Rules(Chain, bool),
}

/// A slice `[lo, hi)` of the syscall-number space and the rules for it
/// (`None`: it belongs to an architecture the profile does not list).
struct Part<'a> {
    arch: Arch,
    lo: u32,
    /// Exclusive, up to 2^32.
    hi: u64,
    rules: Option<&'a BTreeMap<u32, Chain>>,
}

/// The intervals covering every u32 syscall number for one audit arch.
fn intervals(parts: &[Part<'_>]) -> Vec<(u32, Leaf)> {
    let mut out: Vec<(u32, Leaf)> = Vec::new();
    let mut push = |start: u64, leaf: Leaf| {
        if out.last().is_some_and(|(_, l)| *l == leaf) {
            return;
        }
        out.push((start as u32, leaf));
    };
    for part in parts {
        match part.rules {
            None => push(part.lo.into(), Leaf::BadArch),
            Some(map) => {
                let mut cursor = u64::from(part.lo);
                for (nr, chain) in map.range(part.lo..) {
                    let nr = u64::from(*nr);
                    if nr >= part.hi {
                        break;
                    }
                    if nr > cursor {
                        push(cursor, Leaf::Default);
                    }
                    push(nr, Leaf::Rules(chain.clone(), part.arch.is_32bit()));
                    cursor = nr + 1;
                }
                if cursor < part.hi {
                    push(cursor, Leaf::Default);
                }
            }
        }
    }
    out
}

struct Gen {
    asm: Asm,
    default: Label,
    bad_arch: Label,
}

fn generate(
    arches: &[Arch],
    chains: &BTreeMap<Arch, BTreeMap<u32, Chain>>,
    default: u32,
) -> Vec<libc::sock_filter> {
    let mut g = Gen {
        asm: Asm::default(),
        default: 0,
        bad_arch: 0,
    };
    g.default = g.asm.label();
    g.bad_arch = g.asm.label();
    let x86_64_audit = g.asm.label();
    let i386_audit = g.asm.label();

    let has = |a: Arch| arches.contains(&a);
    g.asm.push(Insn::Load(OFFSET_ARCH));
    let after_x86_64 = g.asm.label();
    let after_i386 = g.asm.label();
    if has(Arch::X86_64) || has(Arch::X32) {
        g.asm.push(Insn::Jump {
            cmp: Cmp::Eq,
            k: AUDIT_ARCH_X86_64,
            t: x86_64_audit,
            f: after_x86_64,
        });
    }
    g.asm.mark(after_x86_64);
    if has(Arch::X86) {
        g.asm.push(Insn::Jump {
            cmp: Cmp::Eq,
            k: AUDIT_ARCH_I386,
            t: i386_audit,
            f: after_i386,
        });
    }
    g.asm.mark(after_i386);
    g.asm.push(Insn::Goto(g.bad_arch));

    if has(Arch::X86_64) || has(Arch::X32) {
        g.asm.mark(x86_64_audit);
        g.asm.push(Insn::Load(OFFSET_NR));
        // Number -1 (a syscall a tracer skipped, or syscall(-1)) is no
        // x32 call: like libseccomp, give it x86-64's rules (the default)
        // rather than x32's bad-arch kill when x32 is not listed.
        let parts = [
            Part {
                arch: Arch::X86_64,
                lo: 0,
                hi: X32_SYSCALL_BIT.into(),
                rules: chains.get(&Arch::X86_64),
            },
            Part {
                arch: Arch::X32,
                lo: X32_SYSCALL_BIT,
                hi: u32::MAX.into(),
                rules: chains.get(&Arch::X32),
            },
            Part {
                arch: Arch::X86_64,
                lo: u32::MAX,
                hi: 1 << 32,
                rules: chains.get(&Arch::X86_64),
            },
        ];
        let leaves = intervals(&parts);
        g.tree(&leaves);
    }
    if has(Arch::X86) {
        g.asm.mark(i386_audit);
        g.asm.push(Insn::Load(OFFSET_NR));
        let leaves = intervals(&[Part {
            arch: Arch::X86,
            lo: 0,
            hi: 1 << 32,
            rules: chains.get(&Arch::X86),
        }]);
        g.tree(&leaves);
    }

    g.asm.mark(g.default);
    g.asm.push(Insn::Ret(default));
    g.asm.mark(g.bad_arch);
    g.asm.push(Insn::Ret(ret::KILL_THREAD));
    g.asm.assemble()
}

impl Gen {
    /// A balanced search over the intervals (A holds the syscall number).
    fn tree(&mut self, leaves: &[(u32, Leaf)]) {
        if leaves.len() == 1 {
            self.leaf(&leaves[0].1);
            return;
        }
        let mid = leaves.len() / 2;
        let right = self.asm.label();
        let left = self.asm.label();
        self.asm.push(Insn::Jump {
            cmp: Cmp::Ge,
            k: leaves[mid].0,
            t: right,
            f: left,
        });
        self.asm.mark(left);
        self.tree(&leaves[..mid]);
        self.asm.mark(right);
        self.tree(&leaves[mid..]);
    }

    fn leaf(&mut self, leaf: &Leaf) {
        match leaf {
            Leaf::Default => self.asm.push(Insn::Goto(self.default)),
            Leaf::BadArch => self.asm.push(Insn::Goto(self.bad_arch)),
            Leaf::Rules(chain, is_32bit) => {
                for rule in chain {
                    if rule.conds.is_empty() {
                        self.asm.push(Insn::Ret(rule.action));
                        return;
                    }
                    let next = self.asm.label();
                    for c in &rule.conds {
                        self.cond(c, next, *is_32bit);
                    }
                    self.asm.push(Insn::Ret(rule.action));
                    self.asm.mark(next);
                }
                // A leaf left A holding an argument: the default needs no A.
                self.asm.push(Insn::Goto(self.default));
            }
        }
    }

    /// Emits a test of one condition: falls through when it holds, jumps
    /// to `fail` otherwise. 64-bit values are compared high word first; on
    /// 32-bit architectures only the low word exists.
    fn cond(&mut self, c: &Cond, fail: Label, is_32bit: bool) {
        let lo_off = OFFSET_ARGS + 8 * c.index;
        let hi_off = lo_off + 4;
        let (v_hi, v_lo) = ((c.value >> 32) as u32, c.value as u32);
        let pass = self.asm.label();
        let a = &mut self.asm;
        use LinuxSeccompOperator::*;
        match c.op {
            ScmpCmpMaskedEq => {
                // (arg & value) == (valueTwo & value): libseccomp masks
                // the datum too, so bits of valueTwo outside the mask never
                // make a rule unmatchable under runc or crun.
                let datum = c.value_two & c.value;
                let (d_hi, d_lo) = ((datum >> 32) as u32, datum as u32);
                if !is_32bit {
                    let lo = a.label();
                    a.push(Insn::Load(hi_off));
                    a.push(Insn::And(v_hi));
                    a.push(Insn::Jump {
                        cmp: Cmp::Eq,
                        k: d_hi,
                        t: lo,
                        f: fail,
                    });
                    a.mark(lo);
                }
                a.push(Insn::Load(lo_off));
                a.push(Insn::And(v_lo));
                a.push(Insn::Jump {
                    cmp: Cmp::Eq,
                    k: d_lo,
                    t: pass,
                    f: fail,
                });
            }
            ScmpCmpEq | ScmpCmpNe => {
                let (on_eq, on_ne) = if c.op == ScmpCmpEq {
                    (pass, fail)
                } else {
                    (fail, pass)
                };
                if !is_32bit {
                    let lo = a.label();
                    a.push(Insn::Load(hi_off));
                    a.push(Insn::Jump {
                        cmp: Cmp::Eq,
                        k: v_hi,
                        t: lo,
                        f: on_ne,
                    });
                    a.mark(lo);
                }
                a.push(Insn::Load(lo_off));
                a.push(Insn::Jump {
                    cmp: Cmp::Eq,
                    k: v_lo,
                    t: on_eq,
                    f: on_ne,
                });
            }
            ScmpCmpGt | ScmpCmpGe | ScmpCmpLt | ScmpCmpLe => {
                // Decide "arg > v" (Gt, and Le as its negation) or
                // "arg >= v" (Ge, and Lt as its negation).
                let strict = matches!(c.op, ScmpCmpGt | ScmpCmpLe);
                let (on_true, on_false) = if matches!(c.op, ScmpCmpGt | ScmpCmpGe) {
                    (pass, fail)
                } else {
                    (fail, pass)
                };
                if !is_32bit {
                    let eq = a.label();
                    let not_gt = a.label();
                    a.push(Insn::Load(hi_off));
                    a.push(Insn::Jump {
                        cmp: Cmp::Gt,
                        k: v_hi,
                        t: on_true,
                        f: not_gt,
                    });
                    a.mark(not_gt);
                    a.push(Insn::Jump {
                        cmp: Cmp::Eq,
                        k: v_hi,
                        t: eq,
                        f: on_false,
                    });
                    a.mark(eq);
                }
                a.push(Insn::Load(lo_off));
                let cmp = if strict { Cmp::Gt } else { Cmp::Ge };
                a.push(Insn::Jump {
                    cmp,
                    k: v_lo,
                    t: on_true,
                    f: on_false,
                });
            }
        }
        self.asm.mark(pass);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::{holds, run, Data};

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    fn nr(name: &str) -> u32 {
        Arch::X86_64.syscall(name).unwrap()
    }

    fn verdict(f: &Filter, d: Data) -> u32 {
        run(&f.program, &d).0
    }

    const NO_ARGS: [u64; 6] = [0; 6];

    #[test]
    fn default_and_rule() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid", "mkdir"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        assert_eq!(
            verdict(&f, Data::x86_64(nr("getppid"), NO_ARGS)),
            ret::ERRNO | 1
        );
        assert_eq!(
            verdict(&f, Data::x86_64(nr("mkdir"), NO_ARGS)),
            ret::ERRNO | 1
        );
        assert_eq!(verdict(&f, Data::x86_64(nr("getpid"), NO_ARGS)), ret::ALLOW);
        assert_eq!(verdict(&f, Data::x86_64(999_999, NO_ARGS)), ret::ALLOW);
    }

    #[test]
    fn architectures_and_bad_arch() {
        let listed = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        })))
        .unwrap();
        let i386 = Arch::X86.syscall("getppid").unwrap();
        let x32 = Arch::X32.syscall("getppid").unwrap();
        assert_eq!(verdict(&listed, Data::i386(i386, NO_ARGS)), ret::ERRNO | 38);
        assert_eq!(
            verdict(&listed, Data::x86_64(x32, NO_ARGS)),
            ret::ERRNO | 38
        );
        assert_eq!(verdict(&listed, Data::i386(20, NO_ARGS)), ret::ALLOW);
        // Only the native architecture: 32-bit and x32 entries are killed.
        let native = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        assert_eq!(verdict(&native, Data::i386(20, NO_ARGS)), ret::KILL_THREAD);
        assert_eq!(
            verdict(&native, Data::x86_64(x32, NO_ARGS)),
            ret::KILL_THREAD
        );
        assert_eq!(
            verdict(
                &native,
                Data {
                    nr: 1,
                    arch: 0xc000_00b7,
                    args: NO_ARGS
                }
            ),
            ret::KILL_THREAD
        );
    }

    #[test]
    fn syscall_minus_one_gets_the_default_not_bad_arch() {
        // libseccomp (so runc and crun) treats -1 as an x86-64 number, not
        // as an x32 one: a skipped or bogus syscall gets the default.
        for arches in [serde_json::json!([]), serde_json::json!(["SCMP_ARCH_X32"])] {
            let f = compile(&profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ERRNO", "architectures": arches,
                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ALLOW"}]
            })))
            .unwrap();
            assert_eq!(
                verdict(&f, Data::x86_64(u32::MAX, NO_ARGS)),
                ret::ERRNO | 1,
                "{arches}"
            );
        }
    }

    #[test]
    fn every_operator_on_64_bit_edges() {
        let edges = [
            0u64,
            1,
            7,
            8,
            9,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0001,
            0xffff_ffff_0000_0000,
            u64::MAX - 1,
            u64::MAX,
        ];
        for op in crate::features::OPERATORS.map(|o| o.to_string()) {
            let op = op.as_str();
            for &value in &edges {
                let value_two = value & 0x0000_0001_0000_0008;
                let f = compile(&profile(serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 2, "value": value, "valueTwo": value_two, "op": op}]}]
                })))
                .unwrap();
                for &arg in &edges {
                    let want = if holds(op, arg, value, value_two) {
                        ret::ERRNO | 1
                    } else {
                        ret::ALLOW
                    };
                    let d = Data::x86_64(nr("personality"), [0, 0, arg, 0, 0, 0]);
                    assert_eq!(verdict(&f, d), want, "{op} arg={arg:#x} value={value:#x}");
                }
            }
        }
    }

    #[test]
    fn masked_eq_masks_the_datum_too() {
        // valueTwo has bits outside the mask: libseccomp compares
        // (arg & value) with (valueTwo & value).
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 0xff, "valueTwo": 0x1_0000_ff08u64,
                    "op": "SCMP_CMP_MASKED_EQ"}]}]
        })))
        .unwrap();
        let p = |a: u64| verdict(&f, Data::x86_64(nr("personality"), [a, 0, 0, 0, 0, 0]));
        assert_eq!(p(0x08), ret::ERRNO | 1);
        assert_eq!(p(0xf00_0008), ret::ERRNO | 1);
        assert_eq!(p(0x09), ret::ALLOW);
    }

    #[test]
    fn masked_eq_without_value_two_compares_to_zero() {
        // containerd's default profile: clone allowed only without
        // CLONE_NEW* flags, valueTwo omitted because it is 0.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ"}]}]
        })))
        .unwrap();
        let clone = |flags: u64| verdict(&f, Data::x86_64(nr("clone"), [flags, 0, 0, 0, 0, 0]));
        assert_eq!(clone(libc::SIGCHLD as u64), ret::ALLOW);
        assert_eq!(clone(libc::CLONE_NEWNS as u64), ret::ERRNO | 1);
    }

    #[test]
    fn args_are_anded_and_rules_ored() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]}
            ]
        })))
        .unwrap();
        let socket = |a: u64, b: u64| verdict(&f, Data::x86_64(nr("socket"), [a, b, 0, 0, 0, 0]));
        assert_eq!(socket(1, 2), ret::ALLOW);
        assert_eq!(socket(1, 3), ret::ERRNO | 1);
        assert_eq!(socket(10, 99), ret::ALLOW);
        assert_eq!(socket(2, 2), ret::ERRNO | 1);
    }

    #[test]
    fn conditions_on_one_argument_are_ored_as_runc_does() {
        // Two conditions on arg 0 in one rule: runc and crun add each as a
        // rule of its own, so either one matching applies the action.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 0x20008, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap();
        let p = |a: u64, b: u64| verdict(&f, Data::x86_64(nr("personality"), [a, b, 0, 0, 0, 0]));
        assert_eq!(p(8, 0), ret::ERRNO | 1);
        assert_eq!(p(0x20008, 0), ret::ERRNO | 1);
        assert_eq!(p(1, 3), ret::ERRNO | 1);
        assert_eq!(p(1, 0), ret::ALLOW);
    }

    #[test]
    fn i386_multiplexers_follow_the_calls_they_carry() {
        // A 32-bit process can create a socket with socketcall(SYS_SOCKET)
        // as well as socket(2): a rule for socket covers both.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["socket", "send"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["shmget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 2, "value": 7, "op": "SCMP_CMP_EQ"}]}
            ]
        })))
        .unwrap();
        assert!(f.unknown.is_empty(), "{:?}", f.unknown);
        let i386 = |nr: u32, args: [u64; 6]| verdict(&f, Data::i386(nr, args));
        let socket = Arch::X86.syscall("socket").unwrap();
        assert_eq!(i386(socket, NO_ARGS), ret::ERRNO | 1);
        assert_eq!(i386(102, [1, 0, 0, 0, 0, 0]), ret::ERRNO | 1);
        assert_eq!(i386(102, [9, 0, 0, 0, 0, 0]), ret::ERRNO | 1);
        assert_eq!(i386(102, [3, 0, 0, 0, 0, 0]), ret::ALLOW);
        // ipc(SHMGET, ...): the call number replaces the test of argument
        // 0, the test of argument 2 stays on argument 2.
        assert_eq!(i386(117, [23, 0, 7, 0, 0, 0]), ret::ERRNO | 38);
        assert_eq!(i386(117, [23, 0, 8, 0, 0, 0]), ret::ALLOW);
        assert_eq!(i386(117, [21, 0, 7, 0, 0, 0]), ret::ALLOW);
        // x86-64 has no multiplexer: its 102 is getuid.
        assert_eq!(
            verdict(&f, Data::x86_64(102, [1, 0, 0, 0, 0, 0])),
            ret::ALLOW
        );
    }

    #[test]
    fn rules_that_hang_libseccomp_compile() {
        // libseccomp 2.5.4 loops forever adding the second rule (found by
        // the differential test): first match wins here.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["fstat"], "action": "SCMP_ACT_KILL", "args": [
                    {"index": 1, "value": 7, "op": "SCMP_CMP_LT"},
                    {"index": 2, "value": 5, "op": "SCMP_CMP_GT"}]},
                {"names": ["fstat"], "action": "SCMP_ACT_ALLOW", "args": [
                    {"index": 1, "value": 7, "op": "SCMP_CMP_LT"},
                    {"index": 2, "value": 2, "op": "SCMP_CMP_EQ"}]}
            ]
        })))
        .unwrap();
        let fstat = |a: u64, b: u64| verdict(&f, Data::x86_64(nr("fstat"), [0, a, b, 0, 0, 0]));
        assert_eq!(fstat(1, 6), ret::KILL_THREAD);
        assert_eq!(fstat(1, 2), ret::ALLOW);
        assert_eq!(fstat(8, 2), ret::ERRNO | 1);
    }

    #[test]
    fn rules_that_never_decide_are_dropped() {
        let cond = |v: u64| Cond {
            index: 0,
            op: LinuxSeccompOperator::ScmpCmpEq,
            value: v,
            value_two: 0,
        };
        let rule = |action: u32, conds: Vec<Cond>| Rule { action, conds };
        let mut chain = vec![
            rule(ret::ALLOW, vec![cond(1)]),
            rule(ret::LOG, vec![cond(2)]),
            rule(ret::ALLOW, vec![cond(3)]),
            rule(ret::ALLOW, vec![cond(4)]),
            rule(ret::ALLOW, vec![]),
            rule(ret::TRAP, vec![cond(5)]),
        ];
        prune(&mut chain);
        assert_eq!(
            chain,
            vec![
                rule(ret::ALLOW, vec![cond(1)]),
                rule(ret::LOG, vec![cond(2)]),
                rule(ret::ALLOW, vec![]),
            ]
        );
    }

    #[test]
    fn x32_compares_the_low_word_only() {
        // x32 is an ILP32 ABI: libseccomp (so runc and crun) compares its
        // arguments as 32-bit values, as on i386.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X32"],
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap();
        let x32 = Arch::X32.syscall("personality").unwrap();
        let p = |a: u64| verdict(&f, Data::x86_64(x32, [a, 0, 0, 0, 0, 0]));
        assert_eq!(p(8), ret::ERRNO | 1);
        assert_eq!(p(0x1_0000_0008), ret::ERRNO | 1);
        assert_eq!(p(9), ret::ALLOW);
        // x86-64 in the same filter still compares all 64 bits.
        let p = |a: u64| verdict(&f, Data::x86_64(nr("personality"), [a, 0, 0, 0, 0, 0]));
        assert_eq!(p(8), ret::ERRNO | 1);
        assert_eq!(p(0x1_0000_0008), ret::ALLOW);
    }

    #[test]
    fn i386_compares_the_low_word_only() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86"],
            "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
        })))
        .unwrap();
        let p = Arch::X86.syscall("personality").unwrap();
        assert_eq!(
            verdict(&f, Data::i386(p, [8, 0, 0, 0, 0, 0])),
            ret::ERRNO | 1
        );
        assert_eq!(
            verdict(&f, Data::i386(p, [0x1_0000_0008, 0, 0, 0, 0, 0])),
            ret::ERRNO | 1
        );
        assert_eq!(verdict(&f, Data::i386(p, [9, 0, 0, 0, 0, 0])), ret::ALLOW);
    }

    #[test]
    fn every_action() {
        for (action, want) in [
            ("SCMP_ACT_KILL", ret::KILL_THREAD),
            ("SCMP_ACT_KILL_THREAD", ret::KILL_THREAD),
            ("SCMP_ACT_KILL_PROCESS", ret::KILL_PROCESS),
            ("SCMP_ACT_TRAP", ret::TRAP),
            ("SCMP_ACT_ERRNO", ret::ERRNO | 1),
            ("SCMP_ACT_TRACE", ret::TRACE | 1),
            ("SCMP_ACT_LOG", ret::LOG),
        ] {
            let f = compile(&profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getppid"], "action": action}]
            })))
            .unwrap();
            assert_eq!(
                verdict(&f, Data::x86_64(nr("getppid"), NO_ARGS)),
                want,
                "{action}"
            );
        }
        let notify = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
        })))
        .unwrap();
        assert!(notify.has_listener());
        assert_eq!(
            verdict(&notify, Data::x86_64(nr("getppid"), NO_ARGS)),
            ret::USER_NOTIF
        );
    }

    #[test]
    fn wait_killable_recv_goes_with_a_listener_only() {
        let killable = |rules: serde_json::Value| {
            compile(&profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"], "syscalls": rules
            })))
            .unwrap()
            .flags
        };
        let with =
            killable(serde_json::json!([{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]));
        assert_eq!(with, flag::NEW_LISTENER | flag::WAIT_KILLABLE_RECV);
        // The kernel would refuse it alone (EINVAL).
        let without =
            killable(serde_json::json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]));
        assert_eq!(without, 0);
    }

    #[test]
    fn bad_profiles_name_the_entry() {
        let err = |j| compile(&profile(j)).unwrap_err().to_string();
        assert_eq!(
            err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]})),
            "linux.seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE"
        );
        assert!(err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}))
        .starts_with("linux.seccomp.syscalls[1].args[0].index: 6 is above 5"));
        assert!(err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}))
        .contains("listenerPath"));
        assert!(
            err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}))
                .contains("defaultErrnoRet")
        );
        // Unknown actions, operators and architectures are refused by the
        // config parser, with the field's path.
        assert!(serde_json::from_value::<LinuxSeccomp>(
            serde_json::json!({"defaultAction": "SCMP_ACT_BOGUS"})
        )
        .is_err());
    }

    #[test]
    fn unknown_names_are_skipped_and_reported() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["getppid", "not_a_syscall_yet"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert_eq!(f.unknown, vec!["not_a_syscall_yet".to_string()]);
        assert_eq!(
            verdict(&f, Data::x86_64(nr("getppid"), NO_ARGS)),
            ret::ALLOW
        );
        // Names of the kernel's newest syscalls are known (generated from
        // its own tables), and so are names of an architecture the profile
        // does not list or skiff does not filter: none is reported.
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["cachestat", "map_shadow_stack", "statmount", "listmount",
                "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules", "mseal",
                "socketcall", "pciconfig_read", "sysmips"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert!(f.unknown.is_empty(), "{:?}", f.unknown);
        assert_eq!(
            verdict(&f, Data::x86_64(nr("statmount"), NO_ARGS)),
            ret::ALLOW
        );
    }

    #[test]
    fn long_programs_keep_their_jumps() {
        // Hundreds of distinct conditional rules push targets far beyond
        // 255 instructions.
        let rules: Vec<serde_json::Value> = Arch::X86_64
            .syscalls()
            .take(300)
            .map(|(name, n)| {
                serde_json::json!({"names": [name], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 0, "value": n + 7, "op": "SCMP_CMP_EQ"}]})
            })
            .collect();
        let f = compile(&profile(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}),
        ))
        .unwrap();
        assert!(f.program.len() > 1000);
        for (name, n) in Arch::X86_64.syscalls().take(300) {
            let hit = u64::from(n) + 7;
            assert_eq!(
                verdict(&f, Data::x86_64(n, [hit, 0, 0, 0, 0, 0])),
                ret::ERRNO | 1,
                "{name}"
            );
            assert_eq!(
                verdict(&f, Data::x86_64(n, [hit + 1, 0, 0, 0, 0, 0])),
                ret::ALLOW,
                "{name}"
            );
        }
    }

    #[test]
    fn podman_default_profile() {
        let path = "/usr/share/containers/seccomp.json";
        let Ok(text) = std::fs::read_to_string(path) else {
            let why = format!("{path} missing (apt install golang-github-containers-common)");
            assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
            eprintln!("SKIPPED podman_default_profile: {why}");
            return;
        };
        let spec: LinuxSeccomp = serde_json::from_str(&text).unwrap();
        let f = compile(&spec).unwrap();
        assert!(f.program.len() < 4096);
        // Its names of other architectures' syscalls are no cause for a
        // warning.
        assert!(f.unknown.is_empty(), "{:?}", f.unknown);
        let allowed = [nr("read"), nr("getppid"), nr("clone3"), nr("execve")];
        for n in allowed {
            assert_eq!(verdict(&f, Data::x86_64(n, NO_ARGS)), ret::ALLOW);
        }
        // Not on the list: the default, ENOSYS (38) in this profile.
        assert_eq!(
            verdict(&f, Data::x86_64(nr("add_key"), NO_ARGS)),
            ret::ERRNO | 38
        );
        // The worst case depth of the search stays logarithmic.
        let worst = Arch::X86_64
            .syscalls()
            .map(|(_, n)| run(&f.program, &Data::x86_64(n, NO_ARGS)).1)
            .max()
            .unwrap();
        assert!(worst < 40, "{worst} instructions for one syscall");
    }
}
