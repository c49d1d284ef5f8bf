//! Differential fuzzing of the compiler against libseccomp, the library
//! runc and crun compile profiles with. Random OCI profiles (architectures,
//! all seven operators, every action and errno value, default actions,
//! several rules per syscall and several conditions per rule) are compiled
//! by skiff and, through runc's mapping of the spec onto libseccomp's API,
//! by libseccomp. Both programs run in the same interpreter on many
//! syscalls (numbers, architectures, arguments) chosen to hit the edges of
//! each profile, and must return the same action every time, except where
//! the profile itself (read from the spec and runc's mapping, without BPF)
//! shows libseccomp's program to be the wrong one: those are counted and
//! shown (see `check`).
//!
//! `SKIFF_FUZZ_CASES` sets the number of profiles (default 1000, a few
//! seconds); a failure prints the profile, the input and the verdicts.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use oci_spec::runtime::LinuxSeccomp;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::arch::{Arch, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::compile::{compile, ret};
use crate::interp::{holds, run, Data};
use crate::libseccomp::{helper_or_skip, ArgCmp, Failure, Helper, RuleAdded};

const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
/// libseccomp's token for x32.
const SCMP_ARCH_X32: u32 = 0x4000_003e;

const DEFAULT_CASES: u32 = 1000;
/// Syscalls tried per profile.
const INPUTS: usize = 300;

const ACTIONS: [&str; 9] = [
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_LOG",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_NOTIFY",
];

/// The operators in the order of libseccomp's `enum scmp_compare` (1..=7).
const OPERATORS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// Names that differ between the architectures (only on one, other
/// numbers, x32's own entries, i386's multiplexed socket and ipc calls)
/// and a few common ones, so that rules often share a syscall.
const NAMES: [&str; 22] = [
    "getppid",
    "read",
    "personality",
    "clone",
    "socket",
    "connect",
    "sendmsg",
    "socketcall",
    "ipc",
    "shmget",
    "semop",
    "arch_prctl",
    "rt_sigaction",
    "ioctl",
    "open",
    "mmap2",
    "uselib",
    "time",
    "newfstatat",
    "fstatat64",
    "statmount",
    "_llseek",
];

const ARCHES: [(&str, u32); 4] = [
    ("SCMP_ARCH_X86_64", AUDIT_ARCH_X86_64),
    ("SCMP_ARCH_X86", AUDIT_ARCH_I386),
    ("SCMP_ARCH_X32", SCMP_ARCH_X32),
    ("SCMP_ARCH_AARCH64", AUDIT_ARCH_AARCH64),
];

/// runc's mapping of an action and its errnoRet onto libseccomp's value
/// (libcontainer/seccomp: EPERM when errnoRet is absent, kill is
/// kill-thread), written here apart from the compiler's.
fn runc_action(action: &str, errno: Option<u64>) -> u32 {
    let data = errno.unwrap_or(libc::EPERM as u64) as u32 & 0xffff;
    match action {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0,
        "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_ERRNO" => 0x0005_0000 | data,
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | data,
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        "SCMP_ACT_ALLOW" => 0x7fff_0000,
        "SCMP_ACT_NOTIFY" => 0x7fc0_0000,
        _ => unreachable!("{action}"),
    }
}

/// libseccomp's token for an architecture.
fn scmp_arch(a: Arch) -> u32 {
    match a {
        Arch::X32 => SCMP_ARCH_X32,
        _ => a.audit(),
    }
}

/// libseccomp's `enum scmp_compare`.
fn scmp_compare(op: &str) -> u32 {
    1 + OPERATORS.iter().position(|o| *o == op).expect("operator") as u32
}

fn takes_errno(action: &str) -> bool {
    action == "SCMP_ACT_ERRNO" || action == "SCMP_ACT_TRACE"
}

