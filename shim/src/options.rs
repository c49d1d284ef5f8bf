//! The runtime options of a task, kept in its bundle: `delete` after a
//! lost shim has only the bundle to learn which skiff binary and state
//! root the task used.

use std::path::Path;

use crate::api::Options;
use crate::error::ShimError;

const FILE: &str = "options.json";

pub fn save(bundle: &Path, options: &Options) -> Result<(), ShimError> {
    let path = bundle.join(FILE);
    let json = serde_json::json!({
        "binary_name": options.binary_name,
        "root": options.root,
        "no_pivot_root": options.no_pivot_root,
        "systemd_cgroup": options.systemd_cgroup,
    });
    std::fs::write(&path, json.to_string())
        .map_err(ShimError::io(format!("write {}", path.display())))
}

/// The saved options; defaults when there are none.
pub fn load(bundle: &Path) -> Options {
    let Some(v) = std::fs::read(bundle.join(FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return Options::default();
    };
    let text = |key: &str| {
        v.get(key)
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_string()
    };
    Options {
        binary_name: text("binary_name"),
        root: text("root"),
        no_pivot_root: v.get("no_pivot_root").and_then(|b| b.as_bool()) == Some(true),
        systemd_cgroup: v.get("systemd_cgroup").and_then(|b| b.as_bool()) == Some(true),
        ..Options::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_options_load_back() {
        let dir = std::env::temp_dir().join(format!("skiff-shim-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir), Options::default());
        let opts = Options {
            binary_name: "/usr/local/bin/skiff".into(),
            root: "/run/x".into(),
            no_pivot_root: true,
            systemd_cgroup: true,
            ..Options::default()
        };
        save(&dir, &opts).unwrap();
        assert_eq!(load(&dir), opts);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
