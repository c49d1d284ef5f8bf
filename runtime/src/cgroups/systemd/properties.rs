//! Unit properties: the ones every container scope gets, `linux.resources`
//! as systemd's resource-control settings (converted as runc converts
//! them), and `org.systemd.property.*` annotations passed through.
//! The resources are read off the same cgroup v2 writes the file backend
//! makes, so the unit and the cgroup files can never disagree on a value.

use std::collections::HashMap;

use oci_spec::runtime::LinuxResources;

use super::gvariant;
use super::unit::Unit;
use crate::cgroups::devices::{Devices, Policy};
use crate::cgroups::resources::{self, ResourceError, Write};
use crate::dbus::Value;

/// One unit property.
pub type Property = (String, Value);

fn prop(name: &str, v: Value) -> Property {
    (name.to_string(), v)
}

/// The `a(sv)` array systemd's methods take.
pub fn to_array(props: &[Property]) -> Value {
    Value::Array(
        "(sv)".into(),
        props
            .iter()
            .map(|(n, v)| {
                Value::Struct(vec![
                    Value::Str(n.clone()),
                    Value::Variant(Box::new(v.clone())),
                ])
            })
            .collect(),
    )
}

/// What every container unit carries: where it lives, who is in it, and
/// accounting for each controller whether or not a limit is set (as runc
/// does; stats need it).
pub fn base(unit: &Unit, id: &str, pid: Option<u32>) -> Vec<Property> {
    let mut out = vec![prop(
        "Description",
        Value::Str(format!("skiff container {id}")),
    )];
    if unit.is_slice() {
        out.push(prop("Wants", Value::strings([unit.slice.as_str()])));
    } else {
        out.push(prop("Slice", Value::Str(unit.slice.clone())));
        out.push(prop("Delegate", Value::Bool(true)));
        if let Some(pid) = pid {
            out.push(prop(
                "PIDs",
                Value::Array("u".into(), vec![Value::U32(pid)]),
            ));
        }
    }
    for accounting in [
        "MemoryAccounting",
        "CPUAccounting",
        "IOAccounting",
        "TasksAccounting",
    ] {
        out.push(prop(accounting, Value::Bool(true)));
    }
    out.push(prop("DefaultDependencies", Value::Bool(false)));
    out
}

/// systemd's "infinity" for byte, task and time limits.
const INFINITY: u64 = u64::MAX;
const DEFAULT_PERIOD: u64 = 100_000;

fn limit(value: &str, w: &Write) -> Result<u64, ResourceError> {
    if value == "max" {
        return Ok(INFINITY);
    }
    value.trim().parse().map_err(|_| ResourceError {
        field: w.field,
        reason: format!(
            "{value:?} is not a number or \"max\" (for systemd's {})",
            w.file
        ),
    })
}

/// A cpuset list (`0-3,7`) as systemd's CPU/NUMA-node bitmask: byte 0
/// holds 0-7, lowest bit first.
pub fn cpuset_bits(list: &str, field: &'static str) -> Result<Vec<u8>, ResourceError> {
    let bad = || ResourceError {
        field,
        reason: format!("{list:?} is not a list like 0-3,7"),
    };
    let mut bytes = Vec::new();
    for part in list.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
            None => (part.trim().parse(), part.trim().parse()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            return Err(bad());
        };
        // 8192 CPUs is the kernel's own maximum.
        if lo > hi || hi >= 8192 {
            return Err(bad());
        }
        for n in lo..=hi {
            if bytes.len() <= n / 8 {
                bytes.resize(n / 8 + 1, 0);
            }
            bytes[n / 8] |= 1 << (n % 8);
        }
    }
    Ok(bytes)
}

fn bytes(v: Vec<u8>) -> Value {
    Value::Array("y".into(), v.into_iter().map(Value::Byte).collect())
}

/// `(path, value)` pairs, systemd's per-device settings (`a(st)`).
fn per_device(entries: Vec<(String, u64)>) -> Value {
    Value::Array(
        "(st)".into(),
        entries
            .into_iter()
            .map(|(p, v)| Value::Struct(vec![Value::Str(p), Value::U64(v)]))
            .collect(),
    )
}

/// runc's CPUQuotaPerSecUSec: the quota per second of CPU time, rounded
/// up to a whole percent, since systemd keeps it as a percentage.
pub fn quota_per_sec(quota: Option<u64>, period: u64) -> u64 {
    match quota {
        Some(q) if period > 0 => {
            let per_sec = q * 1_000_000 / period;
            per_sec.div_ceil(10_000) * 10_000
        }
        _ => INFINITY,
    }
}

