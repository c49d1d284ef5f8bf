//! Resource usage read back from the container's cgroup, in the JSON shape
//! `runc events` prints (so tools that parse runc's output parse ours).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

fn zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Memory {
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Pids {
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Everything `events --stats` reports.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// A cgroup file as a number ("max" and missing files are 0).
pub fn read_u64(dir: &Path, file: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A flat-keyed file (`memory.stat`, `cpu.stat`): key -> value.
pub fn read_keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Parses v1 `blkio.throttle.*` lines ("8:0 Read 4096").
pub fn parse_v1_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let dev = f.next()?;
            let op = f.next()?;
            let value = f.next()?.parse().ok()?;
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value,
            })
        })
        .collect()
}

/// Parses v2 `io.stat` ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") into
/// runc's bytes and ios entries.
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let entry = |op: &str| BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            };
            match k {
                "rbytes" => bytes.push(entry("Read")),
                "wbytes" => bytes.push(entry("Write")),
                "rios" => ios.push(entry("Read")),
                "wios" => ios.push(entry("Write")),
                _ => {}
            }
        }
    }
    (bytes, ios)
}

/// Hugepage sizes the host has, as cgroup file names use them ("2MB").
pub fn hugepage_sizes() -> Vec<String> {
    std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let kb: u64 = name
                        .strip_prefix("hugepages-")?
                        .strip_suffix("kB")?
                        .parse()
                        .ok()?;
                    Some(match kb {
                        k if k >= 1 << 20 => format!("{}GB", k >> 20),
                        k if k >= 1 << 10 => format!("{}MB", k >> 10),
                        k => format!("{k}KB"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_formats() {
        let v1 = parse_v1_blkio("8:0 Read 4096\n8:0 Write 512\nTotal 4608\n");
        assert_eq!(v1.len(), 2);
        assert_eq!(
            (v1[0].major, v1[0].minor, v1[0].op.as_str(), v1[0].value),
            (8, 0, "Read", 4096)
        );
        let (bytes, ios) =
            parse_io_stat("254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(bytes.iter().map(|e| e.value).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(
            ios.iter().map(|e| e.op.as_str()).collect::<Vec<_>>(),
            ["Read", "Write"]
        );
    }

    #[test]
    fn shape_matches_runc() {
        let s = Stats::default();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["memory"]["usage"]["limit"], 0);
        assert!(v["cpu"]["usage"].get("kernel").is_some());
        assert!(v["blkio"].as_object().unwrap().is_empty());
    }
}