/// Values where comparisons change their answer: small numbers, the
/// 32-bit boundary, words with only the high half set, anything.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..4,
        Just(0xffff_ffff),
        Just(0x1_0000_0000),
        (0u64..3).prop_map(|x| x << 32 | 2),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn errno_for(action: &'static str) -> BoxedStrategy<Option<u64>> {
    if takes_errno(action) {
        // libseccomp refuses ERRNO data from 4095 on (runc then fails);
        // the kernel clamps it there.
        prop_oneof![
            2 => Just(None),
            1 => Just(Some(38)),
            4 => (0u64..4095).prop_map(Some),
            1 => (4095u64..70_000).prop_map(Some),
        ]
        .boxed()
    } else {
        Just(None).boxed()
    }
}

fn arg() -> impl Strategy<Value = Value> {
    (
        0u32..6,
        select(&OPERATORS[..]),
        value(),
        prop::option::of(value()),
    )
        .prop_map(|(index, op, value, two)| match two {
            Some(two) => json!({"index": index, "op": op, "value": value, "valueTwo": two}),
            None => json!({"index": index, "op": op, "value": value}),
        })
}

fn name() -> impl Strategy<Value = String> {
    let table = crate::tables::SYSCALLS;
    prop_oneof![
        3 => select(&NAMES[..]).prop_map(str::to_string),
        1 => (0..table.len()).prop_map(move |i| table[i].0.to_string()),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(name(), 1..3),
        select(&ACTIONS[..]).prop_flat_map(|a| (Just(a), errno_for(a))),
        prop::collection::vec(arg(), 0..4),
    )
        .prop_map(|(names, (action, errno), args)| {
            let mut r = json!({"names": names, "action": action});
            if let Some(e) = errno {
                r["errnoRet"] = json!(e);
            }
            if !args.is_empty() {
                r["args"] = json!(args);
            }
            r
        })
}

/// A profile (the default is never NOTIFY: runc refuses that) and a seed
/// for the inputs.
fn case() -> impl Strategy<Value = (Value, bool, u64)> {
    (
        select(&ACTIONS[..8]).prop_flat_map(|a| (Just(a), errno_for(a))),
        prop::collection::btree_set(0..ARCHES.len(), 0..4),
        prop::collection::vec(rule(), 0..10),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|((default, errno), arches, rules, optimize, seed)| {
            let mut p = json!({
                "defaultAction": default,
                "architectures": arches.iter().map(|i| ARCHES[*i].0).collect::<Vec<_>>(),
                "listenerPath": "/run/agent.sock",
                "syscalls": rules,
            });
            if let Some(e) = errno {
                p["defaultErrnoRet"] = json!(e);
            }
            (p, optimize, seed)
        })
}

/// The profile as runc hands it to libseccomp: rules whose action is the
/// default are skipped; conditions on one rule are ANDed unless two name
/// the same argument, then each is a rule of its own. The names
/// libseccomp does not know are noted; skiff compiles the profile without
/// them.
fn libseccomp_program(h: &mut Helper, p: &Value, optimize: bool) -> Result<Lib, Failure> {
    let str_of = |v: &Value| v.as_str().expect("string").to_string();
    let default = runc_action(&str_of(&p["defaultAction"]), p["defaultErrnoRet"].as_u64());
    let arches: Vec<u32> = p["architectures"]
        .as_array()
        .expect("architectures")
        .iter()
        .map(|a| ARCHES.iter().find(|(n, _)| *n == a).expect("arch").1)
        .collect();
    let rules = p["syscalls"].as_array().expect("syscalls");
    h.filter(default, optimize && !rules.is_empty(), &arches)?;
    let mut lib = Lib {
        default,
        ..Lib::default()
    };
    lib.arches.push(Arch::NATIVE);
    lib.arches.extend(
        arches
            .iter()
            .filter_map(|t| Arch::ALL.into_iter().find(|a| scmp_arch(*a) == *t)),
    );
    for r in rules {
        let action = runc_action(&str_of(&r["action"]), r["errnoRet"].as_u64());
        if action == default {
            continue;
        }
        let conds: Vec<ArgCmp> = r["args"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|a| ArgCmp {
                arg: a["index"].as_u64().expect("index") as u32,
                op: scmp_compare(a["op"].as_str().expect("op")),
                a: a["value"].as_u64().expect("value"),
                b: a["valueTwo"].as_u64().unwrap_or(0),
            })
            .collect();
        let shared_arg = (0..6).any(|i| conds.iter().filter(|c| c.arg == i).count() > 1);
        let groups: Vec<&[ArgCmp]> = if shared_arg {
            conds.chunks(1).collect()
        } else {
            vec![&conds[..]]
        };
        for name in r["names"].as_array().expect("names") {
            let name = name.as_str().expect("name");
            for g in &groups {
                match h.rule(action, name, g)? {
                    RuleAdded::Ok => lib.rules.push(Added {
                        name: name.to_string(),
                        action,
                        conds: g.to_vec(),
                    }),
                    RuleAdded::Unknown => {
                        lib.unknown.insert(name.to_string());
                    }
                }
            }
        }
    }
    lib.program = h.export()?;
    Ok(lib)
}

