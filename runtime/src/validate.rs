//! Checks on a parsed spec that need no kernel: everything that can be
//! rejected before a process, directory or cgroup exists is rejected here,
//! with the field that is wrong.

use std::collections::HashSet;
use std::path::{Component, Path};

use oci_spec::runtime::{Hook, LinuxNamespace, LinuxNamespaceType, Process, Spec};

/// A configuration field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

type Result = std::result::Result<(), Invalid>;

/// Validates everything about `spec` that does not need the host.
pub fn spec(spec: &Spec) -> Result {
    process(spec)?;
    hooks(spec)?;
    let namespaces = namespaces(spec)?;
    user_mappings(spec, &namespaces)?;
    uts(spec, &namespaces)?;
    sysctls(spec, &namespaces)?;
    time_offsets(spec)?;
    mounts(spec)?;
    linux_misc(spec)?;
    net_devices(spec)?;
    if let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.memory_policy().as_ref())
    {
        crate::process::attributes::memory_policy(p)?;
    }
    Ok(())
}

fn process(spec: &Spec) -> Result {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Invalid::new("process", "missing: create and run need a process"))?;
    process_fields(process)
}

/// The checks every process gets, the init's (`config.json`) and an exec's
/// (`--process` or the command line) alike.
pub fn process_fields(process: &Process) -> Result {
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(Invalid::new("process.args", "must not be empty"));
    }
    if process.cwd().as_os_str().is_empty() {
        return Err(Invalid::new("process.cwd", "must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(Invalid::new(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    for (i, entry) in process
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if entry.contains('\0') {
            return Err(Invalid::new(
                format!("process.env[{i}]"),
                "contains a NUL byte",
            ));
        }
        // runc refuses these too: the process would get no such variable.
        if !entry.contains('=') {
            return Err(Invalid::new(
                format!("process.env[{i}]"),
                format!("{entry:?} is not KEY=VALUE"),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, rlimit) in process
        .rlimits()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("process.rlimits[{i}]");
        if !seen.insert(rlimit.typ().to_string()) {
            return Err(Invalid::new(field, format!("duplicate {}", rlimit.typ())));
        }
        if rlimit.soft() > rlimit.hard() {
            return Err(Invalid::new(
                field,
                format!(
                    "soft limit {} is above hard limit {}",
                    rlimit.soft(),
                    rlimit.hard()
                ),
            ));
        }
    }
    if let Some(prio) = process.io_priority() {
        if !(0..=7).contains(&prio.priority()) {
            return Err(Invalid::new(
                "process.ioPriority.priority",
                "must be between 0 and 7",
            ));
        }
    }
    if let Some(sched) = process.scheduler() {
        if let Some(nice) = *sched.nice() {
            if !(-20..=19).contains(&nice) {
                return Err(Invalid::new(
                    "process.scheduler.nice",
                    "must be between -20 and 19",
                ));
            }
        }
    }
    Ok(())
}

/// A terminal needs a console socket to send the pty to (the caller
/// detaches), and a console socket needs a terminal: the caller would wait
/// on it for a pty that never comes (as runc).
pub fn console(process: &Process, console_socket: bool) -> Result {
    let terminal = process.terminal().unwrap_or(false);
    if terminal && !console_socket {
        return Err(Invalid::new(
            "process.terminal",
            "cannot allocate a tty if skiff will detach without setting --console-socket",
        ));
    }
    if !terminal && console_socket {
        return Err(Invalid::new(
            "process.terminal",
            "cannot use console socket if skiff will not allocate a tty",
        ));
    }
    Ok(())
}

fn hooks(spec: &Spec) -> Result {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let kinds: [(&str, &Option<Vec<Hook>>); 6] = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (kind, list) in kinds {
        for (i, hook) in list.as_deref().unwrap_or_default().iter().enumerate() {
            if !hook.path().is_absolute() {
                return Err(Invalid::new(
                    format!("hooks.{kind}[{i}].path"),
                    format!("{:?} is not an absolute path", hook.path()),
                ));
            }
            if matches!(hook.timeout(), Some(t) if t <= 0) {
                return Err(Invalid::new(
                    format!("hooks.{kind}[{i}].timeout"),
                    "must be greater than zero",
                ));
            }
        }
    }
    Ok(())
}

/// The namespace types the container gets, new or joined.
fn namespaces(spec: &Spec) -> std::result::Result<HashSet<LinuxNamespaceType>, Invalid> {
    let mut seen = HashSet::new();
    for (i, ns) in crate::namespaces::of_spec(spec).iter().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(Invalid::new(
                format!("linux.namespaces[{i}]"),
                format!("duplicate {} namespace", ns.typ()),
            ));
        }
        if let Some(path) = ns.path() {
            if !path.is_absolute() {
                return Err(Invalid::new(
                    format!("linux.namespaces[{i}].path"),
                    format!("{path:?} is not an absolute path"),
                ));
            }
        }
    }
    let new_user = crate::namespaces::of_spec(spec)
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_user && !crate::namespaces::owns_mount_namespace(spec) {
        // The root is built aside and the init returns to the container's
        // mount namespace (rootfs::set_aside); from a new user namespace it
        // could not enter one it does not own.
        return Err(Invalid::new(
            "linux.namespaces",
            "a new user namespace needs a new mount namespace",
        ));
    }
    Ok(seen)
}

fn user_mappings(spec: &Spec, namespaces: &HashSet<LinuxNamespaceType>) -> Result {
    let linux = spec.linux().as_ref();
    let uid = linux
        .and_then(|l| l.uid_mappings().as_ref())
        .is_some_and(|m| !m.is_empty());
    let gid = linux
        .and_then(|l| l.gid_mappings().as_ref())
        .is_some_and(|m| !m.is_empty());
    let new_user =
        spec_namespace(spec, LinuxNamespaceType::User).is_some_and(|ns| ns.path().is_none());
    if new_user && (!uid || !gid) {
        let field = if uid {
            "linux.gidMappings"
        } else {
            "linux.uidMappings"
        };
        return Err(Invalid::new(field, "required with a new user namespace"));
    }
    if (uid || gid) && !namespaces.contains(&LinuxNamespaceType::User) {
        return Err(Invalid::new(
            "linux.uidMappings",
            "id mappings need a user namespace in linux.namespaces",
        ));
    }
    Ok(())
}

fn uts(spec: &Spec, namespaces: &HashSet<LinuxNamespaceType>) -> Result {
    let private = namespaces.contains(&LinuxNamespaceType::Uts);
    for (field, value) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) && !private {
            return Err(Invalid::new(
                field,
                "cannot be set without a private UTS namespace",
            ));
        }
    }
    Ok(())
}

