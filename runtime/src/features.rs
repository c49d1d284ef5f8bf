//! The runtime-spec features document (`skiff features`): what skiff
//! recognises, built from the same tables and enums the implementation
//! uses, so it cannot drift from what is really handled. Only
//! `seccomp.supportedFlags` depends on the host (flags the kernel accepts),
//! as the spec defines it.

use serde::Serialize;

use crate::hooks::Kind;
use crate::namespaces;
use crate::process::attributes::{MEMORY_POLICY_FLAGS, MEMORY_POLICY_MODES};
use crate::rootfs::options;
use crate::security::capabilities;
use crate::state::OCI_VERSION;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    pub oci_version_min: &'static str,
    pub oci_version_max: &'static str,
    pub hooks: Vec<&'static str>,
    pub mount_options: Vec<String>,
    pub linux: Linux,
    pub potentially_unsafe_config_annotations: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    pub namespaces: Vec<&'static str>,
    pub capabilities: Vec<String>,
    pub cgroup: Cgroup,
    pub seccomp: Seccomp,
    pub apparmor: Enabled,
    pub selinux: Enabled,
    pub intel_rdt: IntelRdt,
    pub memory_policy: MemoryPolicy,
    pub mount_extensions: MountExtensions,
    pub net_devices: Enabled,
}

#[derive(Debug, Serialize)]
pub struct IntelRdt {
    pub enabled: bool,
    /// `linux.intelRdt.schemata` is handled.
    pub schemata: bool,
    /// `linux.intelRdt.enableMonitoring` is handled.
    pub monitoring: bool,
}

#[derive(Debug, Serialize)]
pub struct MemoryPolicy {
    pub modes: Vec<String>,
    pub flags: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cgroup {
    pub v1: bool,
    pub v2: bool,
    pub systemd: bool,
    pub systemd_user: bool,
    pub rdma: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    pub enabled: bool,
    pub actions: Vec<String>,
    pub operators: Vec<String>,
    pub archs: Vec<String>,
    pub known_flags: Vec<String>,
    pub supported_flags: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Serialize)]
pub struct MountExtensions {
    pub idmap: Enabled,
}

/// Annotations skiff acts on, which a manager should not pass through from
/// an untrusted image (runtime-spec 1.2 `potentiallyUnsafeConfigAnnotations`;
/// a name ending in `.` is a prefix): `org.systemd.property.NAME` sets a
/// property of the container's unit under the systemd driver, and
/// `org.criu.config` names a CRIU configuration file that checkpoint and
/// restore pass to CRIU. (The shim's pod grouping reads another, but never
/// changes the container.)
const ACTED_ON_ANNOTATIONS: [&str; 2] = [
    crate::cgroups::systemd::properties::ANNOTATION_PREFIX,
    crate::criu::CONFIG_ANNOTATION,
];

/// The features of this build, on this kernel.
pub fn features() -> Features {
    let seccomp = skiff_seccomp::features::features();
    let capabilities = capabilities::all_names();
    Features {
        oci_version_min: "1.0.0",
        oci_version_max: OCI_VERSION,
        hooks: Kind::ALL.iter().map(|k| k.name()).collect(),
        mount_options: options::recognized(),
        potentially_unsafe_config_annotations: ACTED_ON_ANNOTATIONS.to_vec(),
        linux: Linux {
            namespaces: namespaces::ALL
                .iter()
                .map(|t| namespaces::type_name(*t))
                .collect(),
            capabilities,
            // Both cgroup backends, the systemd driver (the system's
            // instance, and a rootless caller's own) and the rdma
            // controller are built in.
            cgroup: Cgroup {
                v1: true,
                v2: true,
                systemd: true,
                systemd_user: true,
                rdma: true,
            },
            seccomp: Seccomp {
                enabled: true,
                actions: seccomp.actions,
                operators: seccomp.operators,
                archs: seccomp.archs,
                known_flags: seccomp.known_flags,
                supported_flags: seccomp.supported_flags,
            },
            apparmor: Enabled { enabled: true },
            selinux: Enabled { enabled: true },
            intel_rdt: IntelRdt {
                enabled: true,
                schemata: true,
                monitoring: true,
            },
            memory_policy: MemoryPolicy {
                modes: MEMORY_POLICY_MODES.iter().map(|m| m.to_string()).collect(),
                flags: MEMORY_POLICY_FLAGS.iter().map(|f| f.to_string()).collect(),
            },
            mount_extensions: MountExtensions {
                idmap: Enabled { enabled: true },
            },
            net_devices: Enabled { enabled: true },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_names_match_the_spec() {
        let v = serde_json::to_value(features()).unwrap();
        assert_eq!(v["ociVersionMax"], OCI_VERSION);
        assert_eq!(v["hooks"].as_array().unwrap().len(), 6);
        let caps = v["linux"]["capabilities"].as_array().unwrap();
        assert_eq!(caps[0], "CAP_CHOWN");
        assert_eq!(caps.len(), 41);
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&"network".into()) && ns.contains(&"time".into()));
        let opts = v["mountOptions"].as_array().unwrap();
        for o in [
            "rbind",
            "rro",
            "rprivate",
            "idmap",
            "tmpcopyup",
            "nosymfollow",
        ] {
            assert!(opts.contains(&o.into()), "{o}");
        }
        assert_eq!(v["linux"]["mountExtensions"]["idmap"]["enabled"], true);
        assert_eq!(v["linux"]["cgroup"]["systemd"], true);
        assert_eq!(v["linux"]["cgroup"]["systemdUser"], true);
        assert_eq!(v["linux"]["netDevices"]["enabled"], true);
        assert_eq!(
            v["potentiallyUnsafeConfigAnnotations"],
            serde_json::json!(["org.systemd.property.", "org.criu.config"])
        );
        let modes = v["linux"]["memoryPolicy"]["modes"].as_array().unwrap();
        assert_eq!(modes.len(), 7);
        assert!(modes.contains(&"MPOL_WEIGHTED_INTERLEAVE".into()));
        assert_eq!(
            v["linux"]["memoryPolicy"]["flags"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert!(opts.contains(&"src-nofollow".into()) && opts.contains(&"dest-nofollow".into()));
    }

    #[test]
    fn every_listed_mount_option_is_recognized() {
        use crate::rootfs::options::MountOptions;
        for o in options::recognized() {
            let parsed = MountOptions::parse(&[o.as_str()]);
            assert!(
                parsed.data.is_empty(),
                "{o} would be passed to the filesystem"
            );
        }
    }
}
