//! Shared helpers for the integration tests: a busybox-static rootfs, a
//! bundle builder with runc's default config (terminal off), and a runner
//! that drives the real `skiff` binary with a private `--root`.
//!
//! The tests need root and busybox-static; without them every test says
//! so and returns early (CI installs both and runs as root).

#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

pub const BUSYBOX: &str = "/bin/busybox";

/// Why the suite cannot run here, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("integration tests need root".into());
    }
    let out = Command::new("file").arg("-L").arg(BUSYBOX).output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("statically linked") => None,
        Ok(_) => Some(format!(
            "{BUSYBOX} is not a static busybox (apt install busybox-static)"
        )),
        // Without file(1), trust a busybox that runs.
        Err(_) if Path::new(BUSYBOX).exists() => None,
        Err(_) => Some(format!("{BUSYBOX} missing (apt install busybox-static)")),
    }
}

/// Skips the calling test, loudly, when the prerequisites are absent. With
/// SKIFF_REQUIRE_ALL set (CI, scripts/test.sh) a missing prerequisite is a
/// failure instead: there, nothing may be skipped.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(why) = $crate::support::missing_prerequisite() {
            assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
            eprintln!("SKIPPED {}: {}", module_path!(), why);
            return;
        }
    };
}

/// This test binary's scratch directory, made on first use.
static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

pub fn scratch() -> &'static PathBuf {
    SCRATCH.get_or_init(|| {
        let base = std::env::var_os("SKIFF_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("skiff-tests"));
        let dir = base.join(format!("{}-{}", std::process::id(), unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: registers a plain function to run at process exit.
        unsafe { libc::atexit(remove_scratch) };
        dir
    })
}

/// Removes this test binary's scratch directory when it exits (bundles,
/// state roots and rootfs copies; containers are already deleted by the
/// tests themselves).
extern "C" fn remove_scratch() {
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn unique_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_000)
        .unwrap_or(0)
}

/// Builds a busybox rootfs in `dir`: /bin/busybox plus one relative symlink
/// per applet, and the usual top-level directories.
pub fn make_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", bin.join(applet));
        }
    }
    for d in [
        "proc", "sys", "dev", "tmp", "etc", "root", "usr/bin", "sbin",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000::/home/user:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// One rootfs shared by every bundle that does not need its own.
pub fn shared_rootfs() -> &'static PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = scratch().join("shared-rootfs");
        make_rootfs(&dir);
        dir
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique container id for a test.
pub fn unique_id(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A bundle directory with a config.json.
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub config: Value,
}

/// runc's default config, with the terminal off and `args` to run.
pub fn default_config(rootfs: &Path, args: &[&str]) -> Value {
    let mut c: Value = serde_json::from_str(skiff::commands::spec::DEFAULT).unwrap();
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(args);
    c["root"]["path"] = json!(rootfs);
    c
}

impl Bundle {
    /// A bundle on the shared rootfs running `sh -c script`.
    pub fn sh(script: &str) -> Bundle {
        Bundle::new(&["sh", "-c", script])
    }

    /// A bundle on the shared rootfs running `args`.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = scratch().join(unique_id("bundle"));
        std::fs::create_dir_all(&dir).unwrap();
        let rootfs = shared_rootfs().clone();
        let config = default_config(&rootfs, args);
        Bundle {
            dir,
            rootfs,
            config,
        }
    }

    /// A bundle with a private copy of the rootfs (for tests that change it).
    pub fn own_rootfs(args: &[&str]) -> Bundle {
        let mut b = Bundle::new(args);
        let rootfs = b.dir.join("rootfs");
        make_rootfs(&rootfs);
        b.config["root"]["path"] = json!("rootfs");
        b.rootfs = rootfs;
        b
    }

    /// Sets `linux.namespaces` to new namespaces of these types, dropping the
    /// hostname when there is no UTS namespace to hold it.
    pub fn namespaces(&mut self, types: &[&str]) -> &mut Self {
        let list: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        self.config["linux"]["namespaces"] = json!(list);
        if !types.contains(&"uts") {
            self.config.as_object_mut().unwrap().remove("hostname");
        }
        self
    }

    /// Binds the probe at `bin` read-only into the container as `/name`.
    pub fn bind_probe(&mut self, bin: &Path) -> &mut Self {
        let name = bin.file_name().unwrap().to_str().unwrap();
        self.config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": format!("/{name}"), "type": "bind", "source": bin, "options": ["bind", "ro"]
        }));
        self
    }

    /// Writes config.json (call after editing `config`).
    pub fn write(&self) -> &Self {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
        self
    }
}

