//! The device cgroup: which devices the container may create and open.
//!
//! `linux.resources.devices` applies in order from "deny every device",
//! and runc's default devices follow it; the devices of `linux.devices`
//! get no rule of their own (as with runc and crun). The result is kept the
//! way the v1 kernel keeps it, and as runc computes it for both cgroup
//! versions: a default (allow or deny everything) and exceptions to it. A
//! rule for every type resets the default; a `b` or `c` rule adds an
//! exception, or takes access away from the exceptions it covers. A rule
//! that would take access away from part of a wider exception is refused:
//! the v1 kernel would silently ignore it.
//!
//! v1 gets the result as `devices.deny`/`devices.allow` writes, v2 as a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program that decides each access the way
//! the v1 kernel does.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

/// Why the device rules cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum DeviceRuleError {
    #[error(
        "linux.resources.devices[{index}].type: {typ:?} is not a device cgroup type (a, b or c)"
    )]
    Type { index: usize, typ: String },
    #[error("linux.resources.devices[{index}].access: {access:?} may hold only r, w and m")]
    Access { index: usize, access: String },
    #[error(
        "{origin}: {verb} {line:?} would cut into the wider rule {wider:?}, which the device \
         cgroup cannot split (it would ignore the rule)"
    )]
    Split {
        origin: String,
        verb: &'static str,
        line: String,
        wider: String,
    },
}

const MKNOD: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;

fn access_bits(s: &str) -> Option<u32> {
    s.chars().try_fold(0, |acc, c| {
        Some(
            acc | match c {
                'm' => MKNOD,
                'r' => READ,
                'w' => WRITE,
                _ => return None,
            },
        )
    })
}

pub fn access_text(bits: u32) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// Devices of one type, by major and minor number (`None`: any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Devices {
    /// b'c' or b'b'.
    pub kind: u8,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

impl Devices {
    /// True when every device of `other` is one of these.
    fn covers(&self, other: &Devices) -> bool {
        let num = |mine: Option<u32>, theirs: Option<u32>| mine.is_none() || mine == theirs;
        self.kind == other.kind && num(self.major, other.major) && num(self.minor, other.minor)
    }

    /// True when some device is in both.
    fn meets(&self, other: &Devices) -> bool {
        let num = |a: Option<u32>, b: Option<u32>| a.is_none() || b.is_none() || a == b;
        self.kind == other.kind && num(self.major, other.major) && num(self.minor, other.minor)
    }
}

/// One rule: every device (`devices` None) or some of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub devices: Option<Devices>,
    /// Bits: 1 mknod, 2 read, 4 write.
    pub access: u32,
}

impl Rule {
    fn new(allow: bool, kind: u8, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
        Rule {
            allow,
            devices: Some(Devices { kind, major, minor }),
            access: access_bits(access).unwrap_or(0),
        }
    }

    /// From entry `index` of `linux.resources.devices`: absent numbers are
    /// wildcards, an absent type is every type and an absent access is
    /// `rwm`.
    pub fn from_spec(index: usize, d: &LinuxDeviceCgroup) -> Result<Rule, DeviceRuleError> {
        let kind = match d.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::C) => Some(b'c'),
            Some(LinuxDeviceType::B) => Some(b'b'),
            // runc refuses them too: the kernel knows no such rule type.
            Some(other) => {
                return Err(DeviceRuleError::Type {
                    index,
                    typ: other.as_str().to_string(),
                })
            }
        };
        let text = d.access().as_deref().unwrap_or("rwm");
        let access = access_bits(text).ok_or_else(|| DeviceRuleError::Access {
            index,
            access: text.to_string(),
        })?;
        let num = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n as u32);
        Ok(Rule {
            allow: d.allow(),
            devices: kind.map(|kind| Devices {
                kind,
                major: num(d.major()),
                minor: num(d.minor()),
            }),
            access,
        })
    }

    /// The kernel's v1 syntax: `c 1:3 rwm`, `a *:* rwm`.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        match self.devices {
            Some(d) => format!(
                "{} {}:{} {}",
                d.kind as char,
                n(d.major),
                n(d.minor),
                access_text(self.access)
            ),
            None => "a *:* rwm".to_string(),
        }
    }
}

/// runc's devices every container may use, after the config's rules.
pub fn default_allowed() -> Vec<Rule> {
    vec![
        Rule::new(true, b'c', None, None, "m"),
        Rule::new(true, b'b', None, None, "m"),
        Rule::new(true, b'c', Some(1), Some(3), "rwm"),
        Rule::new(true, b'c', Some(1), Some(5), "rwm"),
        Rule::new(true, b'c', Some(1), Some(7), "rwm"),
        Rule::new(true, b'c', Some(5), Some(0), "rwm"),
        Rule::new(true, b'c', Some(1), Some(9), "rwm"),
        Rule::new(true, b'c', Some(1), Some(8), "rwm"),
        Rule::new(true, b'c', Some(136), None, "rwm"),
        Rule::new(true, b'c', Some(5), Some(2), "rwm"),
        Rule::new(true, b'c', Some(10), Some(200), "rwm"),
    ]
}

