//! Stats: skiff's cgroup usage turned into the metrics message containerd
//! decodes for the host's cgroup layout (`io.containerd.cgroups.v1.Metrics`
//! on v1 and hybrid hosts, `io.containerd.cgroups.v2.Metrics` on cgroup2).
//! The type URL is the bare message name, as Go's typeurl writes it and
//! looks it up.

use skiff::cgroups::stats::Stats;

use crate::api::Any;
use crate::proto::Message;

/// containerd's cgroups v1 metrics (github.com/containerd/cgroups
/// stats/v1), the fields skiff reports.
mod v1 {
    use crate::proto::message;

    message! {
        pub struct Metrics {
            1 hugetlb: Vec<HugetlbStat>,
            2 pids: Option<PidsStat>,
            3 cpu: Option<CpuStat>,
            4 memory: Option<MemoryStat>,
            5 blkio: Option<BlkIoStat>,
        }
        pub struct HugetlbStat {
            1 usage: u64,
            2 max: u64,
            3 failcnt: u64,
            4 pagesize: String,
        }
        pub struct PidsStat {
            1 current: u64,
            2 limit: u64,
        }
        pub struct CpuStat {
            1 usage: Option<CpuUsage>,
            2 throttling: Option<Throttle>,
        }
        pub struct CpuUsage {
            1 total: u64,
            2 kernel: u64,
            3 user: u64,
            4 per_cpu: Vec<u64>,
        }
        pub struct Throttle {
            1 periods: u64,
            2 throttled_periods: u64,
            3 throttled_time: u64,
        }
        pub struct MemoryStat {
            1 cache: u64,
            2 rss: u64,
            3 rss_huge: u64,
            4 mapped_file: u64,
            5 dirty: u64,
            6 writeback: u64,
            9 pg_fault: u64,
            10 pg_maj_fault: u64,
            11 inactive_anon: u64,
            12 active_anon: u64,
            13 inactive_file: u64,
            14 active_file: u64,
            15 unevictable: u64,
            16 hierarchical_memory_limit: u64,
            17 hierarchical_swap_limit: u64,
            18 total_cache: u64,
            19 total_rss: u64,
            21 total_mapped_file: u64,
            26 total_pg_fault: u64,
            27 total_pg_maj_fault: u64,
            33 usage: Option<MemoryEntry>,
            34 swap: Option<MemoryEntry>,
        }
        pub struct MemoryEntry {
            1 limit: u64,
            2 usage: u64,
            3 max: u64,
            4 failcnt: u64,
        }
        pub struct BlkIoStat {
            1 io_service_bytes_recursive: Vec<BlkIoEntry>,
            2 io_serviced_recursive: Vec<BlkIoEntry>,
        }
        pub struct BlkIoEntry {
            1 op: String,
            3 major: u64,
            4 minor: u64,
            5 value: u64,
        }
    }
}

/// containerd's cgroup2 metrics (github.com/containerd/cgroups
/// cgroup2/stats), the fields skiff reports.
mod v2 {
    use crate::proto::message;

    message! {
        pub struct Metrics {
            1 pids: Option<PidsStat>,
            2 cpu: Option<CpuStat>,
            4 memory: Option<MemoryStat>,
        }
        pub struct PidsStat {
            1 current: u64,
            2 limit: u64,
        }
        pub struct CpuStat {
            1 usage_usec: u64,
            2 user_usec: u64,
            3 system_usec: u64,
            4 nr_periods: u64,
            5 nr_throttled: u64,
            6 throttled_usec: u64,
        }
        pub struct MemoryStat {
            1 anon: u64,
            2 file: u64,
            7 file_mapped: u64,
            18 pgfault: u64,
            19 pgmajfault: u64,
            32 usage: u64,
            33 usage_limit: u64,
            34 swap_usage: u64,
            35 swap_limit: u64,
            36 max_usage: u64,
        }
    }
}

/// The metrics message for `stats`, packed as containerd expects.
pub fn to_any(stats: &Stats, unified: bool) -> Any {
    let (type_url, value) = if unified {
        ("io.containerd.cgroups.v2.Metrics", to_v2(stats).to_bytes())
    } else {
        ("io.containerd.cgroups.v1.Metrics", to_v1(stats).to_bytes())
    };
    Any {
        type_url: type_url.to_string(),
        value,
    }
}

fn raw(stats: &Stats, key: &str) -> u64 {
    stats.memory.raw.get(key).copied().unwrap_or(0)
}

fn entry(e: &skiff::cgroups::stats::MemoryEntry) -> Option<v1::MemoryEntry> {
    Some(v1::MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
    })
}

fn blkio(entries: &[skiff::cgroups::stats::BlkioEntry]) -> Vec<v1::BlkIoEntry> {
    entries
        .iter()
        .map(|e| v1::BlkIoEntry {
            op: e.op.clone(),
            major: e.major,
            minor: e.minor,
            value: e.value,
        })
        .collect()
}

