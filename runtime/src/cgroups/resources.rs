//! `linux.resources` turned into cgroup file writes, for v1 and for v2,
//! converted the way runc converts them. Pure: the backends do the I/O.

use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice};

/// `pids.max` for a `pids.limit`: runtime-spec 1.3 (and runc 1.4) make 0
/// a real limit (no new process at all); a negative limit is none.
fn pids_max(limit: i64) -> String {
    if limit < 0 {
        "max".into()
    } else {
        limit.to_string()
    }
}

/// Drops `res.pids` when its JSON (`json`, the object at `pointer` holding
/// `pids`) has no `limit`: oci-spec reads a missing limit as 0, now a real
/// limit, while a `pids` object without one asks for nothing. The JSON is
/// read again only when the parsed limit is 0.
pub fn drop_unset_pids_limit(res: &mut LinuxResources, json: &[u8], pointer: &str) {
    if res.pids().is_none_or(|p| p.limit() != 0) {
        return;
    }
    let given = serde_json::from_slice::<serde_json::Value>(json)
        .ok()
        .is_some_and(|v| v.pointer(&format!("{pointer}/pids/limit")).is_some());
    if !given {
        res.set_pids(None);
    }
}

/// One value written to one cgroup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// v1: the subsystem whose hierarchy holds the file; v2: empty.
    pub controller: &'static str,
    pub file: String,
    pub value: String,
    /// The spec field it comes from, for errors.
    pub field: &'static str,
    /// `(file, value)` to write instead when `file` does not exist: the
    /// BFQ scheduler's weight files replace the CFQ ones on current kernels.
    pub alt: Option<(String, String)>,
}

impl Write {
    /// The file and value to write in `dir`: the first choice, or the
    /// alternative when only that exists. Neither is an error naming both
    /// (without it, writing the missing file fails with a bare EACCES).
    pub fn target(&self, dir: &std::path::Path) -> Result<(&str, &str), ResourceError> {
        let Some((alt_file, alt_value)) = &self.alt else {
            return Ok((&self.file, &self.value));
        };
        if dir.join(&self.file).exists() {
            return Ok((&self.file, &self.value));
        }
        if dir.join(alt_file).exists() {
            return Ok((alt_file, alt_value));
        }
        err(
            self.field,
            format!(
                "this kernel offers neither {} nor {} (no I/O scheduler with weights here)",
                self.file, alt_file
            ),
        )
    }
}

/// A resource the host's cgroup version cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ResourceError {
    pub field: &'static str,
    pub reason: String,
}

fn err<T>(field: &'static str, reason: impl Into<String>) -> Result<T, ResourceError> {
    Err(ResourceError {
        field,
        reason: reason.into(),
    })
}

struct Writes(Vec<Write>);

impl Writes {
    fn push(
        &mut self,
        controller: &'static str,
        file: impl Into<String>,
        value: impl ToString,
        field: &'static str,
    ) {
        self.0.push(Write {
            controller,
            file: file.into(),
            value: value.to_string(),
            field,
            alt: None,
        });
    }

    /// Like `push`, with the file to use when `file` is missing.
    fn push_or(
        &mut self,
        controller: &'static str,
        (file, value): (&str, String),
        alt: (&str, String),
        field: &'static str,
    ) {
        self.push(controller, file, value, field);
        if let Some(last) = self.0.last_mut() {
            last.alt = Some((alt.0.to_string(), alt.1));
        }
    }
}

