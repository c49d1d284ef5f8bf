//! The device cgroup: `linux.resources.devices` plus runc's default allowed
//! devices, as v1 `devices.allow`/`devices.deny` writes or as a v2
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program. Rules apply in order and the
//! last one that matches an access decides, starting from "allow all";
//! a deny-all rule therefore makes everything before it irrelevant.

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

/// One device rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// b'a', b'c' or b'b'.
    pub kind: u8,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Bits: 1 mknod, 2 read, 4 write.
    pub access: u32,
}

const MKNOD: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;

fn access_bits(s: &str) -> u32 {
    s.chars().fold(0, |acc, c| {
        acc | match c {
            'm' => MKNOD,
            'r' => READ,
            'w' => WRITE,
            _ => 0,
        }
    })
}

fn access_text(bits: u32) -> String {
    let mut s = String::new();
    if bits & READ != 0 {
        s.push('r');
    }
    if bits & WRITE != 0 {
        s.push('w');
    }
    if bits & MKNOD != 0 {
        s.push('m');
    }
    s
}

impl Rule {
    fn new(allow: bool, kind: u8, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
        Rule {
            allow,
            kind,
            major,
            minor,
            access: access_bits(access),
        }
    }

    /// From a `linux.resources.devices` entry (absent fields are wildcards).
    pub fn from_spec(d: &LinuxDeviceCgroup) -> Rule {
        let kind = match d.typ() {
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => b'c',
            Some(LinuxDeviceType::B) => b'b',
            _ => b'a',
        };
        let num = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n as u32);
        Rule::new(
            d.allow(),
            kind,
            num(d.major()),
            num(d.minor()),
            d.access().as_deref().unwrap_or("rwm"),
        )
    }

    /// The kernel's v1 syntax: `c 1:3 rwm`.
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.kind as char,
            n(self.major),
            n(self.minor),
            access_text(self.access)
        )
    }
}

/// runc's devices every container may use (after the config's rules).
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
        Rule::new(true, b'c', Some(5), Some(1), "rwm"),
        Rule::new(true, b'c', Some(136), None, "rwm"),
        Rule::new(true, b'c', Some(5), Some(2), "rwm"),
        Rule::new(true, b'c', Some(10), Some(200), "rwm"),
    ]
}

/// `linux.resources` with an allow rule appended for each device of
/// `linux.devices`: a container may always use the devices its config
/// creates, even after a deny-all rule (runc does the same).
pub fn with_config_devices(res: &LinuxResources, devices: &[LinuxDevice]) -> LinuxResources {
    let Some(rules) = res.devices() else {
        return res.clone();
    };
    let mut rules = rules.clone();
    for d in devices {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true)
            .set_typ(Some(d.typ()))
            .set_major(Some(d.major()))
            .set_minor(Some(d.minor()))
            .set_access(Some("rwm".to_string()));
        rules.push(rule);
    }
    let mut res = res.clone();
    res.set_devices(Some(rules));
    res
}

/// The full rule list for a container, or `None` when the config says
/// nothing about devices (the cgroup is left as it is).
pub fn rules(spec: Option<&[LinuxDeviceCgroup]>) -> Option<Vec<Rule>> {
    let spec = spec?;
    let mut out: Vec<Rule> = spec.iter().map(Rule::from_spec).collect();
    out.extend(default_allowed());
    Some(out)
}

/// The v1 writes, in order: `(file, line)`. The cgroup starts by allowing
/// everything, so applying the rules one by one gives their meaning.
pub fn v1_writes(rules: &[Rule]) -> Vec<(&'static str, String)> {
    rules
        .iter()
        .map(|r| {
            (
                if r.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                },
                r.v1_line(),
            )
        })
        .collect()
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

