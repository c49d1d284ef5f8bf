//! Shared pieces of the end-to-end suites: a private work directory, a
//! busybox-static rootfs and images built from it (nothing is pulled), a
//! daemon that is always stopped, a scenario runner that reports every
//! scenario before failing, and a pty for engines that want a terminal.
//!
//! Each suite starts its own daemon with private config, root, state and
//! socket directories; nothing global is touched.

pub mod cli;
pub mod ctr;
pub mod engines;
pub mod rootless;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Why a suite cannot run here, if it cannot: root, busybox-static and the
/// engine's binaries are needed.
pub fn missing(binaries: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("end-to-end tests need root".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox missing (apt install busybox-static)".into());
    }
    for b in binaries {
        if which(b).is_none() {
            return Some(format!(
                "{b} is not installed (scripts/test.sh installs it)"
            ));
        }
    }
    if !skiff_bin().is_file() {
        return Some(format!(
            "{} missing: build the workspace",
            skiff_bin().display()
        ));
    }
    None
}

/// Skips the calling test loudly when `missing` says so; under
/// SKIFF_REQUIRE_ALL (CI) that is a failure instead.
#[macro_export]
macro_rules! require {
    ($($bin:expr),*) => {
        if let Some(why) = $crate::missing(&[$($bin),*]) {
            assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
            eprintln!("SKIPPED {}: {}", module_path!(), why);
            return;
        }
    };
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The skiff binary built with the tests (target/<triple>/<profile>/skiff).
pub fn skiff_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // Tests live in target/<triple>/<profile>/deps, binaries next to skiff.
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("skiff")
}

/// A private directory under /tmp, removed when dropped.
pub struct Workdir {
    pub path: PathBuf,
}