/// What libseccomp was given and made.
#[derive(Default)]
struct Lib {
    program: Vec<libc::sock_filter>,
    /// The default action.
    default: u32,
    /// The architectures filtered.
    arches: Vec<Arch>,
    /// The rules as added, in order.
    rules: Vec<Added>,
    /// The names it does not know.
    unknown: BTreeSet<String>,
}

struct Added {
    name: String,
    action: u32,
    conds: Vec<ArgCmp>,
}

/// What the profile means for one syscall, from the spec and runc's
/// mapping alone (no BPF): the arbiter when the two programs disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    Action(u32),
    /// Rules of different actions match. libseccomp guarantees no order
    /// between overlapping rules of one syscall (its maintainers in
    /// libseccomp#148; its tree often tests a later rule, or an
    /// unconditional one, first) and the spec defines none: skiff applies
    /// the first matching entry. Not compared.
    Ambiguous,
}

impl Lib {
    /// The meaning of `d`: libseccomp's bad-arch kill for architectures
    /// not filtered (x32 numbers under x86-64, except -1), else the action
    /// of the matching rules, else the default. On i386 a rule for a
    /// socket or IPC call also matches its multiplexer with the call
    /// number in argument 0, its other conditions on their own indexes.
    fn meaning(&self, d: &Data) -> Meaning {
        let arch = match d.arch {
            AUDIT_ARCH_I386 => Arch::X86,
            AUDIT_ARCH_X86_64 if d.nr >= X32_SYSCALL_BIT && d.nr != u32::MAX => Arch::X32,
            AUDIT_ARCH_X86_64 => Arch::X86_64,
            _ => return Meaning::Action(ret::KILL_THREAD),
        };
        if !self.arches.contains(&arch) {
            return Meaning::Action(ret::KILL_THREAD);
        }
        let low = |v: u64| if arch.is_32bit() { v & 0xffff_ffff } else { v };
        let holds = |c: &ArgCmp| {
            let op = OPERATORS[c.op as usize - 1];
            holds(op, low(d.args[c.arg as usize]), low(c.a), low(c.b))
        };
        let actions: BTreeSet<u32> = self
            .rules
            .iter()
            .filter(|r| {
                let direct = arch.syscall(&r.name) == Some(d.nr) && r.conds.iter().all(holds);
                let multiplexed = arch.multiplexed(&r.name).is_some_and(|(mux, call)| {
                    mux == d.nr
                        && low(d.args[0]) == call
                        && r.conds.iter().filter(|c| c.arg != 0).all(holds)
                });
                direct || multiplexed
            })
            .map(|r| r.action)
            .collect();
        match actions.len() {
            0 => Meaning::Action(self.default),
            1 => Meaning::Action(*actions.first().expect("one")),
            _ => Meaning::Ambiguous,
        }
    }
}