/// The unit properties for the cgroup v2 writes of `res`. Writes systemd
/// has no setting for (hugetlb, rdma, cpu.idle, burst, unknown unified
/// keys) have none: the file backend writes them after systemd is done.
pub fn resources(res: &LinuxResources) -> Result<Vec<Property>, ResourceError> {
    let mut out = Vec::new();
    let mut io_device_weight = Vec::new();
    for w in resources::v2(res)? {
        let (file, value) = match &w.alt {
            // The BFQ weight is in blkio's scale; systemd takes io.weight's.
            Some((alt_file, alt_value)) => (alt_file.as_str(), alt_value.as_str()),
            None => (w.file.as_str(), w.value.as_str()),
        };
        let named = |name: &str| -> Option<&'static str> {
            Some(match name {
                "memory.max" => "MemoryMax",
                "memory.low" => "MemoryLow",
                "memory.high" => "MemoryHigh",
                "memory.min" => "MemoryMin",
                "memory.swap.max" => "MemorySwapMax",
                "pids.max" => "TasksMax",
                _ => return None,
            })
        };
        if let Some(name) = named(file) {
            out.push(prop(name, Value::U64(limit(value, &w)?)));
            continue;
        }
        match file {
            "cpu.weight" => out.push(prop("CPUWeight", Value::U64(limit(value, &w)?))),
            "cpu.max" => {
                let mut parts = value.split_whitespace();
                let quota = parts.next().unwrap_or("max");
                let period = match parts.next() {
                    Some(p) => limit(p, &w)?,
                    None => DEFAULT_PERIOD,
                };
                let quota = (quota != "max").then(|| limit(quota, &w)).transpose()?;
                out.push(prop("CPUQuotaPeriodUSec", Value::U64(period)));
                out.push(prop(
                    "CPUQuotaPerSecUSec",
                    Value::U64(quota_per_sec(quota, period)),
                ));
            }
            "cpuset.cpus" => out.push(prop("AllowedCPUs", bytes(cpuset_bits(value, w.field)?))),
            "cpuset.mems" => out.push(prop(
                "AllowedMemoryNodes",
                bytes(cpuset_bits(value, w.field)?),
            )),
            "io.weight" => match value.strip_prefix("default ") {
                Some(weight) => out.push(prop("IOWeight", Value::U64(limit(weight, &w)?))),
                None => {
                    if let Some((dev, weight)) = value.split_once(' ') {
                        io_device_weight.push((format!("/dev/block/{dev}"), limit(weight, &w)?));
                    }
                }
            },
            "io.max" => {
                let Some((dev, setting)) = value.split_once(' ') else {
                    continue;
                };
                let Some((key, rate)) = setting.split_once('=') else {
                    continue;
                };
                let name = match key {
                    "rbps" => "IOReadBandwidthMax",
                    "wbps" => "IOWriteBandwidthMax",
                    "riops" => "IOReadIOPSMax",
                    "wiops" => "IOWriteIOPSMax",
                    _ => continue,
                };
                out.push(prop(
                    name,
                    per_device(vec![(format!("/dev/block/{dev}"), limit(rate, &w)?)]),
                ));
            }
            _ => {}
        }
    }
    if !io_device_weight.is_empty() {
        out.push(prop("IODeviceWeight", per_device(io_device_weight)));
    }
    Ok(out)
}

/// systemd's spelling of a set of devices in `DeviceAllow=`.
fn device_path(d: &Devices) -> String {
    let class = if d.kind == b'b' { "block" } else { "char" };
    match (d.major, d.minor) {
        (Some(major), Some(minor)) => format!("/dev/{class}/{major}:{minor}"),
        (Some(major), None) => format!("{class}-{major}"),
        // systemd has no rule for one minor of every major: the wider
        // class rule keeps its filter a superset of skiff's.
        (None, _) => format!("{class}-*"),
    }
}

/// The device rules as `DevicePolicy=`/`DeviceAllow=`. systemd's filter
/// and skiff's both apply (a device must pass each), so systemd is given
/// a superset of what the rules allow and skiff's own filter, attached
/// after systemd's, decides: an allow-list becomes `strict` with the same
/// entries; a deny-list, which systemd cannot express, leaves systemd's
/// filter off (`auto` with no entries).
pub fn devices(policy: &Policy) -> Vec<Property> {
    if policy.allow_by_default {
        return vec![
            prop("DevicePolicy", Value::Str("auto".into())),
            prop("DeviceAllow", Value::Array("(ss)".into(), vec![])),
        ];
    }
    let entries = policy
        .exceptions
        .iter()
        .map(|(d, access)| {
            Value::Struct(vec![
                Value::Str(device_path(d)),
                Value::Str(crate::cgroups::devices::access_text(*access)),
            ])
        })
        .collect();
    vec![
        prop("DevicePolicy", Value::Str("strict".into())),
        prop("DeviceAllow", Value::Array("(ss)".into(), entries)),
    ]
}