/// A private `--root` state directory and the skiff binary.
pub struct Skiff {
    pub root: PathBuf,
    pub bin: PathBuf,
}

/// The result of one skiff invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless the exit code is 0.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed with exactly one error line
    /// containing every fragment.
    pub fn fails_with(self, fragments: &[&str]) -> Run {
        assert_ne!(self.code, 0, "expected failure; stdout: {}", self.stdout);
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains("level=error"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "one error line expected, stderr:\n{}",
            self.stderr
        );
        for f in fragments {
            assert!(lines[0].contains(f), "{f:?} not in {:?}", lines[0]);
        }
        self
    }
}

/// Runs `cmd` and collects the result. Output goes through files, not
/// pipes: a created container keeps the runtime's stdio open, so a pipe
/// would never see end-of-file.
pub fn collect(mut cmd: Command) -> Run {
    let out_path = scratch().join(unique_id("stdout"));
    let err_path = scratch().join(unique_id("stderr"));
    let status = cmd
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    run
}

pub fn skiff_bin() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

impl Skiff {
    pub fn new() -> Skiff {
        Skiff::with_binary(PathBuf::from(skiff_bin()))
    }

    /// Drives another copy of the binary.
    pub fn with_binary(bin: PathBuf) -> Skiff {
        let root = scratch().join(unique_id("root"));
        Skiff { root, bin }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs skiff with `args` and collects the result (see `collect`).
    pub fn run(&self, args: &[&str]) -> Run {
        collect(self.command(args))
    }

    /// `skiff run --bundle B ID`.
    pub fn run_bundle(&self, bundle: &Bundle, id: &str) -> Run {
        bundle.write();
        self.run(&["run", "--bundle", bundle.dir.to_str().unwrap(), id])
    }

    /// `skiff create --bundle B ID`.
    pub fn create(&self, bundle: &Bundle, id: &str) -> Run {
        bundle.write();
        self.run(&["create", "--bundle", bundle.dir.to_str().unwrap(), id])
    }

    /// Parsed `skiff state ID`.
    pub fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]).ok();
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// Deletes with --force, ignoring errors (test cleanup).
    pub fn cleanup(&self, id: &str) {
        let _ = self.run(&["delete", "--force", id]);
    }

    /// Waits until the container reports `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        for _ in 0..500 {
            if self.state(id)["status"] == status {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {id} never reached {status}");
    }
}

/// Every place a failed or deleted container could leave something behind:
/// its state directory, cgroup directories, and processes.
pub fn assert_nothing_left(skiff: &Skiff, id: &str) {
    assert!(
        !skiff.root.join(id).exists(),
        "state dir of {id} left behind"
    );
    for cg in cgroup_dirs(id) {
        assert!(!cg.exists(), "cgroup {} left behind", cg.display());
    }
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Whole arguments: one test's id can be a substring of another's
        // ("hooks-1-1" in "warnhooks-1-19"), and tests run in parallel.
        let mentions_id = cmdline.split(|b| *b == 0).any(|arg| arg == id.as_bytes());
        assert!(
            !(text.contains(skiff_bin()) && mentions_id),
            "process {} left behind: {text}",
            entry.file_name().to_string_lossy()
        );
    }
}

