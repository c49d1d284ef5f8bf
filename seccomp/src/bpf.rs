//! A small classic-BPF assembler: instructions with symbolic labels, laid
//! out so that every conditional jump fits its 8-bit offsets (a jump that
//! does not is rewritten through 32-bit `ja` trampolines).

/// A jump target.
pub type Label = usize;

/// Conditional jump kinds (compare A with a constant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Gt,
    Ge,
}

/// A symbolic instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insn {
    /// A = 32-bit word at this offset of `seccomp_data`.
    Load(u32),
    /// A &= k.
    And(u32),
    /// Return k.
    Ret(u32),
    /// if A <cmp> k goto t else goto f.
    Jump {
        cmp: Cmp,
        k: u32,
        t: Label,
        f: Label,
    },
    /// goto l.
    Goto(Label),
    /// Marks the position of a label.
    Mark(Label),
}

const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_ALU: u16 = 0x04;
const BPF_AND: u16 = 0x50;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;
const BPF_JMP: u16 = 0x05;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;

fn raw(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A program under construction.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: usize,
}

impl Asm {
    /// A new, unplaced label.
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }

    pub fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    pub fn mark(&mut self, l: Label) {
        self.insns.push(Insn::Mark(l));
    }

    /// Lays out the program. Conditional jumps are short unless a target is
    /// beyond 255 instructions, in which case they become
    /// `jcc k, 0, 1; ja t; ja f`. Layout repeats until stable (expanding
    /// only ever grows distances, so it terminates).
    pub fn assemble(&self) -> Vec<libc::sock_filter> {
        let mut long = vec![false; self.insns.len()];
        loop {
            let (positions, size) = self.layout(&long);
            // Decide against this layout only; the next pass re-lays out.
            let mut grow = Vec::new();
            let mut pc = 0usize;
            for (i, insn) in self.insns.iter().enumerate() {
                if let Insn::Jump { t, f, .. } = insn {
                    let far = |l: &Label| positions[*l] - (pc + 1) > 255;
                    if !long[i] && (far(t) || far(f)) {
                        grow.push(i);
                    }
                }
                pc += Self::size(insn, long[i]);
            }
            if grow.is_empty() {
                return self.emit(&long, &positions, size);
            }
            for i in grow {
                long[i] = true;
            }
        }
    }

    fn size(insn: &Insn, long: bool) -> usize {
        match insn {
            Insn::Mark(_) => 0,
            Insn::Jump { .. } if long => 3,
            _ => 1,
        }
    }

    fn layout(&self, long: &[bool]) -> (Vec<usize>, usize) {
        let mut positions = vec![0usize; self.labels];
        let mut pc = 0;
        for (i, insn) in self.insns.iter().enumerate() {
            if let Insn::Mark(l) = insn {
                positions[*l] = pc;
            }
            pc += Self::size(insn, long[i]);
        }
        (positions, pc)
    }

    fn emit(&self, long: &[bool], positions: &[usize], size: usize) -> Vec<libc::sock_filter> {
        let mut out = Vec::with_capacity(size);
        for (i, insn) in self.insns.iter().enumerate() {
            let pc = out.len();
            match *insn {
                Insn::Mark(_) => {}
                Insn::Load(off) => out.push(raw(BPF_LD | BPF_W | BPF_ABS, 0, 0, off)),
                Insn::And(k) => out.push(raw(BPF_ALU | BPF_AND | BPF_K, 0, 0, k)),
                Insn::Ret(k) => out.push(raw(BPF_RET | BPF_K, 0, 0, k)),
                Insn::Goto(l) => out.push(raw(
                    BPF_JMP | BPF_JA,
                    0,
                    0,
                    (positions[l] - (pc + 1)) as u32,
                )),
                Insn::Jump { cmp, k, t, f } => {
                    let code = BPF_JMP
                        | BPF_K
                        | match cmp {
                            Cmp::Eq => BPF_JEQ,
                            Cmp::Gt => BPF_JGT,
                            Cmp::Ge => BPF_JGE,
                        };
                    if long[i] {
                        out.push(raw(code, 0, 1, k));
                        out.push(raw(
                            BPF_JMP | BPF_JA,
                            0,
                            0,
                            (positions[t] - (pc + 2)) as u32,
                        ));
                        out.push(raw(
                            BPF_JMP | BPF_JA,
                            0,
                            0,
                            (positions[f] - (pc + 3)) as u32,
                        ));
                    } else {
                        let jt = (positions[t] - (pc + 1)) as u8;
                        let jf = (positions[f] - (pc + 1)) as u8;
                        out.push(raw(code, jt, jf, k));
                    }
                }
            }
        }
        out
    }
}
