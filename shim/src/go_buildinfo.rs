//! Which containerd runs the shim, told by the Go build info of the binary
//! it names with `-publish-binary` (itself): containerd 2's main module is
//! `github.com/containerd/containerd/v2`. containerd 1.7 and 2.0-2.2 call
//! `start` alike (the same flags and environment, MAX_SHIM_VERSION=2 from
//! both), yet only 2.x reads the reply that selects the task API v3, and
//! 1.7 refuses it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const SECTION: &[u8] = b".go.buildinfo";
/// The main module's line in the build info of containerd 2's daemon.
const CONTAINERD2_PATH: &[u8] = b"path\tgithub.com/containerd/containerd/v2/";
/// Bounds on what is read from a binary that might not be Go's at all.
const MAX_SECTIONS: usize = 1024;
const MAX_SECTION_BYTES: u64 = 64 << 10;

/// Whether `binary` is containerd 2's daemon. Anything unreadable or
/// unexpected says no: the caller then replies in the form every
/// containerd reads.
pub fn is_containerd2(binary: &Path) -> bool {
    section(binary).is_some_and(|info| {
        info.windows(CONTAINERD2_PATH.len())
            .any(|w| w == CONTAINERD2_PATH)
    })
}

fn read_at(file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).ok()?];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The `.go.buildinfo` section of a 64-bit little-endian ELF binary (the
/// only kind containerd ships for the architecture the shim builds for).
fn section(binary: &Path) -> Option<Vec<u8>> {
    let file = File::open(binary).ok()?;
    let header = read_at(&file, 0, 64)?;
    // Class 2: 64-bit; data 1: little endian.
    if &header[..4] != ELF_MAGIC || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let table = u64_at(&header, 0x28)?;
    let entry = usize::from(u16_at(&header, 0x3a)?);
    let count = usize::from(u16_at(&header, 0x3c)?);
    let names_index = usize::from(u16_at(&header, 0x3e)?);
    if entry < 64 || count > MAX_SECTIONS || names_index >= count {
        return None;
    }
    let headers = read_at(&file, table, (entry * count) as u64)?;
    // A section header's name offset, file offset and size.
    let field = |i: usize| -> Option<(usize, u64, u64)> {
        let h = &headers[i * entry..];
        Some((u32_at(h, 0)? as usize, u64_at(h, 24)?, u64_at(h, 32)?))
    };
    let bounded = |(name, offset, size): (usize, u64, u64)| {
        (size <= MAX_SECTION_BYTES).then_some((name, offset, size))
    };
    let (_, names_offset, names_size) = bounded(field(names_index)?)?;
    let names = read_at(&file, names_offset, names_size)?;
    (0..count).find_map(|i| {
        let (name, offset, size) = bounded(field(i)?)?;
        let end = name.checked_add(SECTION.len())?;
        // The name must end there: NUL-terminated.
        (names.get(name..end)? == SECTION && names.get(end) == Some(&0))
            .then(|| read_at(&file, offset, size))?
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 file: a header, a section-name table and one
    /// section `name` holding `content`.
    pub(crate) fn elf(name: &str, content: &[u8]) -> Vec<u8> {
        let mut names = b"\0.shstrtab\0".to_vec();
        let name_at = names.len() as u32;
        names.extend_from_slice(name.as_bytes());
        names.push(0);
        let names_at = 64u64;
        let content_at = names_at + names.len() as u64;
        let table_at = content_at + content.len() as u64;
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(ELF_MAGIC);
        out[4] = 2;
        out[5] = 1;
        out[0x28..0x30].copy_from_slice(&table_at.to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&names);
        out.extend_from_slice(content);
        let header = |name: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h
        };
        out.extend(header(0, 0, 0));
        out.extend(header(1, names_at, names.len() as u64));
        out.extend(header(name_at, content_at, content.len() as u64));
        out
    }

    pub(crate) const V2_INFO: &[u8] =
        b"\xff Go buildinf:\x08\x02\0\0\x08go1.24.4\x80\x01path\tgithub.com/containerd/containerd/v2/cmd/containerd\nbuild\t-trimpath=true\n";
    const V1_INFO: &[u8] =
        b"\xff Go buildinf:\x08\x02\0\0\x08go1.19.8\x70path\tgithub.com/containerd/containerd/cmd/containerd\nbuild\t-trimpath=true\n";

    #[test]
    fn containerd2_is_told_by_its_main_module() {
        let dir = std::env::temp_dir().join(format!("skiff-shim-goinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        assert!(is_containerd2(&file("v2", &elf(".go.buildinfo", V2_INFO))));
        assert!(!is_containerd2(&file("v1", &elf(".go.buildinfo", V1_INFO))));
        // The module line in another section, or in a section whose name
        // only starts the same, does not count.
        assert!(!is_containerd2(&file("rodata", &elf(".rodata", V2_INFO))));
        assert!(!is_containerd2(&file(
            "longer",
            &elf(".go.buildinfo2", V2_INFO)
        )));
        // Truncated, not ELF, missing: no.
        let full = elf(".go.buildinfo", V2_INFO);
        assert!(!is_containerd2(&file("cut", &full[..full.len() - 10])));
        assert!(!is_containerd2(&file("script", b"#!/bin/sh\nexit 0\n")));
        assert!(!is_containerd2(&dir.join("missing")));
        assert!(!is_containerd2(Path::new("")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