/// Where `pid` and its descendants are (state, wait channel, kernel stack,
/// blocked and pending signals): what a test prints when a process hangs.
pub fn process_tree_report(pid: u32) -> String {
    let mut report = format!(
        "loadavg {}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
    );
    let mut todo = vec![(pid, 0usize)];
    while let Some((pid, depth)) = todo.pop() {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let read = |f: &str| std::fs::read_to_string(proc_dir.join(f)).unwrap_or_default();
        let cmdline = read("cmdline").replace('\0', " ");
        let status = read("status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("?")
                .to_string()
        };
        // After the command name (which may hold spaces): state is field 3,
        // minflt 10, majflt 12, utime 14, stime 15 (man 5 proc).
        let stat = read("stat");
        let after_name: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        let stat_field = |n: usize| after_name.get(n - 3).copied().unwrap_or("?");
        let pad = "  ".repeat(depth);
        report += &format!(
            "{pad}pid {pid} [{}] state {} wchan {} syscall {} utime {} stime {} minflt {} majflt {} \
             SigBlk {} SigPnd {} ShdPnd {}: {}\n",
            field("Name:"),
            field("State:"),
            read("wchan"),
            read("syscall").trim(),
            stat_field(14),
            stat_field(15),
            stat_field(10),
            stat_field(12),
            field("SigBlk:"),
            field("SigPnd:"),
            field("ShdPnd:"),
            cmdline.trim()
        );
        for frame in read("stack").lines() {
            report += &format!("{pad}    {frame}\n");
        }
        let children = read(&format!("task/{pid}/children"));
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            todo.push((child, depth + 1));
        }
    }
    report
}

/// The default cgroup directories of container `id` in every hierarchy.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup/skiff").join(id)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            dirs.push(e.path().join("skiff").join(id));
        }
    }
    dirs
}

