//! The bundle material every case starts from: a busybox-static rootfs with
//! the checker at /checker, and runc's default config (terminal off,
//! running `/checker report`).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The busybox every rootfs is made from.
pub const BUSYBOX: &str = "/bin/busybox";

static WORK: OnceLock<PathBuf> = OnceLock::new();
static CHECKER: OnceLock<PathBuf> = OnceLock::new();

/// Sets the work directory and the checker binary (once, at startup).
pub fn init(work: PathBuf, checker: PathBuf) {
    let _ = WORK.set(work);
    let _ = CHECKER.set(checker);
}

/// The work directory.
pub fn work() -> &'static Path {
    WORK.get()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new("/tmp"))
}

/// Builds a rootfs: busybox with its applets, the checker, and the usual
/// top-level directories and files.
pub fn make_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    let _ = std::fs::create_dir_all(&bin);
    let _ = std::fs::copy(BUSYBOX, bin.join("busybox"));
    if let Some(checker) = CHECKER.get() {
        let _ = std::fs::copy(checker, dir.join("checker"));
    }
    let applets = std::process::Command::new(BUSYBOX).arg("--list").output();
    if let Ok(out) = applets {
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", bin.join(applet));
            }
        }
    }
    for d in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "etc",
        "root",
        "home/user",
        "mnt",
        "run",
    ] {
        let _ = std::fs::create_dir_all(dir.join(d));
    }
    let _ = std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n",
    );
    let _ = std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
    );
}

/// One rootfs shared by every bundle that does not change it.
pub fn shared_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = work().join("shared-rootfs");
        let _ = std::fs::remove_dir_all(&dir);
        make_rootfs(&dir);
        dir
    })
}

/// runc's `spec` output (1.1), with the terminal off, the checker as the
/// process, and an absolute rootfs path.
pub fn default_config(rootfs: &Path) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/checker", "report"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": "conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}
