//! Generates the syscall tables (name -> number for x86-64, i386 and x32)
//! from the kernel's own tables in `syscalls/`, into `$OUT_DIR/tables.rs`.
//!
//! A build script rather than a checked-in generated file: the `.tbl` files
//! are the one source of truth, so the Rust tables can never drift from
//! them or be edited by hand, and taking a newer kernel's syscalls is a copy
//! of files. It reads a few local files of a few hundred lines (offline,
//! about a millisecond) and needs no crate of its own.
//!
//! The tables of the other architectures libseccomp knows (`syscalls/
//! other/`) give only names: a profile that names a syscall x86 lacks
//! (`pciconfig_read`, `sysmips`, ...) is skipped quietly, as runc and crun
//! do; only names no architecture has are warned about.
//!
//! To update, copy from a kernel tree `arch/x86/entry/syscalls/
//! syscall_64.tbl` and `syscall_32.tbl` into `syscalls/`, and into
//! `syscalls/other/`: `scripts/syscall.tbl` (as `generic.tbl`: arm64,
//! riscv, loongarch), `arch/arm/tools/syscall.tbl`, ARM's private calls
//! from `arch/arm/include/uapi/asm/unistd.h` (as `arm-unistd.h`) and the
//! `arch/{m68k,mips,parisc,powerpc,s390,sh}/kernel/syscalls/*.tbl`; put the
//! kernel's version in `syscalls/KERNEL_VERSION`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// One row of a `.tbl` file: `<number> <abi> <name> [<entry point> ...]`.
struct Row {
    line: usize,
    nr: String,
    abi: String,
    name: String,
}

fn rows(path: &Path) -> Vec<Row> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [nr, abi, name, ..] = fields[..] else {
            panic!("{}:{}: fewer than three fields", path.display(), i + 1);
        };
        out.push(Row {
            line: i + 1,
            nr: nr.to_string(),
            abi: abi.to_string(),
            name: name.to_string(),
        });
    }
    out
}

/// ARM's private calls, outside its table: `#define __ARM_NR_<name> ...`.
fn private_calls(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("#define __ARM_NR_"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "BASE")
        .map(str::to_string)
        .collect()
}

/// One table: the rows whose ABI column is in `abis`.
fn table(path: &Path, abis: &[&str]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for row in rows(path) {
        if !abis.contains(&row.abi.as_str()) {
            continue;
        }
        let at = format!("{}:{}", path.display(), row.line);
        let nr: u32 = row
            .nr
            .parse()
            .unwrap_or_else(|e| panic!("{at}: number {:?}: {e}", row.nr));
        if let Some(old) = out.insert(row.name.clone(), nr) {
            panic!("{at}: {} is both {old} and {nr}", row.name);
        }
    }
    out
}

fn main() {
    let dir = Path::new("syscalls");
    let tbl_64 = dir.join("syscall_64.tbl");
    let tbl_32 = dir.join("syscall_32.tbl");
    let version = dir.join("KERNEL_VERSION");
    let other = dir.join("other");
    for p in [&tbl_64, &tbl_32, &version, &other] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let kernel = std::fs::read_to_string(&version).expect("reading syscalls/KERNEL_VERSION");
    let kernel = kernel.trim();

    // x32 shares the 64-bit table: its "common" rows plus its own "x32"
    // rows (512-547), which replace the "64"-only rows of the same names.
    // The x32 bit is added at lookup (arch.rs).
    let tables = [
        ("X86_64", table(&tbl_64, &["common", "64"])),
        ("X86", table(&tbl_32, &["i386"])),
        ("X32", table(&tbl_64, &["common", "x32"])),
    ];

    let mut files: Vec<_> = std::fs::read_dir(&other)
        .expect("reading syscalls/other")
        .map(|e| e.expect("reading syscalls/other").path())
        .collect();
    files.sort();
    let mut elsewhere = BTreeSet::new();
    for path in files {
        println!("cargo:rerun-if-changed={}", path.display());
        if path.extension().is_some_and(|e| e == "h") {
            elsewhere.extend(private_calls(&path));
        } else {
            elsewhere.extend(rows(&path).into_iter().map(|r| r.name));
        }
    }
    // The "reservedNN" and "unusedNN" rows hold numbers, not syscalls.
    let placeholder = |n: &str| {
        ["reserved", "unused"].iter().any(|p| {
            n.strip_prefix(p)
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    elsewhere.retain(|n| !placeholder(n) && !tables.iter().any(|(_, t)| t.contains_key(n)));

    // One row per name with its number on each architecture, so that a
    // profile's name is looked up once, not once per architecture.
    let mut merged: BTreeMap<&str, [u32; 3]> = BTreeMap::new();
    for (column, (_, entries)) in tables.iter().enumerate() {
        for (name, nr) in entries {
            assert!(*nr != u32::MAX, "{name}: number {nr} is the absent marker");
            merged.entry(name).or_insert([u32::MAX; 3])[column] = *nr;
        }
    }

    let mut rs = String::new();
    writeln!(rs, "/// The kernel release the tables were taken from.").unwrap();
    writeln!(rs, "pub const KERNEL: &str = {kernel:?};").unwrap();
    let columns: Vec<&str> = tables.iter().map(|(arch, _)| *arch).collect();
    writeln!(
        rs,
        "/// Syscalls ({}) sorted by name, with their numbers on {} (`ABSENT`: none).",
        merged.len(),
        columns.join(", ")
    )
    .unwrap();
    writeln!(rs, "pub static SYSCALLS: &[(&str, [u32; 3])] = &[").unwrap();
    for (name, nrs) in &merged {
        writeln!(rs, "    ({name:?}, {nrs:?}),").unwrap();
    }
    writeln!(rs, "];").unwrap();
    writeln!(
        rs,
        "/// Syscalls only other architectures have ({}), sorted.",
        elsewhere.len()
    )
    .unwrap();
    writeln!(rs, "pub static ELSEWHERE: &[&str] = &[").unwrap();
    for name in &elsewhere {
        writeln!(rs, "    {name:?},").unwrap();
    }
    writeln!(rs, "];").unwrap();
    let out = Path::new(&std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("tables.rs");
    std::fs::write(&out, rs).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