/// The annotation prefix that passes a property to the unit.
pub const ANNOTATION_PREFIX: &str = "org.systemd.property.";

/// `org.systemd.property.NAME` annotations, with runc's rules: NAME is at
/// least three ASCII letters, the value is in GVariant text format, and a
/// NAME ending in `Sec` after a lowercase letter is taken in seconds and
/// passed as `...USec`.
pub fn annotations(all: &HashMap<String, String>) -> Result<Vec<Property>, ResourceError> {
    let mut keys: Vec<&String> = all
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let bad = |reason: String| ResourceError {
            field: "annotations",
            reason: format!("{key}: {reason}"),
        };
        let name = &key[ANNOTATION_PREFIX.len()..];
        if name.len() < 3 || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(bad(
                "a systemd property name is at least three letters, and only letters".into(),
            ));
        }
        let value =
            gvariant::parse(&all[key]).map_err(|e| bad(format!("value {:?}: {e}", all[key])))?;
        let seconds = name
            .strip_suffix("Sec")
            .filter(|stem| stem.ends_with(|c: char| c.is_ascii_lowercase()));
        match seconds {
            Some(stem) => {
                let usec = to_usec(&value).ok_or_else(|| {
                    bad(format!(
                        "{name} takes a number of seconds, not {:?}",
                        all[key]
                    ))
                })?;
                out.push(prop(&format!("{stem}USec"), Value::U64(usec)));
            }
            None => out.push(prop(name, value)),
        }
    }
    Ok(out)
}