/// The resources to apply at create: the device rules are always there
/// (none in the config still means runc's deny-all and default devices),
/// where `update` leaves them out to keep the cgroup's.
pub fn at_create(res: Option<&LinuxResources>) -> LinuxResources {
    let mut res = res.cloned().unwrap_or_default();
    if res.devices().is_none() {
        res.set_devices(Some(Vec::new()));
    }
    res
}

/// The device cgroup's state: what every device gets, and the exceptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub allow_by_default: bool,
    /// Devices that get the opposite of the default, for these access bits.
    pub exceptions: Vec<(Devices, u32)>,
}

impl Policy {
    /// The policy of a container's rules, or `None` when they are absent
    /// (the cgroup keeps what it has).
    pub fn of(spec: Option<&[LinuxDeviceCgroup]>) -> Result<Option<Policy>, DeviceRuleError> {
        let Some(spec) = spec else {
            return Ok(None);
        };
        let mut policy = Policy {
            allow_by_default: false,
            exceptions: Vec::new(),
        };
        for (index, d) in spec.iter().enumerate() {
            let rule = Rule::from_spec(index, d)?;
            policy.apply(&rule, || format!("linux.resources.devices[{index}]"))?;
        }
        for rule in default_allowed() {
            policy.apply(&rule, || {
                "linux.resources.devices (runc's default devices, added after them)".to_string()
            })?;
        }
        Ok(Some(policy))
    }

    fn apply(&mut self, rule: &Rule, origin: impl Fn() -> String) -> Result<(), DeviceRuleError> {
        let Some(devices) = rule.devices else {
            self.allow_by_default = rule.allow;
            self.exceptions.clear();
            return Ok(());
        };
        if rule.allow != self.allow_by_default {
            match self.exceptions.iter_mut().find(|(d, _)| *d == devices) {
                Some((_, access)) => *access |= rule.access,
                None => self.exceptions.push((devices, rule.access)),
            }
            return Ok(());
        }
        // Taking access away: from every exception the rule covers; one
        // it only cuts into cannot be narrowed.
        let wider = self
            .exceptions
            .iter()
            .find(|(d, a)| d.meets(&devices) && !devices.covers(d) && a & rule.access != 0);
        if let Some((d, a)) = wider {
            return Err(DeviceRuleError::Split {
                origin: origin(),
                verb: if rule.allow { "allowing" } else { "denying" },
                line: rule.v1_line(),
                wider: Rule {
                    allow: !rule.allow,
                    devices: Some(*d),
                    access: *a,
                }
                .v1_line(),
            });
        }
        for (d, access) in &mut self.exceptions {
            if devices.covers(d) {
                *access &= !rule.access;
            }
        }
        self.exceptions.retain(|(_, access)| *access != 0);
        Ok(())
    }

    /// The v1 writes, in order: `(file, line)`. The first resets the
    /// cgroup to the default, dropping whatever exceptions it had.
    pub fn v1_writes(&self) -> Vec<(&'static str, String)> {
        let file = |allow: bool| {
            if allow {
                "devices.allow"
            } else {
                "devices.deny"
            }
        };
        let reset = Rule {
            allow: self.allow_by_default,
            devices: None,
            access: MKNOD | READ | WRITE,
        };
        let mut out = vec![(file(reset.allow), reset.v1_line())];
        for (devices, access) in &self.exceptions {
            let rule = Rule {
                allow: !self.allow_by_default,
                devices: Some(*devices),
                access: *access,
            };
            out.push((file(rule.allow), rule.v1_line()));
        }
        out
    }
}