/// runc's cpu.shares to cpu.weight: [2, 262144] onto [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// runc's blkio weight to io.weight: [10, 1000] onto [1, 10000].
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// Checks a hugepage size ("2MB", "1GB", "64KB").
fn page_size(size: &str) -> Result<&str, ResourceError> {
    let digits = size.trim_end_matches(['K', 'M', 'G', 'B']);
    let unit = &size[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(unit, "KB" | "MB" | "GB")
    {
        return err(
            "linux.resources.hugepageLimits.pageSize",
            format!("{size:?} is not a size like 2MB or 1GB"),
        );
    }
    Ok(size)
}

fn throttle(list: &Option<Vec<LinuxThrottleDevice>>) -> impl Iterator<Item = &LinuxThrottleDevice> {
    list.as_deref().unwrap_or_default().iter()
}

fn rdma_value(r: &oci_spec::runtime::LinuxRdma) -> String {
    let mut parts = Vec::new();
    if let Some(h) = r.hca_handles() {
        parts.push(format!("hca_handle={h}"));
    }
    if let Some(o) = r.hca_objects() {
        parts.push(format!("hca_object={o}"));
    }
    parts.join(" ")
}

const V1_MEMORY: &str = "memory.limit_in_bytes";
const V1_MEMSW: &str = "memory.memsw.limit_in_bytes";

/// Puts v1's memory and memory+swap writes in an order the kernel takes:
/// the memory limit may never exceed the memory+swap limit, so (as runc
/// orders them) the swap limit goes first when it is unlimited or at least
/// the memory limit in place now (`current_memory`), else last. Memory
/// back to unlimited (-1) with no swap limit given lifts the swap limit
/// too when the host accounts swap (`memsw`); the kernel refuses it else.
pub fn order_v1_memory(writes: &mut Vec<Write>, current_memory: u64, memsw: bool) {
    let pos = |w: &[Write], file: &str| w.iter().position(|w| w.file == file);
    let Some(memory) = pos(writes, V1_MEMORY) else {
        return;
    };
    if writes[memory].value == "-1" && memsw && pos(writes, V1_MEMSW).is_none() {
        let lift = Write {
            file: V1_MEMSW.into(),
            ..writes[memory].clone()
        };
        writes.insert(memory + 1, lift);
    }
    let Some(swap) = pos(writes, V1_MEMSW) else {
        return;
    };
    let swap_first = writes[swap]
        .value
        .parse::<u64>()
        .map_or(true, |s| s >= current_memory);
    if swap_first != (swap < memory) {
        writes.swap(memory, swap);
    }
}

/// The writes for cgroup v1.
pub fn v1(res: &LinuxResources) -> Result<Vec<Write>, ResourceError> {
    let mut w = Writes(Vec::new());
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            w.push(
                "memory",
                "memory.limit_in_bytes",
                l,
                "linux.resources.memory.limit",
            );
        }
        if let Some(s) = m.swap().filter(|s| *s != 0) {
            w.push(
                "memory",
                "memory.memsw.limit_in_bytes",
                s,
                "linux.resources.memory.swap",
            );
        }
        if let Some(r) = m.reservation() {
            w.push(
                "memory",
                "memory.soft_limit_in_bytes",
                r,
                "linux.resources.memory.reservation",
            );
        }
        if let Some(t) = m.kernel_tcp() {
            w.push(
                "memory",
                "memory.kmem.tcp.limit_in_bytes",
                t,
                "linux.resources.memory.kernelTCP",
            );
        }
        if let Some(s) = m.swappiness() {
            if s > 100 {
                return err(
                    "linux.resources.memory.swappiness",
                    format!("{s} is above 100"),
                );
            }
            w.push(
                "memory",
                "memory.swappiness",
                s,
                "linux.resources.memory.swappiness",
            );
        }
        if m.disable_oom_killer() == Some(true) {
            w.push(
                "memory",
                "memory.oom_control",
                1,
                "linux.resources.memory.disableOOMKiller",
            );
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            w.push("cpu", "cpu.shares", s, "linux.resources.cpu.shares");
        }
        // The period first: a quota is checked against the current period.
        if let Some(p) = c.period().filter(|p| *p != 0) {
            w.push("cpu", "cpu.cfs_period_us", p, "linux.resources.cpu.period");
        }
        if let Some(q) = c.quota().filter(|q| *q != 0) {
            w.push("cpu", "cpu.cfs_quota_us", q, "linux.resources.cpu.quota");
        }
        if let Some(b) = c.burst() {
            w.push("cpu", "cpu.cfs_burst_us", b, "linux.resources.cpu.burst");
        }
        if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
            w.push(
                "cpu",
                "cpu.rt_period_us",
                p,
                "linux.resources.cpu.realtimePeriod",
            );
        }
        if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
            w.push(
                "cpu",
                "cpu.rt_runtime_us",
                r,
                "linux.resources.cpu.realtimeRuntime",
            );
        }
        if let Some(i) = c.idle() {
            w.push("cpu", "cpu.idle", i, "linux.resources.cpu.idle");
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            w.push("cpuset", "cpuset.cpus", cpus, "linux.resources.cpu.cpus");
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            w.push("cpuset", "cpuset.mems", mems, "linux.resources.cpu.mems");
        }
    }
    if let Some(p) = res.pids() {
        w.push(
            "pids",
            "pids.max",
            pids_max(p.limit()),
            "linux.resources.pids.limit",
        );
    }
    if let Some(b) = res.block_io() {
        if let Some(weight) = b.weight().filter(|w| *w != 0) {
            w.push_or(
                "blkio",
                ("blkio.weight", weight.to_string()),
                ("blkio.bfq.weight", weight.to_string()),
                "linux.resources.blockIO.weight",
            );
        }
        if let Some(weight) = b.leaf_weight().filter(|w| *w != 0) {
            w.push(
                "blkio",
                "blkio.leaf_weight",
                weight,
                "linux.resources.blockIO.leafWeight",
            );
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(weight) = d.weight() {
                let line = format!("{}:{} {weight}", d.major(), d.minor());
                w.push_or(
                    "blkio",
                    ("blkio.weight_device", line.clone()),
                    ("blkio.bfq.weight_device", line),
                    "linux.resources.blockIO.weightDevice",
                );
            }
            if let Some(weight) = d.leaf_weight() {
                w.push(
                    "blkio",
                    "blkio.leaf_weight_device",
                    format!("{}:{} {weight}", d.major(), d.minor()),
                    "linux.resources.blockIO.weightDevice",
                );
            }
        }
        let lists = [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "linux.resources.blockIO.throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "linux.resources.blockIO.throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "linux.resources.blockIO.throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "linux.resources.blockIO.throttleWriteIOPSDevice",
            ),
        ];
        for (list, file, field) in lists {
            for d in throttle(list) {
                w.push(
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                    field,
                );
            }
        }
    }
    for h in res.hugepage_limits().as_deref().unwrap_or_default() {
        let size = page_size(h.page_size())?;
        w.push(
            "hugetlb",
            format!("hugetlb.{size}.limit_in_bytes"),
            h.limit(),
            "linux.resources.hugepageLimits",
        );
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            w.push(
                "net_cls",
                "net_cls.classid",
                id,
                "linux.resources.network.classID",
            );
        }
        for p in n.priorities().as_deref().unwrap_or_default() {
            w.push(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
                "linux.resources.network.priorities",
            );
        }
    }
    for (device, r) in res.rdma().iter().flatten() {
        w.push(
            "rdma",
            "rdma.max",
            format!("{device} {}", rdma_value(r)),
            "linux.resources.rdma",
        );
    }
    if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return err(
            "linux.resources.unified",
            "needs a cgroup v2 host (this one mounts cgroup v1)",
        );
    }
    Ok(w.0)
}

