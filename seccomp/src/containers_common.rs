//! Profiles in containers-common's format (`/usr/share/containers/
//! seccomp.json`, what Podman starts from) resolved into an OCI
//! `linux.seccomp` the way Podman resolves them: entries are kept or
//! dropped by the container's capabilities, the architecture and the
//! kernel version. Used to test and benchmark with the real profile.

use serde_json::{json, Value};

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn kernel_at_least(kernel: (u32, u32), min: &str) -> bool {
    let mut parts = min.split('.').filter_map(|p| p.parse::<u32>().ok());
    let want = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    kernel >= want
}

/// Resolves `profile` for a container with `caps` on x86-64 running
/// kernel `kernel` (major, minor).
pub fn resolve(profile: &Value, caps: &[&str], kernel: (u32, u32)) -> Value {
    let is_x86_64 = |a: &&str| *a == "amd64" || *a == "x86_64";
    let mut syscalls = Vec::new();
    for s in profile["syscalls"].as_array().into_iter().flatten() {
        let (inc, exc) = (&s["includes"], &s["excludes"]);
        let keep = strings(&inc["caps"]).iter().all(|c| caps.contains(c))
            && !strings(&exc["caps"]).iter().any(|c| caps.contains(c))
            && (strings(&inc["arches"]).is_empty()
                || strings(&inc["arches"]).iter().any(is_x86_64))
            && !strings(&exc["arches"]).iter().any(is_x86_64)
            && inc["minKernel"]
                .as_str()
                .is_none_or(|m| kernel_at_least(kernel, m));
        if !keep {
            continue;
        }
        let mut rule = json!({"names": s["names"], "action": s["action"]});
        if let Some(e) = s["errnoRet"].as_u64() {
            rule["errnoRet"] = json!(e);
        }
        if let Some(args) = s["args"].as_array().filter(|a| !a.is_empty()) {
            rule["args"] = json!(args);
        }
        syscalls.push(rule);
    }
    let mut out = json!({
        "defaultAction": profile["defaultAction"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls
    });
    if let Some(e) = profile["defaultErrnoRet"].as_u64() {
        out["defaultErrnoRet"] = json!(e);
    }
    out
}

/// Podman's default capabilities (containers.conf `default_capabilities`).
pub const PODMAN_DEFAULT_CAPS: [&str; 11] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// The running kernel's (major, minor).
pub fn running_kernel() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_and_excludes() {
        let src = json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}, "excludes": {}},
                {"names": ["reboot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_BOOT"]}, "excludes": {}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}, "excludes": {}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "includes": {}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["s390_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}, "excludes": {}},
                {"names": ["new_one"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "9.0"}, "excludes": {}}
            ]
        });
        let out = resolve(&src, &PODMAN_DEFAULT_CAPS, (6, 1));
        let names: Vec<&str> = out["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["names"][0].as_str().unwrap())
            .collect();
        assert_eq!(names, ["read", "chroot", "clone"]);
        assert_eq!(out["defaultErrnoRet"], 38);
    }
}