/// One eBPF instruction.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const BPF_LDX_W_MEM: u8 = 0x61;
const BPF_ALU64_MOV_X: u8 = 0xbf;
const BPF_ALU32_AND_K: u8 = 0x54;
const BPF_ALU32_RSH_K: u8 = 0x74;
const BPF_ALU32_MOV_K: u8 = 0xb4;
const BPF_JNE_K: u8 = 0x55;
const BPF_JEQ_K: u8 = 0x15;
const BPF_EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The v2 program: each exception checked as the v1 kernel checks it
/// (an allowing one must grant every bit asked for; a denying one refuses
/// if it names any), then the default. Registers: r2 type, r3 access,
/// r4 major, r5 minor (from `bpf_cgroup_dev_ctx`).
pub fn program(policy: &Policy) -> Vec<BpfInsn> {
    let mut p = vec![
        insn(BPF_LDX_W_MEM, 2, 1, 0, 0),        // r2 = access_type
        insn(BPF_ALU64_MOV_X, 3, 2, 0, 0),      // r3 = r2
        insn(BPF_ALU32_AND_K, 2, 0, 0, 0xffff), // r2 = device type
        insn(BPF_ALU32_RSH_K, 3, 0, 0, 16),     // r3 = access
        insn(BPF_LDX_W_MEM, 4, 1, 4, 0),        // r4 = major
        insn(BPF_LDX_W_MEM, 5, 1, 8, 0),        // r5 = minor
    ];
    let exception_allows = !policy.allow_by_default;
    for (devices, access) in &policy.exceptions {
        // Each test jumps to the next exception; offsets are patched once
        // the block's length is known.
        let mut block: Vec<BpfInsn> = Vec::new();
        let mut to_next: Vec<usize> = Vec::new();
        let kind = if devices.kind == b'b' { 1 } else { 2 };
        to_next.push(block.len());
        block.push(insn(BPF_JNE_K, 2, 0, 0, kind));
        if let Some(m) = devices.major {
            to_next.push(block.len());
            block.push(insn(BPF_JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = devices.minor {
            to_next.push(block.len());
            block.push(insn(BPF_JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(BPF_ALU64_MOV_X, 6, 3, 0, 0)); // r6 = access asked
        if exception_allows {
            block.push(insn(BPF_ALU32_AND_K, 6, 0, 0, !(*access as i32) & 7));
            to_next.push(block.len());
            block.push(insn(BPF_JNE_K, 6, 0, 0, 0));
        } else {
            block.push(insn(BPF_ALU32_AND_K, 6, 0, 0, *access as i32));
            to_next.push(block.len());
            block.push(insn(BPF_JEQ_K, 6, 0, 0, 0));
        }
        block.push(insn(BPF_ALU32_MOV_K, 0, 0, 0, i32::from(exception_allows)));
        block.push(insn(BPF_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for i in to_next {
            block[i].off = (len - i - 1) as i16;
        }
        p.extend(block);
    }
    p.push(insn(
        BPF_ALU32_MOV_K,
        0,
        0,
        0,
        i32::from(policy.allow_by_default),
    ));
    p.push(insn(BPF_EXIT, 0, 0, 0, 0));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program the way the kernel would for one access.
    fn eval(p: &[BpfInsn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                BPF_LDX_W_MEM => r[dst] = u64::from(ctx[i.off as usize / 4]),
                BPF_ALU64_MOV_X => r[dst] = r[src],
                BPF_ALU32_AND_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                BPF_ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                BPF_ALU32_MOV_K => r[dst] = u64::from(i.imm as u32),
                BPF_JNE_K => {
                    if r[dst] != i.imm as u32 as u64 {
                        pc += i.off as usize;
                    }
                }
                BPF_JEQ_K => {
                    if r[dst] == i.imm as u32 as u64 {
                        pc += i.off as usize;
                    }
                }
                BPF_EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    fn policy(json: serde_json::Value) -> Result<Policy, DeviceRuleError> {
        let spec: Vec<LinuxDeviceCgroup> = serde_json::from_value(json).unwrap();
        Ok(Policy::of(Some(&spec))?.unwrap())
    }

    const CHAR: u32 = 2;
    const BLOCK: u32 = 1;
    const KMSG: (u32, u32) = (1, 11);

    fn kmsg(p: &Policy, access: u32) -> u64 {
        eval(&program(p), CHAR, access, KMSG.0, KMSG.1)
    }

    #[test]
    fn runc_default_config() {
        let p = policy(serde_json::json!([{"allow": false, "access": "rwm"}])).unwrap();
        let w = p.v1_writes();
        assert_eq!(w[0], ("devices.deny", "a *:* rwm".to_string()));
        assert_eq!(w[1], ("devices.allow", "c *:* m".to_string()));
        // Exactly runc 1.1's list (its devices.list in such a container).
        let mut lines: Vec<&str> = w[1..].iter().map(|(_, l)| l.as_str()).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "b *:* m",
                "c *:* m",
                "c 10:200 rwm",
                "c 136:* rwm",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:2 rwm"
            ]
        );
        let p = program(&p);
        assert_eq!(eval(&p, CHAR, READ | WRITE, 1, 3), 1, "/dev/null");
        assert_eq!(eval(&p, CHAR, READ, 136, 7), 1, "a pty");
        assert_eq!(eval(&p, CHAR, READ, 1, 11), 0, "/dev/kmsg");
        assert_eq!(eval(&p, CHAR, READ, 5, 1), 0, "/dev/console (a bound pty)");
        assert_eq!(eval(&p, BLOCK, READ, 8, 0), 0, "a disk");
        assert_eq!(eval(&p, BLOCK, MKNOD, 8, 0), 1, "mknod of anything");
    }

    #[test]
    fn no_rules_is_deny_all_at_create_and_untouched_on_update() {
        let res = at_create(None);
        let p = Policy::of(res.devices().as_deref()).unwrap().unwrap();
        assert_eq!(p, policy(serde_json::json!([])).unwrap());
        assert!(!p.allow_by_default);
        assert_eq!(kmsg(&p, WRITE), 0);
        assert!(Policy::of(None).unwrap().is_none());
    }

    #[test]
    fn deny_allow_and_reallow_in_order() {
        let deny = serde_json::json!({"allow": false, "access": "rwm"});
        let allow = serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"});
        let deny_w = serde_json::json!({"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"});
        let p = policy(serde_json::json!([deny, allow])).unwrap();
        assert_eq!(kmsg(&p, READ | WRITE), 1);
        assert!(p
            .v1_writes()
            .contains(&("devices.allow", "c 1:11 rw".into())));
        let p = policy(serde_json::json!([deny, allow, deny_w])).unwrap();
        assert_eq!(kmsg(&p, READ), 1);
        assert_eq!(kmsg(&p, WRITE), 0, "the later deny takes write away");
        assert!(p
            .v1_writes()
            .contains(&("devices.allow", "c 1:11 r".into())));
        let reallow =
            serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"});
        let p = policy(serde_json::json!([deny, allow, deny_w, reallow])).unwrap();
        assert_eq!(kmsg(&p, READ | WRITE), 1, "allowed again");
        // A deny-all after them starts over.
        let p = policy(serde_json::json!([deny, allow, deny])).unwrap();
        assert_eq!(kmsg(&p, READ), 0);
    }

    #[test]
    fn allow_all_then_deny() {
        let p = policy(serde_json::json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"},
            {"allow": false, "type": "b", "access": "rw"}
        ]))
        .unwrap();
        assert_eq!(kmsg(&p, READ), 1);
        assert_eq!(kmsg(&p, READ | WRITE), 0, "one denied bit is enough");
        let prog = program(&p);
        assert_eq!(eval(&prog, BLOCK, READ, 8, 0), 0);
        assert_eq!(eval(&prog, BLOCK, MKNOD, 8, 0), 1);
        assert_eq!(eval(&prog, CHAR, WRITE, 1, 3), 1);
        let w = p.v1_writes();
        assert_eq!(w[0], ("devices.allow", "a *:* rwm".to_string()));
        assert!(w.contains(&("devices.deny", "c 1:11 w".into())));
        assert!(w.contains(&("devices.deny", "b *:* rw".into())));
    }

    #[test]
    fn a_wide_deny_narrows_what_it_covers() {
        let p = policy(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"},
            {"allow": false, "type": "c", "major": 1, "access": "w"}
        ]))
        .unwrap();
        assert_eq!(kmsg(&p, READ), 1);
        assert_eq!(kmsg(&p, WRITE), 0);
        // runc's /dev/null rule comes after, and stands.
        assert_eq!(eval(&program(&p), CHAR, WRITE, 1, 3), 1);
    }

    #[test]
    fn cutting_into_a_wider_rule_is_refused() {
        let err = policy(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "access": "rw"},
            {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"}
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("linux.resources.devices[2]: denying \"c 1:11 w\"")
                && err.contains("\"c 1:* rw\""),
            "{err}"
        );
        // runc's default /dev/null rule cannot reopen a denied wildcard.
        let err = policy(serde_json::json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "access": "w"}
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("runc's default devices"), "{err}");
        // Disjoint access does not cut.
        policy(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "access": "r"},
            {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "w"}
        ]))
        .unwrap();
    }

    #[test]
    fn bad_rules_name_the_entry() {
        let err = policy(serde_json::json!([{"allow": true, "type": "u", "major": 1}]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("linux.resources.devices[0].type: \"u\""),
            "{err}"
        );
        let err = policy(serde_json::json!([{"allow": true}, {"allow": true, "access": "rx"}]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("linux.resources.devices[1].access: \"rx\""),
            "{err}"
        );
    }

    #[test]
    fn access_needs_one_exception_granting_all() {
        // As the v1 kernel: read from one rule and write from another do
        // not add up to read-write.
        let p = policy(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "access": "r"},
            {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}
        ]))
        .unwrap();
        assert_eq!(kmsg(&p, READ), 1);
        assert_eq!(kmsg(&p, WRITE), 1);
        assert_eq!(kmsg(&p, READ | WRITE), 0);
    }
}