/// The v2 program: the rules checked from last to first, the first match
/// deciding; no match allows (the cgroup's starting state). Registers:
/// r2 type, r3 access, r4 major, r5 minor (from `bpf_cgroup_dev_ctx`).
pub fn program(rules: &[Rule]) -> Vec<BpfInsn> {
    let mut p = vec![
        insn(BPF_LDX_W_MEM, 2, 1, 0, 0),        // r2 = access_type
        insn(BPF_ALU64_MOV_X, 3, 2, 0, 0),      // r3 = r2
        insn(BPF_ALU32_AND_K, 2, 0, 0, 0xffff), // r2 = device type
        insn(BPF_ALU32_RSH_K, 3, 0, 0, 16),     // r3 = access
        insn(BPF_LDX_W_MEM, 4, 1, 4, 0),        // r4 = major
        insn(BPF_LDX_W_MEM, 5, 1, 8, 0),        // r5 = minor
    ];
    for r in rules.iter().rev() {
        // Each test jumps to the next rule; offsets are patched once the
        // rule's length is known.
        let mut block: Vec<BpfInsn> = Vec::new();
        let mut to_next: Vec<usize> = Vec::new();
        let kind = match r.kind {
            b'c' => Some(2),
            b'b' => Some(1),
            _ => None,
        };
        if let Some(k) = kind {
            to_next.push(block.len());
            block.push(insn(BPF_JNE_K, 2, 0, 0, k));
        }
        // r6 = the requested access bits the rule speaks about.
        block.push(insn(BPF_ALU64_MOV_X, 6, 3, 0, 0));
        if r.allow {
            // Allowed only if every requested bit is in the rule.
            block.push(insn(BPF_ALU32_AND_K, 6, 0, 0, !(r.access as i32) & 7));
            to_next.push(block.len());
            block.push(insn(BPF_JNE_K, 6, 0, 0, 0));
        } else {
            // Denied if any requested bit is in the rule.
            block.push(insn(BPF_ALU32_AND_K, 6, 0, 0, r.access as i32));
            to_next.push(block.len());
            block.push(insn(BPF_JEQ_K, 6, 0, 0, 0));
        }
        if let Some(m) = r.major {
            to_next.push(block.len());
            block.push(insn(BPF_JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            to_next.push(block.len());
            block.push(insn(BPF_JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(BPF_ALU32_MOV_K, 0, 0, 0, i32::from(r.allow)));
        block.push(insn(BPF_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for i in to_next {
            block[i].off = (len - i - 1) as i16;
        }
        p.extend(block);
    }
    p.push(insn(BPF_ALU32_MOV_K, 0, 0, 0, 1));
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

    fn spec(json: serde_json::Value) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_value(json).unwrap()
    }

    const CHAR: u32 = 2;
    const BLOCK: u32 = 1;

    #[test]
    fn runc_default_config() {
        let r = rules(Some(&spec(
            serde_json::json!([{"allow": false, "access": "rwm"}]),
        )))
        .unwrap();
        assert_eq!(r[0].v1_line(), "a *:* rwm");
        let p = program(&r);
        assert_eq!(eval(&p, CHAR, READ | WRITE, 1, 3), 1, "/dev/null");
        assert_eq!(eval(&p, CHAR, READ, 136, 7), 1, "a pty");
        assert_eq!(eval(&p, CHAR, READ, 1, 11), 0, "/dev/kmsg");
        assert_eq!(eval(&p, BLOCK, READ, 8, 0), 0, "a disk");
        assert_eq!(eval(&p, BLOCK, MKNOD, 8, 0), 1, "mknod of anything");
        let w = v1_writes(&r);
        assert_eq!(w[0], ("devices.deny", "a *:* rwm".to_string()));
        assert_eq!(w[1], ("devices.allow", "c *:* m".to_string()));
    }

    #[test]
    fn later_rules_win_and_access_is_partial() {
        let r = rules(Some(&spec(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"},
            {"allow": true, "type": "b", "major": 8, "access": "rw"},
            {"allow": false, "type": "b", "major": 8, "minor": 1, "access": "w"}
        ]))))
        .unwrap();
        let p = program(&r);
        assert_eq!(eval(&p, CHAR, READ, 1, 11), 1);
        assert_eq!(
            eval(&p, CHAR, READ | WRITE, 1, 11),
            0,
            "write was not allowed"
        );
        assert_eq!(eval(&p, BLOCK, READ | WRITE, 8, 0), 1);
        assert_eq!(eval(&p, BLOCK, READ, 8, 1), 1);
        assert_eq!(eval(&p, BLOCK, WRITE, 8, 1), 0, "the later deny wins");
    }

    #[test]
    fn no_rules_means_untouched() {
        assert!(rules(None).is_none());
        let p = program(&[]);
        assert_eq!(eval(&p, BLOCK, READ, 8, 0), 1);
    }
}
