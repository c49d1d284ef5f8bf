//! Capability sets: names from the spec turned into kernel bit masks (in
//! the parent, before fork), then applied in the child: bounding set first,
//! then effective/permitted/inheritable with one capset, then ambient.
//!
//! Names and numbers are the `caps` crate's. Applying the sets is ours:
//! the crate sets one set per call (a capget and a capset each, from a
//! HashSet), where the kernel takes all three in one capset and the
//! effective set must never exceed the permitted one in between; and it
//! can only drop the bounding capabilities it can name, where a kernel
//! newer than the crate has more, and every one of those must go too.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// The kernel's capability for a spec name. Names and numbers come from
/// the `caps` crate; `None` for a capability the spec knows and it does not.
pub fn kernel_cap(cap: Capability) -> Option<caps::Capability> {
    // oci-spec prints names without the prefix ("SYS_ADMIN"), caps parses
    // the kernel's ("CAP_SYS_ADMIN").
    format!("CAP_{cap}").parse().ok()
}

/// Every capability skiff can grant, in kernel number order, by the
/// names the spec uses.
pub fn all_names() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(caps::Capability::index);
    all.iter().map(ToString::to_string).collect()
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
    let mut known: Vec<caps::Capability> = Vec::new();
    for &cap in set.into_iter().flatten() {
        match kernel_cap(cap) {
            Some(k) => known.push(k),
            None => {
                crate::warn!("process.capabilities.{name}: CAP_{cap} is unknown to skiff; ignored")
            }
        }
    }
    known.sort_by_key(caps::Capability::index);
    for k in known {
        let n = u32::from(k.index());
        if n > host.last_cap {
            crate::warn!("process.capabilities.{name}: {k} is unknown to this kernel; ignored");
            continue;
        }
        if host.bounding & (1 << n) == 0 {
            crate::warn!(
                "process.capabilities.{name}: {k} is outside skiff's bounding set; ignored"
            );
            continue;
        }
        out |= k.bitmask();
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
    use super::*;

    const ALL: HostCaps = HostCaps {
        last_cap: 40,
        bounding: u64::MAX,
    };

    fn caps(json: serde_json::Value) -> LinuxCapabilities {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn spec_names_map_to_kernel_numbers() {
        let number = |c| kernel_cap(c).map(|k| k.index());
        assert_eq!(number(Capability::Chown), Some(0));
        assert_eq!(number(Capability::SysAdmin), Some(21));
        assert_eq!(number(Capability::AuditWrite), Some(29));
        assert_eq!(number(Capability::CheckpointRestore), Some(40));
    }

    #[test]
    fn every_name_the_crate_knows_the_spec_knows() {
        let names = all_names();
        assert_eq!(names.len(), 41);
        assert_eq!(names[0], "CAP_CHOWN");
        for (i, name) in names.iter().enumerate() {
            let spec: Capability = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(
                kernel_cap(spec).map(|k| usize::from(k.index())),
                Some(i),
                "{name}"
            );
        }
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