/// A small deterministic generator for the inputs of one case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// Syscalls aimed at the profile's edges: the numbers of its names on
/// every architecture and their neighbours, i386's multiplexers, the x32
/// boundary, -1; its condition values, off by one, with the other word
/// flipped, masked; and random ones.
fn inputs(p: &Value, seed: u64) -> Vec<Data> {
    let mut nrs: Vec<u32> = vec![0, 102, 117, X32_SYSCALL_BIT - 1, X32_SYSCALL_BIT, u32::MAX];
    let mut vals: Vec<u64> = vec![0, 1, 0xffff_ffff, 0x1_0000_0000, u64::MAX];
    for r in p["syscalls"].as_array().expect("syscalls") {
        for n in r["names"].as_array().expect("names") {
            let n = n.as_str().expect("name");
            for a in Arch::ALL {
                if let Some(nr) = a.syscall(n) {
                    nrs.extend([nr, nr.wrapping_sub(1), nr + 1]);
                }
            }
            if let Some((_, call)) = Arch::X86.multiplexed(n) {
                vals.extend([call, call + 1]);
            }
        }
        for a in r["args"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let v = a["value"].as_u64().expect("value");
            let two = a["valueTwo"].as_u64().unwrap_or(0);
            vals.extend([
                v,
                v.wrapping_add(1),
                v.wrapping_sub(1),
                v ^ 0xffff_ffff_0000_0000,
                two,
                two | !v,
                two ^ 1,
            ]);
        }
    }
    let listed = |audit: u32| {
        ARCHES
            .iter()
            .any(|(n, a)| *a == audit && p["architectures"].to_string().contains(n))
    };
    let mut rng = Rng(seed | 1);
    (0..INPUTS)
        .map(|_| {
            // A foreign architecture the profile lists cannot occur on an
            // x86 host (skiff ignores it, libseccomp filters it).
            let mut arch = rng.pick(&[AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64]);
            if arch == AUDIT_ARCH_AARCH64 && listed(arch) {
                arch = AUDIT_ARCH_X86_64;
            }
            let nr = if rng.next().is_multiple_of(8) {
                rng.next() as u32 % 600
            } else {
                rng.pick(&nrs)
            };
            let mut args = [0u64; 6];
            for a in &mut args {
                *a = if rng.next().is_multiple_of(8) {
                    rng.next()
                } else {
                    rng.pick(&vals)
                };
            }
            Data { nr, arch, args }
        })
        .collect()
}

fn action_name(v: u32) -> String {
    let name = match v & 0xffff_0000 {
        ret::KILL_PROCESS => "KILL_PROCESS",
        ret::KILL_THREAD => "KILL_THREAD",
        ret::TRAP => "TRAP",
        ret::ERRNO => "ERRNO",
        ret::USER_NOTIF => "NOTIFY",
        ret::TRACE => "TRACE",
        ret::LOG => "LOG",
        ret::ALLOW => "ALLOW",
        _ => "?",
    };
    format!("{name}({})", v & 0xffff)
}

/// Drops the names libseccomp does not know (the tables test covers them).
fn without(p: &Value, unknown: &BTreeSet<String>) -> Value {
    let mut p = p.clone();
    let rules = p["syscalls"].as_array_mut().expect("syscalls");
    for r in rules.iter_mut() {
        let names = r["names"].as_array_mut().expect("names");
        names.retain(|n| !unknown.contains(n.as_str().expect("name")));
    }
    rules.retain(|r| !r["names"].as_array().expect("names").is_empty());
    p
}

/// Counts of one run.
#[derive(Default)]
struct Tally {
    profiles: Cell<u32>,
    refused: Cell<u32>,
    /// Profiles libseccomp never finished (the first is shown).
    hung: Cell<u32>,
    hung_example: RefCell<Option<String>>,
    syscalls: Cell<u64>,
    ambiguous: Cell<u64>,
    /// Syscalls where libseccomp's program contradicts the profile.
    libseccomp_wrong: Cell<u64>,
    /// The first such case, shown in the summary.
    wrong_example: RefCell<Option<String>>,
}

fn bump<T: Copy + std::ops::Add<Output = T> + From<u8>>(c: &Cell<T>) {
    c.set(c.get() + T::from(1));
}

