//! Capability sets: names from the spec turned into kernel bit masks (in
//! the parent, before fork), then applied in the child: bounding set first,
//! then effective/permitted/inheritable with one capset, then ambient.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Every capability skiff recognises, in kernel number order.
pub const ALL: [Capability; 41] = {
    use Capability::*;
    [
        Chown,
        DacOverride,
        DacReadSearch,
        Fowner,
        Fsetid,
        Kill,
        Setgid,
        Setuid,
        Setpcap,
        LinuxImmutable,
        NetBindService,
        NetBroadcast,
        NetAdmin,
        NetRaw,
        IpcLock,
        IpcOwner,
        SysModule,
        SysRawio,
        SysChroot,
        SysPtrace,
        SysPacct,
        SysAdmin,
        SysBoot,
        SysNice,
        SysResource,
        SysTime,
        SysTtyConfig,
        Mknod,
        Lease,
        AuditWrite,
        AuditControl,
        Setfcap,
        MacOverride,
        MacAdmin,
        Syslog,
        WakeAlarm,
        BlockSuspend,
        AuditRead,
        Perfmon,
        Bpf,
        CheckpointRestore,
    ]
};

/// The kernel's number for a capability.
pub fn number(cap: Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// The five sets as kernel masks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapMasks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapMasks {
    /// These sets with `cap` also effective and permitted, for the runtime
    /// to use until execve (which recomputes the sets without it). Ambient
    /// is reduced to what `apply_sets` would raise from the original sets.
    pub fn keeping(self, cap: u32) -> CapMasks {
        CapMasks {
            effective: self.effective | 1 << cap,
            permitted: self.permitted | 1 << cap,
            ambient: self.ambient & self.permitted & self.inheritable,
            ..self
        }
    }
}

/// What the host allows: the highest capability the kernel knows and the
/// runtime's own bounding set (nothing outside it can be granted).
#[derive(Debug, Clone, Copy)]
pub struct HostCaps {
    pub last_cap: u32,
    pub bounding: u64,
}

impl HostCaps {
    pub fn detect() -> HostCaps {
        HostCaps {
            last_cap: crate::procfs::cap_last_cap(),
            bounding: crate::procfs::own_bounding_set(),
        }
    }
}

/// Converts one set, warning about (and dropping) capabilities the host
/// cannot grant: the spec asks runtimes to log these, not to fail.
fn mask(set: Option<&Capabilities>, name: &str, host: HostCaps) -> u64 {
    let mut out = 0u64;
    let mut names: Vec<Capability> = set.map(|s| s.iter().copied().collect()).unwrap_or_default();
    names.sort_by_key(|c| number(*c));
    for cap in names {
        let n = number(cap);
        if n > host.last_cap {
            crate::warn!("process.capabilities.{name}: {cap} is unknown to this kernel; ignored");
            continue;
        }
        if host.bounding & (1 << n) == 0 {
            crate::warn!(
                "process.capabilities.{name}: {cap} is outside skiff's bounding set; ignored"
            );
            continue;
        }
        out |= 1 << n;
    }
    out
}

/// Masks for a spec's capabilities. Without a `capabilities` object the
/// process keeps none (the spec's default for an absent field).
pub fn masks(caps: Option<&LinuxCapabilities>, host: HostCaps) -> CapMasks {
    let Some(c) = caps else {
        return CapMasks::default();
    };
    CapMasks {
        bounding: mask(c.bounding().as_ref(), "bounding", host),
        effective: mask(c.effective().as_ref(), "effective", host),
        permitted: mask(c.permitted().as_ref(), "permitted", host),
        inheritable: mask(c.inheritable().as_ref(), "inheritable", host),
        ambient: mask(c.ambient().as_ref(), "ambient", host),
    }
}

/// Drops every capability not in `bounding` from the bounding set. Needs
/// CAP_SETPCAP, so it runs before the final capset.
pub fn apply_bounding(bounding: u64, last_cap: u32) -> nix::Result<()> {
    for n in 0..=last_cap {
        if bounding & (1 << n) == 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) };
            if r < 0 {
                let e = nix::errno::Errno::last();
                // EINVAL: the kernel does not know this one; nothing to drop.
                if e != nix::errno::Errno::EINVAL {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Sets effective, permitted and inheritable, then raises ambient. An
/// ambient capability must be permitted and inheritable; the others are
/// left out, as runc does.
pub fn apply_sets(m: &CapMasks) -> nix::Result<()> {
    crate::syscalls::capset(m.effective, m.permitted, m.inheritable)?;
    let raisable = m.ambient & m.permitted & m.inheritable;
    for n in 0..64u32 {
        if raisable & (1 << n) != 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    n as libc::c_ulong,
                    0,
                    0,
                )
            };
            if r < 0 {
                return Err(nix::errno::Errno::last());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_is_complete_and_in_number_order() {
        for (i, cap) in super::ALL.iter().enumerate() {
            assert_eq!(number(*cap) as usize, i, "{cap:?}");
        }
    }

    use super::*;

    const ALL: HostCaps = HostCaps {
        last_cap: 40,
        bounding: u64::MAX,
    };

    fn caps(json: serde_json::Value) -> LinuxCapabilities {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn numbers_match_the_kernel() {
        assert_eq!(number(Capability::Chown), 0);
        assert_eq!(number(Capability::SysAdmin), 21);
        assert_eq!(number(Capability::AuditWrite), 29);
        assert_eq!(number(Capability::CheckpointRestore), 40);
    }

    #[test]
    fn runc_default_set() {
        let c = caps(serde_json::json!({
            "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL"]
        }));
        let m = masks(Some(&c), ALL);
        // Same value runc's container shows as CapBnd: 0000000020000420.
        assert_eq!(m.bounding, 0x2000_0420);
        assert_eq!(m.effective, 1 << 5);
        assert_eq!(m.ambient, 0);
    }

    #[test]
    fn unavailable_caps_are_dropped() {
        let c = caps(serde_json::json!({"bounding": ["CAP_SYS_RESOURCE", "CAP_KILL", "CAP_BPF"]}));
        let host = HostCaps {
            last_cap: 38,
            bounding: !(1 << 24),
        };
        assert_eq!(masks(Some(&c), host).bounding, 1 << 5);
    }

    #[test]
    fn absent_means_none() {
        assert_eq!(masks(None, ALL), CapMasks::default());
    }
}