/// A number of seconds in microseconds.
fn to_usec(v: &Value) -> Option<u64> {
    const M: u64 = 1_000_000;
    let whole = |n: i128| u64::try_from(n).ok()?.checked_mul(M);
    match v {
        Value::Byte(n) => whole((*n).into()),
        Value::I16(n) => whole((*n).into()),
        Value::U16(n) => whole((*n).into()),
        Value::I32(n) => whole((*n).into()),
        Value::U32(n) => whole((*n).into()),
        Value::I64(n) => whole((*n).into()),
        Value::U64(n) => whole((*n).into()),
        Value::Double(d) if *d >= 0.0 => Some((d * M as f64) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    fn find<'a>(props: &'a [Property], name: &str) -> Vec<&'a Value> {
        props
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn a_scope_for_the_init() {
        let unit = super::super::unit::plan(None, "c1").unwrap();
        let props = base(&unit, "c1", Some(42));
        assert_eq!(find(&props, "Slice"), [&Value::Str("system.slice".into())]);
        assert_eq!(find(&props, "Delegate"), [&Value::Bool(true)]);
        assert_eq!(
            find(&props, "PIDs"),
            [&Value::Array("u".into(), vec![Value::U32(42)])]
        );
        for name in [
            "MemoryAccounting",
            "CPUAccounting",
            "IOAccounting",
            "TasksAccounting",
        ] {
            assert_eq!(find(&props, name), [&Value::Bool(true)], "{name}");
        }
        assert_eq!(find(&props, "DefaultDependencies"), [&Value::Bool(false)]);
        assert_eq!(to_array(&props).signature(), "a(sv)");
    }

    #[test]
    fn a_slice_wants_its_parent_and_holds_no_pid() {
        let unit = super::super::unit::plan(Some("a.slice:p:a-b.slice"), "x").unwrap();
        let props = base(&unit, "x", Some(42));
        assert_eq!(find(&props, "Wants"), [&Value::strings(["a.slice"])]);
        assert!(find(&props, "PIDs").is_empty() && find(&props, "Delegate").is_empty());
    }

    #[test]
    fn resources_as_runc_converts_them() {
        let res = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .reservation(32 << 20)
                    .swap(96 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(12_345i64)
                    .period(100_000u64)
                    .cpus("0-2,9")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(100).build().unwrap())
            .unified(HashMap::from([(
                "memory.high".to_string(),
                "max".to_string(),
            )]))
            .build()
            .unwrap();
        let props = resources(&res).unwrap();
        assert_eq!(find(&props, "MemoryMax"), [&Value::U64(64 << 20)]);
        assert_eq!(find(&props, "MemoryLow"), [&Value::U64(32 << 20)]);
        assert_eq!(find(&props, "MemorySwapMax"), [&Value::U64(32 << 20)]);
        assert_eq!(find(&props, "MemoryHigh"), [&Value::U64(u64::MAX)]);
        assert_eq!(find(&props, "CPUWeight"), [&Value::U64(39)]);
        assert_eq!(find(&props, "CPUQuotaPeriodUSec"), [&Value::U64(100_000)]);
        // 123450 us per second, rounded up to a whole percent.
        assert_eq!(find(&props, "CPUQuotaPerSecUSec"), [&Value::U64(130_000)]);
        assert_eq!(
            find(&props, "AllowedCPUs"),
            [&bytes(vec![0b0000_0111, 0b0000_0010])]
        );
        assert_eq!(find(&props, "AllowedMemoryNodes"), [&bytes(vec![1])]);
        assert_eq!(find(&props, "TasksMax"), [&Value::U64(100)]);
    }

    #[test]
    fn io_settings() {
        let res = LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .weight_device(vec![LinuxWeightDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .weight(100u16)
                        .build()
                        .unwrap()])
                    .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .rate(1_048_576u64)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let props = resources(&res).unwrap();
        assert_eq!(
            find(&props, "IOWeight"),
            [&Value::U64(resources::blkio_to_io_weight(500))]
        );
        assert_eq!(
            find(&props, "IODeviceWeight"),
            [&per_device(vec![(
                "/dev/block/8:0".into(),
                resources::blkio_to_io_weight(100)
            )])]
        );
        assert_eq!(
            find(&props, "IOReadBandwidthMax"),
            [&per_device(vec![("/dev/block/8:0".into(), 1_048_576)])]
        );
    }

    #[test]
    fn unlimited_values_are_infinity() {
        let res = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(-1i64)
                    .period(50_000u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let props = resources(&res).unwrap();
        for name in ["MemoryMax", "TasksMax", "CPUQuotaPerSecUSec"] {
            assert_eq!(find(&props, name), [&Value::U64(u64::MAX)], "{name}");
        }
        assert_eq!(find(&props, "CPUQuotaPeriodUSec"), [&Value::U64(50_000)]);
    }

    #[test]
    fn device_rules_give_systemd_a_superset() {
        let allow_list = Policy::of(Some(&[])).unwrap().unwrap();
        let props = devices(&allow_list);
        assert_eq!(props[0].1, Value::Str("strict".into()));
        let Value::Array(_, entries) = &props[1].1 else {
            panic!("{props:?}")
        };
        let shown: Vec<String> = entries
            .iter()
            .map(|e| match e {
                Value::Struct(f) => {
                    format!("{} {}", f[0].as_str().unwrap(), f[1].as_str().unwrap())
                }
                _ => String::new(),
            })
            .collect();
        assert!(
            shown.contains(&"/dev/char/1:3 rwm".to_string()),
            "{shown:?}"
        );
        assert!(shown.contains(&"char-136 rwm".to_string()), "{shown:?}");
        assert!(shown.contains(&"char-* m".to_string()), "{shown:?}");
        assert_eq!(
            device_path(&Devices {
                kind: b'b',
                major: None,
                minor: Some(3)
            }),
            "block-*"
        );
        let allow_all = Policy {
            allow_by_default: true,
            exceptions: vec![],
        };
        assert_eq!(devices(&allow_all)[0].1, Value::Str("auto".into()));
    }

    #[test]
    fn annotations_with_runcs_rules() {
        let a = HashMap::from([
            (
                "org.systemd.property.TimeoutStopUSec".to_string(),
                "uint64 123456789".to_string(),
            ),
            (
                "org.systemd.property.CollectMode".to_string(),
                "'inactive-or-failed'".to_string(),
            ),
            (
                "org.systemd.property.TimeoutStopSec".to_string(),
                "2".to_string(),
            ),
            (
                "org.systemd.property.RuntimeMaxSec".to_string(),
                "1.5".to_string(),
            ),
            ("io.kubernetes.other".to_string(), "x".to_string()),
        ]);
        let props = annotations(&a).unwrap();
        assert_eq!(
            find(&props, "CollectMode"),
            [&Value::Str("inactive-or-failed".into())]
        );
        assert_eq!(
            find(&props, "TimeoutStopUSec"),
            [&Value::U64(2_000_000), &Value::U64(123_456_789)]
        );
        assert_eq!(find(&props, "RuntimeMaxUSec"), [&Value::U64(1_500_000)]);
        assert_eq!(props.len(), 4);
        for (k, v) in [
            ("org.systemd.property.Ab", "1"),
            ("org.systemd.property.Bad_Name", "1"),
            ("org.systemd.property.CollectMode", "inactive"),
            ("org.systemd.property.TimeoutStopSec", "'x'"),
            ("org.systemd.property.TimeoutStopSec", "-1"),
        ] {
            let e = annotations(&HashMap::from([(k.to_string(), v.to_string())]))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("annotations: {k}")), "{e}");
        }
    }

    #[test]
    fn cpusets() {
        assert_eq!(cpuset_bits("0", "f").unwrap(), [1]);
        assert_eq!(cpuset_bits("8-9", "f").unwrap(), [0, 3]);
        for bad in ["", "a", "3-1", "1-", "9000"] {
            assert!(cpuset_bits(bad, "f").is_err(), "{bad}");
        }
    }
}