fn to_v1(s: &Stats) -> v1::Metrics {
    v1::Metrics {
        pids: Some(v1::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
        }),
        cpu: Some(v1::CpuStat {
            usage: Some(v1::CpuUsage {
                total: s.cpu.usage.total,
                kernel: s.cpu.usage.kernel,
                user: s.cpu.usage.user,
                per_cpu: s.cpu.usage.percpu.clone(),
            }),
            throttling: Some(v1::Throttle {
                periods: s.cpu.throttling.periods,
                throttled_periods: s.cpu.throttling.throttled_periods,
                throttled_time: s.cpu.throttling.throttled_time,
            }),
        }),
        memory: Some(v1::MemoryStat {
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
        }),
        blkio: Some(v1::BlkIoStat {
            io_service_bytes_recursive: blkio(&s.blkio.io_service_bytes_recursive),
            io_serviced_recursive: blkio(&s.blkio.io_serviced_recursive),
        }),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| v1::HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: size.clone(),
            })
            .collect(),
    }
}

fn to_v2(s: &Stats) -> v2::Metrics {
    v2::Metrics {
        pids: Some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
        }),
        cpu: Some(v2::CpuStat {
            usage_usec: s.cpu.usage.total / 1000,
            user_usec: s.cpu.usage.user / 1000,
            system_usec: s.cpu.usage.kernel / 1000,
            nr_periods: s.cpu.throttling.periods,
            nr_throttled: s.cpu.throttling.throttled_periods,
            throttled_usec: s.cpu.throttling.throttled_time / 1000,
        }),
        memory: Some(v2::MemoryStat {
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
        }),
    }
}

/// Decoded by containerd's own generated code (a dev-dependency), so the
/// field numbers here are checked against containerd's protos.
#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::cgroups::metrics as ref_v1;
    use containerd_shim_protos::cgroups_v2::metrics as ref_v2;
    use containerd_shim_protos::protobuf::Message as _;

    fn sample() -> Stats {
        let mut s = Stats::default();
        s.pids.current = 3;
        s.pids.limit = 10;
        s.cpu.usage.total = 5_000_000;
        s.cpu.usage.percpu = vec![2_000_000, 3_000_000];
        s.cpu.throttling.throttled_time = 7_000;
        s.memory.usage.usage = 1 << 20;
        s.memory.usage.limit = 64 << 20;
        s.memory.swap.failcnt = 2;
        s.memory.raw.insert("rss".into(), 4096);
        s.memory.raw.insert("anon".into(), 8192);
        s.memory.raw.insert("total_pgmajfault".into(), 5);
        s.memory.raw.insert("pgmajfault".into(), 6);
        s.blkio
            .io_serviced_recursive
            .push(skiff::cgroups::stats::BlkioEntry {
                op: "Read".into(),
                major: 7,
                minor: 1,
                value: 99,
            });
        s
    }

    #[test]
    fn v1_metrics_decode_as_containerd_reads_them() {
        let any = to_any(&sample(), false);
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = ref_v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!((m.pids.current, m.pids.limit), (3, 10));
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.cpu.usage.per_cpu, [2_000_000, 3_000_000]);
        assert_eq!(m.cpu.throttling.throttled_time, 7_000);
        assert_eq!(m.memory.usage.usage, 1 << 20);
        assert_eq!(m.memory.usage.limit, 64 << 20);
        assert_eq!(m.memory.swap.failcnt, 2);
        assert_eq!(m.memory.rss, 4096);
        assert_eq!(m.memory.total_pg_maj_fault, 5);
        let io = &m.blkio.io_serviced_recursive[0];
        assert_eq!(
            (io.op.as_str(), io.major, io.minor, io.value),
            ("Read", 7, 1, 99)
        );
    }

    #[test]
    fn v2_metrics_use_microseconds() {
        let any = to_any(&sample(), true);
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = ref_v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage_usec, 5_000);
        assert_eq!(m.cpu.throttled_usec, 7);
        assert_eq!(m.memory.usage_limit, 64 << 20);
        assert_eq!(m.memory.anon, 8192);
        assert_eq!(m.memory.pgmajfault, 6);
        assert_eq!(m.pids.current, 3);
    }

    /// Every metrics message against containerd's original (see
    /// `wire_fuzz`), and none left out.
    #[test]
    fn every_message_matches_containerd() {
        crate::wire_fuzz::all_match_containerd! {
            include_str!("metrics.rs");
            v1::Metrics => ref_v1::Metrics;
            v1::HugetlbStat => ref_v1::HugetlbStat;
            v1::PidsStat => ref_v1::PidsStat;
            v1::CpuStat => ref_v1::CPUStat;
            v1::CpuUsage => ref_v1::CPUUsage;
            v1::Throttle => ref_v1::Throttle;
            v1::MemoryStat => ref_v1::MemoryStat;
            v1::MemoryEntry => ref_v1::MemoryEntry;
            v1::BlkIoStat => ref_v1::BlkIOStat;
            v1::BlkIoEntry => ref_v1::BlkIOEntry;
            v2::Metrics => ref_v2::Metrics;
            v2::PidsStat => ref_v2::PidsStat;
            v2::CpuStat => ref_v2::CPUStat;
            v2::MemoryStat => ref_v2::MemoryStat;
        }
    }
}
