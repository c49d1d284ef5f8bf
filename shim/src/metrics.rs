//! Stats: skiff's cgroup usage turned into the metrics message containerd
//! decodes for the host's cgroup layout (`io.containerd.cgroups.v1.Metrics`
//! on v1 and hybrid hosts, `io.containerd.cgroups.v2.Metrics` on cgroup2).
//! The type URL is the bare message name, as Go's typeurl writes it and
//! looks it up.

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::util::convert_to_any;
use skiff::cgroups::stats::Stats;

/// The metrics message for `stats`, packed as containerd expects.
pub fn to_any(stats: &Stats, unified: bool) -> Result<Any, containerd_shim::Error> {
    if unified {
        convert_to_any(Box::new(to_v2(stats)))
    } else {
        convert_to_any(Box::new(to_v1(stats)))
    }
}

fn raw(stats: &Stats, key: &str) -> u64 {
    stats.memory.raw.get(key).copied().unwrap_or(0)
}

fn entry(e: &skiff::cgroups::stats::MemoryEntry) -> MessageField<v1::MemoryEntry> {
    MessageField::some(v1::MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
        ..Default::default()
    })
}

fn blkio(entries: &[skiff::cgroups::stats::BlkioEntry]) -> Vec<v1::BlkIOEntry> {
    entries
        .iter()
        .map(|e| v1::BlkIOEntry {
            op: e.op.clone(),
            major: e.major,
            minor: e.minor,
            value: e.value,
            ..Default::default()
        })
        .collect()
}

fn to_v1(s: &Stats) -> v1::Metrics {
    v1::Metrics {
        pids: MessageField::some(v1::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: s.cpu.usage.total,
                kernel: s.cpu.usage.kernel,
                user: s.cpu.usage.user,
                per_cpu: s.cpu.usage.percpu.clone(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: s.cpu.throttling.periods,
                throttled_periods: s.cpu.throttling.throttled_periods,
                throttled_time: s.cpu.throttling.throttled_time,
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(v1::MemoryStat {
            cache: s.memory.cache,
            rss: raw(s, "rss"),
            rss_huge: raw(s, "rss_huge"),
            mapped_file: raw(s, "mapped_file"),
            dirty: raw(s, "dirty"),
            writeback: raw(s, "writeback"),
            pg_fault: raw(s, "pgfault"),
            pg_maj_fault: raw(s, "pgmajfault"),
            inactive_anon: raw(s, "inactive_anon"),
            active_anon: raw(s, "active_anon"),
            inactive_file: raw(s, "inactive_file"),
            active_file: raw(s, "active_file"),
            unevictable: raw(s, "unevictable"),
            hierarchical_memory_limit: raw(s, "hierarchical_memory_limit"),
            hierarchical_swap_limit: raw(s, "hierarchical_memsw_limit"),
            total_cache: raw(s, "total_cache"),
            total_rss: raw(s, "total_rss"),
            total_mapped_file: raw(s, "total_mapped_file"),
            total_pg_fault: raw(s, "total_pgfault"),
            total_pg_maj_fault: raw(s, "total_pgmajfault"),
            usage: entry(&s.memory.usage),
            swap: entry(&s.memory.swap),
            ..Default::default()
        }),
        blkio: MessageField::some(v1::BlkIOStat {
            io_service_bytes_recursive: blkio(&s.blkio.io_service_bytes_recursive),
            io_serviced_recursive: blkio(&s.blkio.io_serviced_recursive),
            ..Default::default()
        }),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| v1::HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn to_v2(s: &Stats) -> v2::Metrics {
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: s.cpu.usage.total / 1000,
            user_usec: s.cpu.usage.user / 1000,
            system_usec: s.cpu.usage.kernel / 1000,
            nr_periods: s.cpu.throttling.periods,
            nr_throttled: s.cpu.throttling.throttled_periods,
            throttled_usec: s.cpu.throttling.throttled_time / 1000,
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            anon: raw(s, "anon"),
            file: raw(s, "file"),
            file_mapped: raw(s, "file_mapped"),
            pgfault: raw(s, "pgfault"),
            pgmajfault: raw(s, "pgmajfault"),
            usage: s.memory.usage.usage,
            usage_limit: s.memory.usage.limit,
            max_usage: s.memory.usage.max,
            swap_usage: s.memory.swap.usage,
            swap_limit: s.memory.swap.limit,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::Message;

    fn type_name(any: &Any) -> &str {
        &any.type_url
    }

    fn sample() -> Stats {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.pids.limit = 10;
        s.cpu.usage.total = 5_000_000;
        s.memory.usage.usage = 1 << 20;
        s.memory.usage.limit = 64 << 20;
        s.memory.raw.insert("rss".into(), 4096);
        s.memory.raw.insert("anon".into(), 8192);
        s
    }

    #[test]
    fn v1_metrics_carry_usage() {
        let any = to_any(&sample(), false).unwrap();
        assert_eq!(type_name(&any), "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 10);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.memory.usage.usage, 1 << 20);
        assert_eq!(m.memory.usage.limit, 64 << 20);
        assert_eq!(m.memory.rss, 4096);
    }

    #[test]
    fn v2_metrics_use_microseconds() {
        let any = to_any(&sample(), true).unwrap();
        assert_eq!(type_name(&any), "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 5_000);
        assert_eq!(m.memory.usage_limit, 64 << 20);
        assert_eq!(m.memory.anon, 8192);
    }
}