/// One profile: both programs on every input. skiff must give the
/// profile's meaning; where libseccomp does not, its program is wrong
/// (libseccomp 2.5.4 has two such bugs, both found by this test: with x32
/// listed, a rule for a syscall x32 lacks plus a conditional rule make it
/// drop the load of the syscall number, so the x86-64 rules compare the
/// architecture word and never match; and two range conditions on one
/// 64-bit argument make it test the low word against the high word's
/// value). Those are counted and one is shown, they fail nothing; so are
/// profiles libseccomp never finishes (it loops in seccomp_rule_add on
/// `fstat` with `[a1 < 7, a2 > 5] -> KILL` then `[a1 < 7, a2 == 2] ->
/// ALLOW`: runc and crun hang on such a profile).
fn check(
    h: &RefCell<Helper>,
    p: &Value,
    optimize: bool,
    seed: u64,
    t: &Tally,
) -> Result<(), TestCaseError> {
    let got = libseccomp_program(&mut h.borrow_mut(), p, optimize);
    let lib = match got {
        Ok(lib) => lib,
        Err(Failure::Refused(_)) => {
            bump(&t.refused);
            return Ok(());
        }
        Err(Failure::NoAnswer) => {
            bump(&t.hung);
            t.hung_example
                .borrow_mut()
                .get_or_insert_with(|| serde_json::to_string(p).expect("json"));
            *h.borrow_mut() = Helper::start().map_err(TestCaseError::fail)?;
            return Ok(());
        }
    };
    let p = without(p, &lib.unknown);
    let spec: LinuxSeccomp = serde_json::from_value(p.clone()).expect("a valid profile");
    let ours = compile(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let show = |d: &Data, a: u32, b: u32| {
        format!(
            "nr {:#x} arch {:#x} args {:x?}: skiff {}, libseccomp {} (optimize {optimize})\n{}",
            d.nr,
            d.arch,
            d.args,
            action_name(a),
            action_name(b),
            serde_json::to_string_pretty(&p).expect("json"),
        )
    };
    for d in inputs(&p, seed) {
        let (a, b) = (run(&ours.program, &d).0, run(&lib.program, &d).0);
        let Meaning::Action(want) = lib.meaning(&d) else {
            bump(&t.ambiguous);
            continue;
        };
        bump(&t.syscalls);
        if a != want {
            return Err(TestCaseError::fail(format!(
                "{}\nthe profile means {}",
                show(&d, a, b),
                action_name(want)
            )));
        }
        if b != want {
            bump(&t.libseccomp_wrong);
            t.wrong_example
                .borrow_mut()
                .get_or_insert_with(|| show(&d, a, b));
        }
    }
    bump(&t.profiles);
    Ok(())
}

#[test]
fn compiler_agrees_with_libseccomp() {
    let helper = RefCell::new(helper_or_skip!());
    let cases = std::env::var("SKIFF_FUZZ_CASES")
        .ok()
        .map(|c| c.parse().expect("SKIFF_FUZZ_CASES: a number"))
        .unwrap_or(DEFAULT_CASES);
    let t = Tally::default();
    let mut runner = TestRunner::new(Config {
        cases,
        // A failure is kept as a unit test of its own, not in a file.
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&case(), |(p, optimize, seed)| {
        check(&helper, &p, optimize, seed, &t)
    });
    let example = |e: &RefCell<Option<String>>| {
        e.borrow()
            .as_ref()
            .map(|e| format!(", for example {e}"))
            .unwrap_or_default()
    };
    eprintln!(
        "{} profiles compared on {} syscalls ({} with rules of different actions matching \
         skipped), {} refused by libseccomp, in {:.1?}\n\
         libseccomp never finished {} profiles{}\n\
         libseccomp's program was wrong on {} syscalls{}",
        t.profiles.get(),
        t.syscalls.get(),
        t.ambiguous.get(),
        t.refused.get(),
        started.elapsed(),
        t.hung.get(),
        example(&t.hung_example),
        t.libseccomp_wrong.get(),
        example(&t.wrong_example),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // Not passed by refusing or skipping everything, and libseccomp's
    // bugs stay rare: a rate beyond that means the test's reading of the
    // profile, not libseccomp, is wrong.
    assert!(
        t.profiles.get() >= cases * 3 / 4,
        "too few profiles compared"
    );
    assert!(
        t.libseccomp_wrong.get() * 50 < t.syscalls.get(),
        "libseccomp disagrees with the profile too often"
    );
}