/// Sysctls are only allowed when they belong to a namespace the container
/// owns, so a container can never change the host's kernel settings.
fn sysctls(spec: &Spec, namespaces: &HashSet<LinuxNamespaceType>) -> Result {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for key in sysctl.keys() {
        let field = format!("linux.sysctl[{key:?}]");
        let normalized = key.replace('/', ".");
        if normalized
            .split('.')
            .any(|part| part.is_empty() || part == "..")
        {
            return Err(Invalid::new(field, "not a valid sysctl name"));
        }
        let needs = sysctl_namespace(&normalized);
        match needs {
            Some(ns) if namespaces.contains(&ns) => {}
            Some(ns) => {
                return Err(Invalid::new(
                    field,
                    format!(
                        "needs a private {} namespace",
                        crate::namespaces::type_name(ns)
                    ),
                ))
            }
            None => {
                return Err(Invalid::new(
                    field,
                    "not in a separate kernel namespace; it would change the host",
                ))
            }
        }
    }
    Ok(())
}

/// The namespace a sysctl is scoped to, if any (the same table as runc).
pub fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: [&str; 6] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
    ];
    const IPC_MORE: [&str; 2] = ["kernel.shmmni", "kernel.shm_rmid_forced"];
    if IPC.contains(&key) || IPC_MORE.contains(&key) || key.starts_with("fs.mqueue.") {
        return Some(LinuxNamespaceType::Ipc);
    }
    if key.starts_with("net.") {
        return Some(LinuxNamespaceType::Network);
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return Some(LinuxNamespaceType::Uts);
    }
    // The ucounts limits (user.max_*) are kept per user namespace and
    // written in the writer's own (runc 1.4 allows them the same way).
    if key.starts_with("user.") {
        return Some(LinuxNamespaceType::User);
    }
    None
}

fn time_offsets(spec: &Spec) -> Result {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref());
    if offsets.is_some_and(|o| !o.is_empty()) {
        match spec_namespace(spec, LinuxNamespaceType::Time) {
            None => return Err(Invalid::new("linux.timeOffsets", "need a time namespace")),
            Some(ns) if ns.path().is_some() => {
                return Err(Invalid::new(
                    "linux.timeOffsets",
                    "cannot be set when joining an existing time namespace",
                ))
            }
            Some(_) => {}
        }
        for key in offsets.into_iter().flat_map(|o| o.keys()) {
            if key != "monotonic" && key != "boottime" {
                return Err(Invalid::new(
                    format!("linux.timeOffsets[{key:?}]"),
                    "only monotonic and boottime clocks can be offset",
                ));
            }
        }
    }
    Ok(())
}