/// The writes for cgroup v2.
pub fn v2(res: &LinuxResources) -> Result<Vec<Write>, ResourceError> {
    let mut w = Writes(Vec::new());
    if let Some(m) = res.memory() {
        let limit = m.limit();
        if let Some(l) = limit {
            w.push(
                "",
                "memory.max",
                if l < 0 { "max".into() } else { l.to_string() },
                "linux.resources.memory.limit",
            );
        }
        if let Some(s) = m.swap().filter(|s| *s != 0) {
            // v1 limits memory+swap; v2 limits swap alone.
            let value = if s < 0 {
                "max".to_string()
            } else {
                match limit {
                    Some(l) if l > 0 => {
                        if s < l {
                            return err("linux.resources.memory.swap", format!("{s} is below the memory limit {l} (it counts memory plus swap)"));
                        }
                        (s - l).to_string()
                    }
                    _ => {
                        return err(
                            "linux.resources.memory.swap",
                            "needs a memory limit on cgroup v2",
                        )
                    }
                }
            };
            w.push("", "memory.swap.max", value, "linux.resources.memory.swap");
        }
        if let Some(r) = m.reservation() {
            w.push(
                "",
                "memory.low",
                if r < 0 { "max".into() } else { r.to_string() },
                "linux.resources.memory.reservation",
            );
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            w.push(
                "",
                "cpu.weight",
                shares_to_weight(s),
                "linux.resources.cpu.shares",
            );
        }
        let quota = c.quota().filter(|q| *q != 0);
        let period = c.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let q = match quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            w.push(
                "",
                "cpu.max",
                format!("{q} {}", period.unwrap_or(100_000)),
                "linux.resources.cpu.quota",
            );
        }
        if let Some(b) = c.burst() {
            w.push("", "cpu.max.burst", b, "linux.resources.cpu.burst");
        }
        if c.realtime_runtime().is_some_and(|r| r != 0)
            || c.realtime_period().is_some_and(|p| p != 0)
        {
            return err(
                "linux.resources.cpu.realtimeRuntime",
                "cgroup v2 has no real-time CPU bandwidth",
            );
        }
        if let Some(i) = c.idle() {
            w.push("", "cpu.idle", i, "linux.resources.cpu.idle");
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            w.push("", "cpuset.cpus", cpus, "linux.resources.cpu.cpus");
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            w.push("", "cpuset.mems", mems, "linux.resources.cpu.mems");
        }
    }
    if let Some(p) = res.pids() {
        w.push(
            "",
            "pids.max",
            pids_max(p.limit()),
            "linux.resources.pids.limit",
        );
    }
    if let Some(b) = res.block_io() {
        // runc prefers BFQ's file, which takes blkio weights as they are,
        // and falls back to io.weight with the value converted.
        if let Some(weight) = b.weight().filter(|w| *w != 0) {
            w.push_or(
                "",
                ("io.bfq.weight", weight.to_string()),
                (
                    "io.weight",
                    format!("default {}", blkio_to_io_weight(weight)),
                ),
                "linux.resources.blockIO.weight",
            );
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(weight) = d.weight() {
                let dev = format!("{}:{}", d.major(), d.minor());
                w.push_or(
                    "",
                    ("io.bfq.weight", format!("{dev} {weight}")),
                    ("io.weight", format!("{dev} {}", blkio_to_io_weight(weight))),
                    "linux.resources.blockIO.weightDevice",
                );
            }
        }
        let lists = [
            (
                b.throttle_read_bps_device(),
                "rbps",
                "linux.resources.blockIO.throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "wbps",
                "linux.resources.blockIO.throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "riops",
                "linux.resources.blockIO.throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "wiops",
                "linux.resources.blockIO.throttleWriteIOPSDevice",
            ),
        ];
        for (list, key, field) in lists {
            for d in throttle(list) {
                w.push(
                    "",
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                    field,
                );
            }
        }
    }
    for h in res.hugepage_limits().as_deref().unwrap_or_default() {
        let size = page_size(h.page_size())?;
        w.push(
            "",
            format!("hugetlb.{size}.max"),
            h.limit(),
            "linux.resources.hugepageLimits",
        );
    }
    for (device, r) in res.rdma().iter().flatten() {
        w.push(
            "",
            "rdma.max",
            format!("{device} {}", rdma_value(r)),
            "linux.resources.rdma",
        );
    }
    let mut unified: Vec<(&String, &String)> = res.unified().iter().flatten().collect();
    unified.sort();
    for (key, value) in unified {
        // A key is a file in the container's own directory, nothing else.
        let valid = key.contains('.')
            && !key.contains('/')
            && !key.starts_with('.')
            && key != "cgroup.procs";
        if !valid {
            return err(
                "linux.resources.unified",
                format!("{key:?} is not a cgroup v2 interface file"),
            );
        }
        w.push("", key.clone(), value, "linux.resources.unified");
    }
    Ok(w.0)
}