impl Workdir {
    pub fn new(engine: &str) -> Workdir {
        let path = std::env::temp_dir().join(format!("skiff-e2e-{engine}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Workdir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        // Anything still mounted below (overlay snapshots) is detached first.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {0}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l",
                self.path.display()
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the (empty) parent cgroup `name` that the runtimes created for
/// an engine's containers (`/e2e` for containerd's namespace, ...), in
/// every hierarchy. Only empty directories go: rmdir refuses the rest.
pub fn remove_parent_cgroup(name: &str) {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path().join(name)).collect();
    dirs.push(Path::new("/sys/fs/cgroup").join(name));
    for d in dirs {
        remove_empty_tree(&d);
    }
}

/// rmdir of a cgroup and its sub-cgroups, deepest first (Podman puts
/// conmon in `libpod_parent/conmon`).
fn remove_empty_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Paths outside the work directory that an engine creates even when told
/// to keep its state elsewhere (Podman's blob-info cache under
/// /var/lib/containers). Those that did not exist when the guard was made
/// are removed when it drops; existing ones are never touched.
pub struct CreatedOutside {
    new: Vec<PathBuf>,
}

impl CreatedOutside {
    pub fn watch(paths: &[&str]) -> CreatedOutside {
        CreatedOutside {
            new: paths
                .iter()
                .map(PathBuf::from)
                .filter(|p| !p.exists())
                .collect(),
        }
    }
}

impl Drop for CreatedOutside {
    fn drop(&mut self) {
        for p in &self.new {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Prints the terminal's size and name. Engines set the size once the
/// container runs, so this waits for it; busybox `stty size` exits 0 even
/// when it cannot tell, so its output decides.
pub const TTY_SIZE_SCRIPT: &str = "for i in $(seq 100); do s=$(stty size 2>/dev/null); \
                                   [ -n \"$s\" ] && break; sleep 0.05; done; echo $s; tty";

/// Runs `cmd` (an engine's `run -t` of TTY_SIZE_SCRIPT) on a 24x91 pty
/// and checks that the container saw that size on a pts.
pub fn check_tty_size(mut cmd: Command) -> Result<(), String> {
    let mut pty = Pty::open(24, 91);
    pty.attach(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let text = pty.read_until(30, |t| t.contains("/dev/pts/"));
    let status = child.wait().unwrap();
    expect!(
        status.success() && text.contains("24 91"),
        "{status:?}: {text:?}"
    );
    Ok(())
}

/// What the suites build an image from: the busybox rootfs under `work`,
/// its tarball (`podman import`, `docker import`) and an OCI archive of it
/// named `image` (`ctr images import`).
pub struct BusyboxImage {
    pub rootfs: PathBuf,
    pub tar: PathBuf,
    pub archive: PathBuf,
}

pub fn busybox_image(work: &Workdir, image: &str) -> BusyboxImage {
    let rootfs = work.join("rootfs");
    busybox_rootfs(&rootfs);
    let tar = work.join("rootfs.tar");
    tar_dir(&rootfs, &tar);
    let archive = oci_archive(&tar, &work.path, image, &["sh"]);
    BusyboxImage {
        rootfs,
        tar,
        archive,
    }
}

/// A busybox-static rootfs with every applet, a root and a `tester` (1000)
/// user, and the directories engines mount over.
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", bin.join(applet));
        }
    }
    for d in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "etc",
        "root",
        "home/tester",
        "run",
        "var",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:tester:/home/tester:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\ntester:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/hostname"), "busybox\n").unwrap();
}

/// `tar` of a directory's content.
pub fn tar_dir(dir: &Path, out: &Path) {
    check(
        Command::new("tar")
            .arg("-C")
            .arg(dir)
            .arg("--numeric-owner")
            .arg("-cf")
            .arg(out)
            .arg("."),
    );
}

fn sha256(path: &Path) -> String {
    let out = check(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// An OCI image archive (an image layout in a tar, under `work`) with one
/// uncompressed layer holding `rootfs_tar`, tagged `name`, running `cmd`.
pub fn oci_archive(rootfs_tar: &Path, work: &Path, name: &str, cmd: &[&str]) -> PathBuf {
    let layout = work.join("oci-layout-dir");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = layout.join("blob.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        let digest = sha256(&tmp);
        std::fs::rename(&tmp, blobs.join(&digest)).unwrap();
        (digest, bytes.len())
    };
    let layer_digest = sha256(rootfs_tar);
    let layer_size = std::fs::metadata(rootfs_tar).unwrap().len();
    std::fs::copy(rootfs_tar, blobs.join(&layer_digest)).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_digest}"), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_digest}"), "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let out = work.join("image.oci.tar");
    tar_dir(&layout, &out);
    out
}

/// Runs a command to completion; panics with its output unless it succeeds.
pub fn check(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stdout of a command as a string, whatever its status.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A daemon that is stopped (TERM, then KILL) when dropped.
pub struct Daemon {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with its output in `log`, and waits until `ready` holds.
    pub fn start(name: &str, cmd: &mut Command, log: PathBuf, ready: impl Fn() -> bool) -> Daemon {
        let file = std::fs::File::create(&log).unwrap();
        // The daemon also stops when its starter dies without dropping it:
        // benchmarks are built with panic=abort, so a failed step there
        // runs no Drop and would leave a private containerd behind.
        let starter = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid between fork and exec only.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The starter may have died before the prctl.
                if libc::getppid() != starter {
                    return Err(std::io::Error::other("the starter is gone"));
                }
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut daemon = Daemon {
            name: name.to_string(),
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("{name} exited ({status}):\n{}", daemon.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became ready:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Scenario results of one suite: every scenario runs and is reported; the
/// suite fails at the end if any failed with skiff.
pub struct Report {
    engine: String,
    rows: Vec<(String, String, Result<(), String>)>,
}

impl Report {
    /// A report for `engine` of the current generation of engines.
    pub fn new(engine: &str) -> Report {
        Report {
            engine: format!("{engine} ({})", engines::Generation::current().name()),
            rows: Vec::new(),
        }
    }

    /// Runs `f` for `runtime`, catching panics as failures.
    pub fn run(&mut self, scenario: &str, runtime: &str, f: impl FnOnce() -> Result<(), String>) {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
                Err(p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()))
            });
        let mark = if result.is_ok() { "ok" } else { "FAIL" };
        eprintln!("{} {scenario} [{runtime}]: {mark}", self.engine);
        if let Err(e) = &result {
            eprintln!("    {e}");
        }
        self.rows
            .push((scenario.to_string(), runtime.to_string(), result));
    }

    /// Panics listing the scenarios skiff failed (through any path: a
    /// runtime named `skiff...`).
    pub fn finish(self) {
        self.finish_where(|rt| rt.starts_with("skiff"));
    }

    /// Panics listing every failed scenario, whatever the runtime: for a
    /// suite whose peers' results are part of what it proves (the systemd
    /// host's setup holds only if runc passes there).
    pub fn finish_all(self) {
        self.finish_where(|_| true);
    }

    fn finish_where(self, counts: impl Fn(&str) -> bool) {
        let failed: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, rt, r)| counts(rt) && r.is_err())
            .map(|(s, rt, r)| format!("{s} [{rt}]: {}", r.as_ref().unwrap_err()))
            .collect();
        assert!(
            failed.is_empty(),
            "{} scenarios failed:\n{}",
            self.engine,
            failed.join("\n")
        );
    }
}

/// Fails with a message unless `cond`.
#[macro_export]
macro_rules! expect {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(format!($($arg)*));
        }
    };
}

/// Waits until `f` holds, up to `secs` seconds.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

/// A pseudo-terminal: `slave` becomes a child's controlling terminal (for
/// `ctr run -t`, `docker run -t`), `master` is ours.
pub struct Pty {
    pub master: std::fs::File,
    pub slave: std::fs::File,
}

impl Pty {
    pub fn open(rows: u16, cols: u16) -> Pty {
        let mut master = 0;
        let mut slave = 0;
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty fills the two fds; the name and termios are NULL.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(r, 0, "openpty");
        use std::os::fd::FromRawFd;
        // SAFETY: fresh fds from openpty, owned here.
        unsafe {
            Pty {
                master: std::fs::File::from_raw_fd(master),
                slave: std::fs::File::from_raw_fd(slave),
            }
        }
    }

    /// Makes the pty the command's stdio and controlling terminal.
    pub fn attach(&self, cmd: &mut Command) {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let slave = self.slave.as_raw_fd();
        cmd.stdin(self.slave.try_clone().unwrap())
            .stdout(self.slave.try_clone().unwrap())
            .stderr(self.slave.try_clone().unwrap());
        // SAFETY: setsid and ioctl between fork and exec only.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Reads what arrives on the master until `done` holds or `secs` pass.
    pub fn read_until(&mut self, secs: u64, done: impl Fn(&str) -> bool) -> String {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let fd = self.master.as_raw_fd();
        // SAFETY: setting O_NONBLOCK on our own fd.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        let mut out = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline && !done(&out) {
            match self.master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => break,
            }
        }
        out
    }

    pub fn write(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }
}
