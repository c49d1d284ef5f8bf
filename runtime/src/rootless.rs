//! Running without root, with runc's rules: what `--rootless auto` decides,
//! where the state lives for a user, and which host ids a user may map
//! (its own, and the subordinate ids /etc/subuid and /etc/subgid give it).

use std::path::{Path, PathBuf};

use crate::cli::Rootless;

/// True when this process is in a user namespace other than the initial
/// one, which maps every id onto itself.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| !is_initial_map(&map))
}

fn is_initial_map(map: &str) -> bool {
    map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

/// `--rootless`: as given, or for `auto` true for a user that is not root
/// and for root in a user namespace (rootlesskit, `podman unshare`), whose
/// cgroups are the user's, not its own.
pub fn enabled(flag: Rootless) -> bool {
    match flag {
        Rootless::True => true,
        Rootless::False => false,
        Rootless::Auto => !nix::unistd::geteuid().is_root() || in_user_namespace(),
    }
}

/// The state root when `--root` is not given: `$XDG_RUNTIME_DIR/skiff` for
/// a user that is not root, and for root in a user namespace whose `USER`
/// is not root (an engine started by a user keeps the user's
/// environment); `/run/skiff` otherwise. True when it is the XDG one.
pub fn default_root() -> (PathBuf, bool) {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
    let user_env = std::env::var("USER").unwrap_or_default();
    match xdg {
        Some(dir)
            if !nix::unistd::geteuid().is_root() || (in_user_namespace() && user_env != "root") =>
        {
            (Path::new(&dir).join("skiff"), true)
        }
        _ => (PathBuf::from("/run/skiff"), false),
    }
}

/// Makes the state root under `$XDG_RUNTIME_DIR`: private to the user, and
/// sticky so the periodic clean-up the XDG base directory spec allows
/// leaves it alone.
pub fn prepare_xdg_root(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o1700))
}

/// One `name:start:count` line of /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub count: u64,
}

/// The ranges a subordinate-id file gives to the user named `name` or
/// numbered `id` (both spellings are allowed there).
pub fn subordinate_ranges(text: &str, name: Option<&str>, id: u32) -> Vec<Range> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, ':');
            let owner = fields.next()?;
            let start = fields.next()?.trim().parse().ok()?;
            let count = fields.next()?.trim().parse().ok()?;
            (owner == id || Some(owner) == name).then_some(Range { start, count })
        })
        .collect()
}

/// True when host ids `start..start+size` are `own` or lie inside one
/// of `ranges`.
pub fn may_map(start: u32, size: u32, own: u32, ranges: &[Range]) -> bool {
    let (start, end) = (u64::from(start), u64::from(start) + u64::from(size));
    (start == u64::from(own) && end == start + 1)
        || ranges
            .iter()
            .any(|r| start >= r.start && end <= r.start + r.count)
}

/// The name of the host user `uid`, from the host's /etc/passwd (read
/// directly: a static runtime has no NSS).
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[2].parse::<u32>().ok() == Some(uid))
            .then(|| fields[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_values_are_kept() {
        assert!(enabled(Rootless::True));
        assert!(!enabled(Rootless::False));
        // The tests run as root on the host, or as a user: auto follows.
        assert_eq!(
            enabled(Rootless::Auto),
            !nix::unistd::geteuid().is_root() || in_user_namespace()
        );
    }

    #[test]
    fn initial_namespace_is_recognised() {
        assert!(is_initial_map("         0          0 4294967295\n"));
        assert!(!is_initial_map("         0       1000          1\n"));
        assert!(!is_initial_map("0 0 4294967295\n1 1 1\n"));
    }

    #[test]
    fn subordinate_ids_by_name_or_number() {
        let text = "alice:100000:65536\n1001:300000:10\nbob:200000:65536\n# junk\nbad:x:1\n";
        assert_eq!(
            subordinate_ranges(text, Some("alice"), 1000),
            vec![Range {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            subordinate_ranges(text, Some("carol"), 1001),
            vec![Range {
                start: 300000,
                count: 10
            }]
        );
        assert!(subordinate_ranges(text, None, 7).is_empty());
    }

    #[test]
    fn only_own_or_subordinate_ids_may_be_mapped() {
        let ranges = [Range {
            start: 100000,
            count: 65536,
        }];
        assert!(may_map(1000, 1, 1000, &ranges));
        assert!(!may_map(1000, 2, 1000, &ranges));
        assert!(may_map(100000, 65536, 1000, &ranges));
        assert!(may_map(100001, 10, 1000, &ranges));
        assert!(!may_map(100000, 65537, 1000, &ranges));
        assert!(!may_map(0, 1, 1000, &ranges));
        assert!(!may_map(u32::MAX, 2, 1000, &[]));
    }
}