fn mounts(spec: &Spec) -> Result {
    for (i, mount) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let dest = mount.destination();
        if dest.as_os_str().is_empty() {
            return Err(Invalid::new(
                format!("mounts[{i}].destination"),
                "must not be empty",
            ));
        }
        if escapes(dest) {
            return Err(Invalid::new(
                format!("mounts[{i}].destination"),
                format!("{dest:?} points outside the container"),
            ));
        }
    }
    Ok(())
}

/// `linux.netDevices` go into a network namespace made for the container
/// (one joined by path is someone else's, the runtime's is the host's),
/// under names the kernel takes, one device per name.
fn net_devices(spec: &Spec) -> Result {
    let Some(devices) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.net_devices().as_ref())
        .filter(|d| !d.is_empty())
    else {
        return Ok(());
    };
    match spec_namespace(spec, LinuxNamespaceType::Network) {
        Some(ns) if ns.path().is_none() => {}
        Some(_) => {
            return Err(Invalid::new(
                "linux.netDevices",
                "need a new network namespace, not one joined by path",
            ))
        }
        None => {
            return Err(Invalid::new(
                "linux.netDevices",
                "need a new network namespace in linux.namespaces; without one they would stay on the host",
            ))
        }
    }
    let mut names: Vec<&String> = devices.keys().collect();
    names.sort();
    let mut taken = HashSet::new();
    for host_name in names {
        let field = format!("linux.netDevices[{host_name:?}]");
        if let Some(why) = crate::netdev::invalid_name(host_name) {
            return Err(Invalid::new(field, format!("the interface name {why}")));
        }
        let name = devices[host_name]
            .name()
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(host_name);
        if let Some(why) = crate::netdev::invalid_name(name) {
            return Err(Invalid::new(
                format!("{field}.name"),
                format!("{name:?} {why}"),
            ));
        }
        if !taken.insert(name) {
            return Err(Invalid::new(
                format!("{field}.name"),
                format!("{name:?} is given to another device too"),
            ));
        }
    }
    Ok(())
}

fn linux_misc(spec: &Spec) -> Result {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if let Some(prop) = linux.rootfs_propagation() {
        if crate::rootfs::propagation_flag(prop).is_none() {
            return Err(Invalid::new(
                "linux.rootfsPropagation",
                format!("unknown propagation {prop:?}"),
            ));
        }
    }
    if let Some(path) = linux.cgroups_path() {
        if escapes(path) {
            return Err(Invalid::new(
                "linux.cgroupsPath",
                format!("{path:?} points outside the cgroup hierarchy"),
            ));
        }
    }
    for (i, dev) in linux
        .devices()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !dev.path().is_absolute() || escapes(dev.path()) {
            return Err(Invalid::new(
                format!("linux.devices[{i}].path"),
                format!("{:?} must be an absolute path inside /dev", dev.path()),
            ));
        }
    }
    Ok(())
}

