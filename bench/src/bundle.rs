//! The busybox bundles the benchmarks run.

use std::os::unix::fs::symlink;
use std::path::Path;

/// Writes a busybox bundle running `args`; `limits` adds a memory, pids
/// and cpu limit (what a Kubernetes pod with requests and limits has).
pub fn build_bundle(dir: &Path, busybox: &Path, args: &[&str], limits: bool) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "true", "sleep", "awk"] {
        let _ = symlink("busybox", rootfs.join("bin").join(applet));
    }
    for d in ["proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(include_str!("../../runtime/src/default_spec.json")).unwrap();
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(args);
    if limits {
        config["linux"]["resources"]["memory"] = serde_json::json!({"limit": 256 << 20});
        config["linux"]["resources"]["pids"] = serde_json::json!({"limit": 100});
        config["linux"]["resources"]["cpu"] =
            serde_json::json!({"shares": 512, "quota": 50000, "period": 100000});
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}