/// Fields that only exist on one version and are ignored on the other the
/// way runc ignores them, named for a warning.
pub fn ignored_on_v2(res: &LinuxResources) -> Vec<&'static str> {
    let mut out = Vec::new();
    if let Some(m) = res.memory() {
        if m.swappiness().is_some() {
            out.push("linux.resources.memory.swappiness");
        }
        if m.disable_oom_killer().is_some() {
            out.push("linux.resources.memory.disableOOMKiller");
        }
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            out.push("linux.resources.memory.kernel");
        }
    }
    if res.network().is_some() {
        out.push("linux.resources.network");
    }
    if res
        .block_io()
        .as_ref()
        .is_some_and(|b| b.leaf_weight().is_some())
    {
        out.push("linux.resources.blockIO.leafWeight");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    fn pairs(w: &[Write]) -> Vec<(String, String)> {
        w.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    #[test]
    fn v1_memory_order_follows_the_limits_in_place() {
        let files = |w: &[Write]| -> Vec<String> {
            w.iter()
                .map(|w| format!("{}={}", w.file, w.value))
                .collect()
        };
        let ordered = |json: serde_json::Value, current: u64, memsw: bool| {
            let mut w = v1(&res(json)).unwrap();
            order_v1_memory(&mut w, current, memsw);
            files(&w)
        };
        let mib = 1 << 20;
        // Raising both above the memory limit in place: swap first.
        assert_eq!(
            ordered(
                serde_json::json!({"memory": {"limit": 128 * mib, "swap": 192 * mib}}),
                64 * mib,
                true
            ),
            [
                "memory.memsw.limit_in_bytes=201326592",
                "memory.limit_in_bytes=134217728"
            ]
        );
        // Lowering both below it: memory first.
        assert_eq!(
            ordered(
                serde_json::json!({"memory": {"limit": 16 * mib, "swap": 32 * mib}}),
                64 * mib,
                true
            ),
            [
                "memory.limit_in_bytes=16777216",
                "memory.memsw.limit_in_bytes=33554432"
            ]
        );
        // Unlimited swap can always go first.
        assert_eq!(
            ordered(
                serde_json::json!({"memory": {"limit": 16 * mib, "swap": -1}}),
                64 * mib,
                true
            ),
            [
                "memory.memsw.limit_in_bytes=-1",
                "memory.limit_in_bytes=16777216"
            ]
        );
        // `update --memory -1`: the swap limit is lifted first.
        assert_eq!(
            ordered(serde_json::json!({"memory": {"limit": -1}}), 64 * mib, true),
            ["memory.memsw.limit_in_bytes=-1", "memory.limit_in_bytes=-1"]
        );
        // Without swap accounting there is no swap limit to lift.
        assert_eq!(
            ordered(
                serde_json::json!({"memory": {"limit": -1}}),
                64 * mib,
                false
            ),
            ["memory.limit_in_bytes=-1"]
        );
        // A memory limit alone stays alone.
        assert_eq!(
            ordered(
                serde_json::json!({"memory": {"limit": 32 * mib}}),
                64 * mib,
                true
            ),
            ["memory.limit_in_bytes=33554432"]
        );
    }

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
    }

    #[test]
    fn memory() {
        let r = res(serde_json::json!({"memory": {"limit": 100, "swap": 300, "reservation": 50}}));
        assert_eq!(
            pairs(&v1(&r).unwrap()),
            [
                ("memory.limit_in_bytes".into(), "100".into()),
                ("memory.memsw.limit_in_bytes".into(), "300".into()),
                ("memory.soft_limit_in_bytes".into(), "50".into())
            ]
        );
        assert_eq!(
            pairs(&v2(&r).unwrap()),
            [
                ("memory.max".into(), "100".into()),
                ("memory.swap.max".into(), "200".into()),
                ("memory.low".into(), "50".into())
            ]
        );
        let unlimited = res(serde_json::json!({"memory": {"limit": -1, "swap": -1}}));
        assert_eq!(
            pairs(&v2(&unlimited).unwrap()),
            [
                ("memory.max".into(), "max".into()),
                ("memory.swap.max".into(), "max".into())
            ]
        );
        let bad = res(serde_json::json!({"memory": {"limit": 300, "swap": 100}}));
        assert!(v2(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("linux.resources.memory.swap: 100 is below"));
        let swappy = res(serde_json::json!({"memory": {"swappiness": 101}}));
        assert!(v1(&swappy).is_err());
    }

    #[test]
    fn cpu() {
        let r = res(
            serde_json::json!({"cpu": {"shares": 512, "quota": 50000, "period": 200000, "cpus": "0-1", "mems": "0"}}),
        );
        assert_eq!(
            pairs(&v1(&r).unwrap()),
            [
                ("cpu.shares".into(), "512".into()),
                ("cpu.cfs_period_us".into(), "200000".into()),
                ("cpu.cfs_quota_us".into(), "50000".into()),
                ("cpuset.cpus".into(), "0-1".into()),
                ("cpuset.mems".into(), "0".into())
            ]
        );
        assert_eq!(
            pairs(&v2(&r).unwrap())[..2],
            [
                ("cpu.weight".into(), "20".into()),
                ("cpu.max".into(), "50000 200000".into())
            ]
        );
        let no_quota = res(serde_json::json!({"cpu": {"quota": -1, "period": 100000}}));
        assert_eq!(
            pairs(&v2(&no_quota).unwrap()),
            [("cpu.max".into(), "max 100000".into())]
        );
        let rt = res(serde_json::json!({"cpu": {"realtimeRuntime": 950000}}));
        assert!(v2(&rt).is_err());
        assert_eq!(
            pairs(&v1(&rt).unwrap()),
            [("cpu.rt_runtime_us".into(), "950000".into())]
        );
    }

    #[test]
    fn weight_goes_to_the_file_the_kernel_has() {
        let r = res(serde_json::json!({"blockIO": {"weight": 300}}));
        let w = v1(&r).unwrap().into_iter().next().unwrap();
        let dir = std::env::temp_dir().join(format!("skiff-weight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = w.target(&dir).unwrap_err().to_string();
        assert!(
            e.starts_with("linux.resources.blockIO.weight: this kernel offers neither blkio.weight nor blkio.bfq.weight"),
            "{e}"
        );
        std::fs::write(dir.join("blkio.bfq.weight"), "").unwrap();
        assert_eq!(w.target(&dir).unwrap(), ("blkio.bfq.weight", "300"));
        std::fs::write(dir.join("blkio.weight"), "").unwrap();
        assert_eq!(w.target(&dir).unwrap(), ("blkio.weight", "300"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pids_limit_zero_is_a_limit_and_a_missing_one_is_none() {
        for (json, v1_value) in [
            (r#"{"pids": {"limit": 0}}"#, Some("0")),
            (r#"{"pids": {"limit": -1}}"#, Some("max")),
            (r#"{"pids": {"limit": 5}}"#, Some("5")),
            (r#"{"pids": {}}"#, None),
        ] {
            let mut r: LinuxResources = serde_json::from_str(json).unwrap();
            drop_unset_pids_limit(&mut r, json.as_bytes(), "");
            let found = pairs(&v1(&r).unwrap())
                .into_iter()
                .find(|(file, _)| file == "pids.max")
                .map(|(_, value)| value);
            assert_eq!(found.as_deref(), v1_value, "{json}");
            let found = pairs(&v2(&r).unwrap())
                .into_iter()
                .find(|(file, _)| file == "pids.max")
                .map(|(_, value)| value);
            assert_eq!(found.as_deref(), v1_value, "{json}");
        }
    }

    #[test]
    fn pids_blkio_hugetlb_rdma_network() {
        let r = res(serde_json::json!({
            "pids": {"limit": 0},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}
        }));
        let w1 = pairs(&v1(&r).unwrap());
        assert!(w1.contains(&("pids.max".into(), "0".into())));
        assert!(w1.contains(&("blkio.weight".into(), "500".into())));
        assert!(w1.contains(&(
            "blkio.throttle.read_bps_device".into(),
            "8:0 1048576".into()
        )));
        assert!(w1.contains(&("hugetlb.2MB.limit_in_bytes".into(), "4194304".into())));
        assert!(w1.contains(&(
            "rdma.max".into(),
            "mlx5_1 hca_handle=3 hca_object=10000".into()
        )));
        assert!(w1.contains(&("net_cls.classid".into(), "1048577".into())));
        assert!(w1.contains(&("net_prio.ifpriomap".into(), "eth0 5".into())));
        let w2 = pairs(&v2(&r).unwrap());
        let weight = v2(&r)
            .unwrap()
            .into_iter()
            .find(|w| w.file == "io.bfq.weight")
            .unwrap();
        assert_eq!(weight.value, "500", "BFQ takes the blkio weight as it is");
        assert_eq!(
            weight.alt,
            Some(("io.weight".into(), "default 4950".into()))
        );
        assert!(w2.contains(&("io.max".into(), "8:0 rbps=1048576".into())));
        assert!(w2.contains(&("hugetlb.2MB.max".into(), "4194304".into())));
        assert_eq!(ignored_on_v2(&r), ["linux.resources.network"]);
        let bad = res(serde_json::json!({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}));
        assert!(v1(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("linux.resources.hugepageLimits.pageSize"));
    }

    #[test]
    fn unified_is_v2_only_and_validated() {
        let r = res(serde_json::json!({"unified": {"memory.high": "1000000", "pids.max": "10"}}));
        assert_eq!(
            pairs(&v2(&r).unwrap()),
            [
                ("memory.high".into(), "1000000".into()),
                ("pids.max".into(), "10".into())
            ]
        );
        assert!(v1(&r)
            .unwrap_err()
            .to_string()
            .contains("needs a cgroup v2 host"));
        for bad in ["../escape", "cgroup.procs", "nodot", ".hidden"] {
            let r = res(serde_json::json!({"unified": {bad: "1"}}));
            assert!(v2(&r).is_err(), "{bad}");
        }
    }
}
