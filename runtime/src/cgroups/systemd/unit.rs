//! `linux.cgroupsPath` under the systemd driver: `slice:prefix:name`, as
//! runc's docs/systemd.md describes it, turned into a unit name, its
//! parent slice and the cgroup directory systemd gives it.

use std::path::PathBuf;

/// The container's systemd unit, as planned from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// `skiff-<id>.scope`, or a slice when the name asks for one.
    pub name: String,
    /// The parent slice (`system.slice`, `-.slice` for the root).
    pub slice: String,
    /// The unit's cgroup, absolute within the unified hierarchy.
    pub cgroup: PathBuf,
}

impl Unit {
    /// True when the unit is a slice (`name` ended in `.slice`): it gets
    /// `Wants=` on its parent instead of `Slice=`, and no PIDs.
    pub fn is_slice(&self) -> bool {
        self.name.ends_with(".slice")
    }
}

/// Why a `cgroupsPath` does not name a unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("linux.cgroupsPath {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

/// The default slice of containers started by root.
const DEFAULT_SLICE: &str = "system.slice";
/// The prefix of the default unit name.
const DEFAULT_PREFIX: &str = "skiff";
/// systemd's limit on a unit name.
const UNIT_NAME_MAX: usize = 255;

/// Plans the unit of container `id` from `cgroupsPath` (absent or empty:
/// `system.slice:skiff:<id>`).
pub fn plan(cgroups_path: Option<&str>, id: &str) -> Result<Unit, PathError> {
    let text = cgroups_path.unwrap_or("");
    let bad = |reason: &str| PathError {
        path: text.to_string(),
        reason: reason.to_string(),
    };
    let (slice, prefix, name) = if text.is_empty() {
        (DEFAULT_SLICE, DEFAULT_PREFIX, id)
    } else {
        let parts: Vec<&str> = text.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(bad(
                "the systemd cgroup driver expects \"slice:prefix:name\" (e.g. system.slice:docker:ID)",
            ));
        };
        (slice, prefix, name)
    };
    let slice = match slice {
        "" => DEFAULT_SLICE,
        "-" => "-.slice",
        s => s,
    };
    let slice_dir = expand_slice(slice).map_err(|r| bad(&r))?;
    if name.is_empty() {
        return Err(bad("the name part is empty"));
    }
    for (what, part) in [("prefix", prefix), ("name", name)] {
        if let Some(c) = part.chars().find(|c| !unit_char(*c)) {
            return Err(bad(&format!(
                "the {what} {part:?} has {c:?}, which a systemd unit name cannot hold"
            )));
        }
    }
    let unit = if name.ends_with(".slice") {
        expand_slice(name).map_err(|r| bad(&r))?;
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit.len() > UNIT_NAME_MAX {
        return Err(bad(&format!(
            "the unit name {unit:?} is longer than systemd's {UNIT_NAME_MAX} characters"
        )));
    }
    Ok(Unit {
        cgroup: slice_dir.join(&unit),
        name: unit,
        slice: slice.to_string(),
    })
}

/// Characters systemd takes in a unit name (besides the `.` of the type).
fn unit_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@')
}

/// A slice's cgroup: each `-` in its name is a level, so `a-b.slice` is
/// `/a.slice/a-b.slice`; `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<PathBuf, String> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(format!("the slice {slice:?} does not end in .slice"));
    };
    if stem == "-" {
        return Ok(PathBuf::from("/"));
    }
    if stem.is_empty() || stem.contains('/') {
        return Err(format!("{slice:?} is not a slice name"));
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return Err(format!(
                "the slice {slice:?} has an empty level (a leading, trailing or double '-')"
            ));
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_a_scope_in_system_slice() {
        let u = plan(None, "c1").unwrap();
        assert_eq!(u.name, "skiff-c1.scope");
        assert_eq!(u.slice, "system.slice");
        assert_eq!(u.cgroup, PathBuf::from("/system.slice/skiff-c1.scope"));
        assert_eq!(plan(Some(""), "c1").unwrap(), u);
        assert!(!u.is_slice());
    }

    #[test]
    fn engines_paths() {
        let docker = plan(Some("system.slice:docker:abc"), "abc").unwrap();
        assert_eq!(
            docker.cgroup,
            PathBuf::from("/system.slice/docker-abc.scope")
        );
        let k8s = plan(
            Some("kubepods-burstable-pod12.slice:cri-containerd:abc"),
            "abc",
        )
        .unwrap();
        assert_eq!(
            k8s.cgroup,
            PathBuf::from(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice/cri-containerd-abc.scope"
            )
        );
        assert_eq!(k8s.slice, "kubepods-burstable-pod12.slice");
        let podman = plan(Some("machine.slice:libpod:abc"), "abc").unwrap();
        assert_eq!(podman.name, "libpod-abc.scope");
    }

    #[test]
    fn empty_slice_and_root_slice() {
        assert_eq!(plan(Some(":p:n"), "x").unwrap().slice, "system.slice");
        for root in ["-", "-.slice"] {
            let u = plan(Some(&format!("{root}:p:n")), "x").unwrap();
            assert_eq!(u.slice, "-.slice");
            assert_eq!(u.cgroup, PathBuf::from("/p-n.scope"));
        }
        assert_eq!(plan(Some("a.slice::n"), "x").unwrap().name, "n.scope");
    }

    #[test]
    fn a_name_ending_in_slice_makes_a_slice() {
        let u = plan(Some("a.slice:ignored:a-b.slice"), "x").unwrap();
        assert!(u.is_slice());
        assert_eq!(u.name, "a-b.slice");
        assert_eq!(u.cgroup, PathBuf::from("/a.slice/a-b.slice"));
    }

    #[test]
    fn invalid_forms_name_the_field() {
        for bad in [
            "/plain/path",
            "a:b",
            "a:b:c:d",
            "system:p:n",
            "a/b.slice:p:n",
            "a--b.slice:p:n",
            "-a.slice:p:n",
            ".slice:p:n",
            "system.slice:p:",
            "system.slice:p/q:n",
            "system.slice:p:n m",
            "system.slice:p:-x.slice",
        ] {
            let e = plan(Some(bad), "x").unwrap_err().to_string();
            assert!(e.starts_with("linux.cgroupsPath "), "{bad}: {e}");
        }
        let long = format!("system.slice:p:{}", "n".repeat(260));
        assert!(plan(Some(&long), "x").is_err());
    }
}
