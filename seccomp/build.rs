//! Generates the syscall tables (name -> number for x86-64, i386 and x32)
//! from the kernel's own tables in `syscalls/`, into `$OUT_DIR/tables.rs`.
//!
//! A build script rather than a checked-in generated file: the `.tbl` files
//! are the one source of truth, so the Rust tables can never drift from
//! them or be edited by hand, and taking a newer kernel's syscalls is a copy
//! of two files. It reads two local files of a few hundred lines (offline,
//! well under a millisecond) and needs no crate of its own.
//!
//! To update, copy `arch/x86/entry/syscalls/syscall_64.tbl` and
//! `syscall_32.tbl` from a kernel tree into `syscalls/` and put its version
//! in `syscalls/KERNEL_VERSION`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One table: the `.tbl` rows whose ABI column is in `abis`.
fn table(path: &Path, abis: &[&str]) -> BTreeMap<String, u32> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // <number> <abi> <name> [<entry point> ...]
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [nr, abi, name, ..] = fields[..] else {
            panic!("{}:{}: fewer than three fields", path.display(), i + 1);
        };
        if !abis.contains(&abi) {
            continue;
        }
        let nr: u32 = nr
            .parse()
            .unwrap_or_else(|e| panic!("{}:{}: number {nr:?}: {e}", path.display(), i + 1));
        if let Some(old) = out.insert(name.to_string(), nr) {
            panic!(
                "{}:{}: {name} is both {old} and {nr}",
                path.display(),
                i + 1
            );
        }
    }
    out
}

fn main() {
    let dir = Path::new("syscalls");
    let tbl_64 = dir.join("syscall_64.tbl");
    let tbl_32 = dir.join("syscall_32.tbl");
    let version = dir.join("KERNEL_VERSION");
    for p in [&tbl_64, &tbl_32, &version] {
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

    let mut rs = String::new();
    writeln!(rs, "/// The kernel release the tables were taken from.").unwrap();
    writeln!(rs, "pub const KERNEL: &str = {kernel:?};").unwrap();
    for (arch, entries) in &tables {
        writeln!(
            rs,
            "/// {arch} syscalls ({}), sorted by name.",
            entries.len()
        )
        .unwrap();
        writeln!(rs, "pub static {arch}: &[(&str, u32)] = &[").unwrap();
        for (name, nr) in entries {
            writeln!(rs, "    ({name:?}, {nr}),").unwrap();
        }
        writeln!(rs, "];").unwrap();
    }
    let out = Path::new(&std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("tables.rs");
    std::fs::write(&out, rs).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