/// A small static program for looking at what busybox cannot show from
/// inside a container (a syscall's answer), built once per test binary
/// from C with the toolchain the Rust build links with; bind it into a
/// bundle with [`Bundle::bind_probe`].
pub fn probe(name: &str, source: &str) -> PathBuf {
    let dir = scratch().join("probes");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join(name);
    if !bin.exists() {
        let c = dir.join(format!("{name}.c"));
        std::fs::write(&c, source).unwrap();
        let out = Command::new("cc")
            .args(["-static", "-O1", "-o"])
            .arg(&bin)
            .arg(&c)
            .output()
            .expect("cc (the C toolchain Rust links with)");
        assert!(
            out.status.success(),
            "building probe {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin
}

/// Makes `file` fd 3 of the command's process (for --preserve-fds).
pub fn give_fd3(cmd: &mut Command, file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let raw = file.as_raw_fd();
    // SAFETY: only fcntl/dup2 in the child between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            // dup2 onto itself would keep close-on-exec set.
            let ok = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(raw, 3) == 3
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// A seccomp user-notification agent's side of the kernel interface.
pub mod notify {
    use std::os::fd::{AsRawFd, BorrowedFd};

    const SECCOMP_IOCTL_NOTIF_RECV: libc::c_ulong = 0xc0502100;
    const SECCOMP_IOCTL_NOTIF_SEND: libc::c_ulong = 0xc0182101;
    /// Lets the syscall run as if no filter had stopped it.
    pub const FLAG_CONTINUE: u32 = 1;

    #[repr(C)]
    pub struct Data {
        pub nr: i32,
        pub arch: u32,
        pub ip: u64,
        pub args: [u64; 6],
    }

    /// `struct seccomp_notif`.
    #[repr(C)]
    pub struct Notif {
        pub id: u64,
        pub pid: u32,
        pub flags: u32,
        pub data: Data,
    }

    /// `struct seccomp_notif_resp`.
    #[repr(C)]
    pub struct Resp {
        pub id: u64,
        pub val: i64,
        pub error: i32,
        pub flags: u32,
    }

    /// Waits for the next notification on `listener`.
    pub fn recv(listener: BorrowedFd<'_>) -> std::io::Result<Notif> {
        // SAFETY: seccomp_notif is plain integers; all-zero is what
        // NOTIF_RECV requires.
        let mut notif: Notif = unsafe { std::mem::zeroed() };
        // SAFETY: NOTIF_RECV fills a seccomp_notif we own.
        let r = unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_RECV, &mut notif) };
        if r == 0 {
            Ok(notif)
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Answers a notification.
    pub fn send(listener: BorrowedFd<'_>, resp: &Resp) -> std::io::Result<()> {
        // SAFETY: NOTIF_SEND reads a seccomp_notif_resp we own.
        let r = unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_SEND, resp) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Whether notification `id` still waits for an answer.
    pub fn id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
        const SECCOMP_IOCTL_NOTIF_ID_VALID: libc::c_ulong = 0x40082102;
        // SAFETY: NOTIF_ID_VALID reads a u64 we own.
        unsafe { libc::ioctl(listener.as_raw_fd(), SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
    }

    /// Whether a notification arrives on `listener` within `ms`.
    pub fn readable(listener: BorrowedFd<'_>, ms: i32) -> bool {
        let mut fd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        n == 1 && fd.revents & libc::POLLIN != 0
    }

    /// Lets notification `id` go on.
    pub fn continue_(listener: BorrowedFd<'_>, id: u64) -> std::io::Result<()> {
        send(
            listener,
            &Resp {
                id,
                val: 0,
                error: 0,
                flags: FLAG_CONTINUE,
            },
        )
    }
}

/// The receiving end of `--pidfd-socket`: a listener at `path` whose
/// thread returns the one message it gets (data, pidfd).
pub fn pidfd_receiver(path: &Path) -> std::thread::JoinHandle<(String, std::os::fd::OwnedFd)> {
    use std::os::fd::AsFd;
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        skiff::terminal::recv_fd(conn.as_fd()).unwrap()
    })
}

/// What the kernel says of a pidfd: the host pid, and the pid in each pid
/// namespace down to the process's own (`NSpid`).
pub fn pidfd_pids(fd: &std::os::fd::OwnedFd) -> (i64, Vec<i64>) {
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let field = |name: &str| -> Vec<i64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {info}"))
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    };
    (field("Pid:")[0], field("NSpid:"))
}

/// Sends `signal` through a pidfd.
pub fn pidfd_signal(fd: &std::os::fd::OwnedFd, signal: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal with a valid fd and no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "pidfd_send_signal: {}",
        std::io::Error::last_os_error()
    );
}

/// True while `pid` exists and is not a zombie.
pub fn process_is_running(pid: i64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name's closing parenthesis.
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    !matches!(state, Some(Some('Z' | 'X')) | None)
}

/// The CVE-2019-5736 attacker (runtime_binary.rs, rootless.rs). It matches
/// skiff by its command line (readable even when the process is not
/// dumpable), records what it could do in /out/log,
/// and ends with one verdict line: `denied` (the exe could not be opened),
/// `refused` (it could not be written) or `OVERWRITTEN`.
pub const ATTACKER: &str = include_str!("attacker.sh");

/// Waits for the attacker's verdict; returns its whole log.
pub fn attack_verdict(rootfs: &Path) -> String {
    let path = rootfs.join("out/log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let done = ["denied", "refused", "OVERWRITTEN", "no skiff", "still busy"];
        if log.lines().any(|l| done.iter().any(|d| l.starts_with(d))) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verdict; log so far:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits until the attacker has seen a skiff process and tried it.
pub fn attacker_tried(rootfs: &Path) {
    let path = rootfs.join("out/log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains("held") || log.contains("denied") || log.contains("no skiff") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "attacker never tried; log:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