/// True when a path climbs above its root with `..`.
fn escapes(path: &Path) -> bool {
    let mut depth: i32 = 0;
    for c in path.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// The `linux.namespaces` entry of type `typ`, if any.
pub fn spec_namespace(spec: &Spec, typ: LinuxNamespaceType) -> Option<&LinuxNamespace> {
    crate::namespaces::of_spec(spec)
        .iter()
        .find(|ns| ns.typ() == typ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_from(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        })
    }

    fn err(json: serde_json::Value) -> String {
        spec(&spec_from(json)).unwrap_err().to_string()
    }

    #[test]
    fn base_is_valid() {
        spec(&spec_from(base())).unwrap();
    }

    #[test]
    fn process_checks() {
        let mut j = base();
        j["process"]["args"] = serde_json::json!([]);
        assert_eq!(err(j), "process.args: must not be empty");
        let mut j = base();
        j["process"]["cwd"] = "rel".into();
        assert_eq!(err(j), "process.cwd: \"rel\" is not an absolute path");
        let mut j = base();
        j["process"]["cwd"] = "".into();
        assert_eq!(err(j), "process.cwd: must not be empty");
        let mut j = base();
        j["process"]["env"] = serde_json::json!(["A=1", "NOEQ"]);
        assert_eq!(err(j), "process.env[1]: \"NOEQ\" is not KEY=VALUE");
        let mut j = base();
        j.as_object_mut().unwrap().remove("process");
        assert!(err(j).starts_with("process: missing"));
        let mut j = base();
        j["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]);
        assert_eq!(
            err(j),
            "process.rlimits[0]: soft limit 10 is above hard limit 5"
        );
    }

    #[test]
    fn namespace_checks() {
        let mut j = base();
        j["linux"]["namespaces"] =
            serde_json::json!([{"type": "pid"}, {"type": "pid"}, {"type": "mount"}]);
        assert_eq!(err(j), "linux.namespaces[1]: duplicate pid namespace");
        let mut j = base();
        j["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "user"}]);
        assert_eq!(
            err(j),
            "linux.namespaces: a new user namespace needs a new mount namespace"
        );
        let mut j = base();
        j["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}]);
        assert_eq!(
            err(j),
            "linux.uidMappings: required with a new user namespace"
        );
    }

    #[test]
    fn hostname_needs_uts() {
        let mut j = base();
        j["hostname"] = "x".into();
        assert_eq!(
            err(j),
            "hostname: cannot be set without a private UTS namespace"
        );
    }

    #[test]
    fn sysctl_scoping() {
        let mut j = base();
        j["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
        assert_eq!(
            err(j),
            "linux.sysctl[\"net.ipv4.ip_forward\"]: needs a private network namespace"
        );
        let mut j = base();
        j["linux"]["sysctl"] = serde_json::json!({"kernel.panic": "1"});
        assert!(err(j).contains("not in a separate kernel namespace"));
        let mut j = base();
        j["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "ipc"}]);
        j["linux"]["sysctl"] = serde_json::json!({"kernel.shmmax": "1", "fs.mqueue.msg_max": "5"});
        spec(&spec_from(j)).unwrap();
        let mut j = base();
        j["linux"]["sysctl"] = serde_json::json!({"user.max_user_namespaces": "5"});
        assert_eq!(
            err(j),
            "linux.sysctl[\"user.max_user_namespaces\"]: needs a private user namespace"
        );
    }

    #[test]
    fn hook_checks() {
        let mut j = base();
        j["hooks"] = serde_json::json!({"poststart": [{"path": "/bin/true", "timeout": 0}]});
        assert_eq!(
            err(j),
            "hooks.poststart[0].timeout: must be greater than zero"
        );
        let mut j = base();
        j["hooks"] = serde_json::json!({"prestart": [{"path": "true"}]});
        assert_eq!(
            err(j),
            "hooks.prestart[0].path: \"true\" is not an absolute path"
        );
    }

    #[test]
    fn escaping_paths() {
        assert!(escapes(Path::new("/../etc")));
        assert!(escapes(Path::new("a/../../b")));
        assert!(!escapes(Path::new("/a/../b")));
        let mut j = base();
        j["linux"]["cgroupsPath"] = "/../../x".into();
        assert!(err(j).starts_with("linux.cgroupsPath"));
        let mut j = base();
        j["linux"]["rootfsPropagation"] = "sideways".into();
        assert_eq!(
            err(j),
            "linux.rootfsPropagation: unknown propagation \"sideways\""
        );
    }

    #[test]
    fn net_devices_need_a_new_network_namespace_and_good_names() {
        let mut j = base();
        j["linux"]["netDevices"] = serde_json::json!({"eth1": {}});
        assert!(err(j.clone()).starts_with("linux.netDevices: need a new network namespace"));
        j["linux"]["namespaces"] =
            serde_json::json!([{"type": "mount"}, {"type": "network", "path": "/proc/1/ns/net"}]);
        assert!(err(j.clone()).contains("not one joined by path"));
        j["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "network"}]);
        spec(&spec_from(j.clone())).unwrap();
        j["linux"]["netDevices"] = serde_json::json!({"eth1": {"name": "a/b"}});
        assert!(err(j.clone()).starts_with("linux.netDevices[\"eth1\"].name: \"a/b\""));
        j["linux"]["netDevices"] = serde_json::json!({"eth1": {"name": "x"}, "x": {}});
        assert_eq!(
            err(j.clone()),
            "linux.netDevices[\"x\"].name: \"x\" is given to another device too"
        );
        j["linux"]["netDevices"] = serde_json::json!({"sixteen-bytes-xx": {}});
        assert!(err(j).contains("longer than 15 bytes"));
    }

    #[test]
    fn time_offsets_need_a_new_time_namespace() {
        let mut j = base();
        j["linux"]["timeOffsets"] = serde_json::json!({"monotonic": {"secs": 1, "nanosecs": 0}});
        assert_eq!(err(j), "linux.timeOffsets: need a time namespace");
    }
}
