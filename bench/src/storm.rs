//! skiff-bench-storm: start storms and density. For each N of `--sizes`,
//! N containers are started at once, the benchmark waits until all run,
//! then stops and deletes them all: directly (`run -d` of skiff, crun and
//! runc) and through a private containerd (skiff's shim, the runc shim
//! calling skiff, the runc shim calling runc), the ways interleaved.
//!
//! Usage: skiff-bench-storm [--sizes 1,10,100,500] [--rounds N] [--jobs N]
//!        [--paths direct,containerd] [--svg PATH]
//!
//! It prints, per way and N: the wall time of the burst, each container's
//! p50/p99, the time per container (wall / N) and its ratio to N = 1, the
//! teardown's wall time, and what the N running containers cost in
//! memory; and writes the time per container against N as an SVG plot.
//!
//! A direct burst starts all N runtimes at once. Through containerd each
//! container costs a `ctr` client, a Go program of about 30 MiB: `--jobs`
//! (default 100) caps the clients in flight, and each container's time is
//! its client's own (queueing excluded).
//!
//! Memory, with all N running: the PSS of the shims and of any process the
//! runtime left outside the containers (`smaps_rollup`), the containers'
//! own processes, and kernel memory from the memory cgroups: the
//! containers' cgroups, the burst's own (its runtimes and clients run in
//! a fresh one) and what the engine's gained (containerd and the shims).
//! The burst's counts what a runtime allocates in the kernel before the
//! init joins the container's cgroup: skiff on cgroup v1 creates the
//! namespaces first and moves the init after, runc the other way round.
//!
//! crun 1.8.1 refuses this hybrid cgroup host; it runs through
//! scripts/crun-without-unified.sh (an unshare and a umount per call).
//!
//! Nothing may be left behind, whatever happens: release builds abort on a
//! panic (no destructor runs), and a long run may be interrupted. So this
//! binary runs itself as a worker under a supervisor; when the worker ends,
//! however it ends, the supervisor deletes every container left in the
//! state roots (each with its own runtime), kills the run's shims, and
//! removes its cgroups, mounts and work directory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use skiff_bench::install;
use skiff_bench::measure::{percentile, pids_of, smaps_kib};
use skiff_bench::version_of;
use skiff_e2e::{engines, Workdir};

const IMAGE: &str = "docker.io/library/busybox:storm";
/// In the worker's environment: the work directory the supervisor made.
const WORKER: &str = "SKIFF_BENCH_STORM_WORK";
/// What every container runs.
const SLEEP: [&str; 2] = ["sleep", "100000"];

fn usage() -> ! {
    eprintln!(
        "usage: skiff-bench-storm [--sizes 1,10,100,500] [--rounds N] [--jobs N] \
         [--paths direct,containerd] [--svg PATH]"
    );
    std::process::exit(2);
}

struct Options {
    sizes: Vec<usize>,
    rounds: usize,
    jobs: usize,
    direct: bool,
    containerd: bool,
    svg: PathBuf,
}

fn options() -> Options {
    let mut o = Options {
        sizes: vec![1, 10, 100, 500],
        rounds: 3,
        jobs: 100,
        direct: true,
        containerd: true,
        svg: PathBuf::from("storm.svg"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<usize>().ok().filter(|&n| n > 0);
        match a.as_str() {
            "--sizes" => {
                o.sizes = value
                    .split(',')
                    .map(|s| num(s).unwrap_or_else(|| usage()))
                    .collect();
                o.sizes.sort_unstable();
                o.sizes.dedup();
            }
            "--rounds" => o.rounds = num(&value).unwrap_or_else(|| usage()),
            "--jobs" => o.jobs = num(&value).unwrap_or_else(|| usage()),
            "--paths" => {
                o.direct = value.split(',').any(|p| p == "direct");
                o.containerd = value.split(',').any(|p| p == "containerd");
                if value.split(',').any(|p| p != "direct" && p != "containerd") {
                    usage();
                }
            }
            "--svg" => o.svg = PathBuf::from(value),
            _ => usage(),
        }
    }
    o
}

/// Where one run keeps everything, known to the supervisor and the worker.
struct Run {
    work: PathBuf,
    /// Names the run's cgroup parent and containerd namespace.
    tag: String,
}

impl Run {
    /// The tmpfs holding the state roots.
    fn roots(&self) -> PathBuf {
        self.work.join("roots")
    }

    fn address(&self) -> PathBuf {
        self.work.join("containerd.sock")
    }

    /// The cgroup of container `id`, under the run's parent.
    fn cgroup(&self, id: &str) -> String {
        format!("/{}/{id}", self.tag)
    }

    /// The memory cgroups of the worker and everything it starts, apart
    /// from the containers: `engine` (containerd and its shims) and one per
    /// burst (the runtimes and clients it runs) below it.
    fn bench_cgroup(&self, name: &str) -> String {
        format!("/{}/bench/{name}", self.tag)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Containerd,
}

/// One way of starting containers: a runtime called directly, or a shim of
/// the private containerd.
struct Way {
    /// Names the way's state root and container ids.
    key: &'static str,
    label: &'static str,
    route: Route,
    /// The runtime that keeps the way's containers (and deletes leftovers).
    runtime: PathBuf,
    /// The runtime's state root.
    root: PathBuf,
    /// `ctr run` flags choosing the shim and the runtime it calls.
    ctr_flags: Vec<String>,
    colour: &'static str,
}

fn ways(run: &Run, o: &Options) -> Vec<Way> {
    let skiff = run.work.join("bin/skiff");
    let runc = skiff_e2e::which("runc");
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/crun-without-unified.sh");
    let crun = skiff_e2e::which("crun")
        .and_then(|_| wrapper.canonicalize().ok())
        .filter(|p| p.exists());
    let mut ways = Vec::new();
    let direct = |key, label, runtime: PathBuf, colour| Way {
        key,
        label,
        route: Route::Direct,
        runtime,
        root: run.roots().join(key),
        ctr_flags: Vec::new(),
        colour,
    };
    if o.direct {
        ways.push(direct("skiff", "skiff", skiff.clone(), "#1f77b4"));
        if let Some(path) = crun {
            ways.push(direct("crun", "crun", path, "#2ca02c"));
        }
        if let Some(path) = &runc {
            ways.push(direct("runc", "runc", path.clone(), "#ff7f0e"));
        }
    }
    if o.containerd {
        ways.push(Way {
            key: "skiffshim",
            label: "skiff shim",
            route: Route::Containerd,
            runtime: skiff.clone(),
            // The shim's default root: ctr passes runtime options (a root)
            // only to io.containerd.runc.v2.
            root: Path::new("/run/containerd/skiff").join(&run.tag),
            ctr_flags: vec!["--runtime".into(), "io.containerd.skiff.v2".into()],
            colour: "#1f77b4",
        });
        let runc_shim = |key, label, runtime: &Path, colour| {
            let root = run.roots().join(key);
            Way {
                key,
                label,
                route: Route::Containerd,
                runtime: runtime.to_path_buf(),
                // The runc shim keeps a namespace's containers in ROOT/NS.
                root: root.join(&run.tag),
                ctr_flags: vec![
                    "--runtime".into(),
                    "io.containerd.runc.v2".into(),
                    "--runc-binary".into(),
                    runtime.display().to_string(),
                    "--runc-root".into(),
                    root.display().to_string(),
                ],
                colour,
            }
        };
        ways.push(runc_shim(
            "runcshimskiff",
            "runc shim + skiff",
            &skiff,
            "#9467bd",
        ));
        if let Some(path) = &runc {
            ways.push(runc_shim(
                "runcshimrunc",
                "runc shim + runc",
                path,
                "#ff7f0e",
            ));
        }
    }
    ways
}

fn main() {
    let o = options();
    if let Some(work) = std::env::var_os(WORKER) {
        // SAFETY: getppid has no preconditions; the supervisor is alive.
        let supervisor = unsafe { libc::getppid() };
        let run = Run {
            work: PathBuf::from(work),
            tag: format!("storm{supervisor}"),
        };
        std::process::exit(worker(&o, &run));
    }
    let mut required = vec!["runc"];
    if o.containerd {
        required.extend(["containerd", "ctr", "containerd-shim-runc-v2"]);
    }
    if let Some(why) = skiff_e2e::missing(&required) {
        eprintln!("skiff-bench-storm: {why}");
        std::process::exit(1);
    }
    let _outside = skiff_e2e::CreatedOutside::watch(&[
        "/run/containerd",
        "/run/containerd/skiff",
        "/run/skiff-shim",
    ]);
    let work = Workdir::new("bench-storm");
    let run = Run {
        work: work.path.clone(),
        tag: format!("storm{}", std::process::id()),
    };
    // Orphans (a direct container's init once its runtime exits, a shim
    // once its starter exits) come here and are reaped as they exit: the
    // worker spawns commands and waits for each by pid, and must not be
    // the parent of anything it does not wait for.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let worker = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env(WORKER, &work.path)
        .spawn()
        .expect("starting the worker");
    // Ignored only now, so the worker keeps the default dispositions: an
    // interrupt stops the worker, and the supervisor still cleans up.
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: setting a signal to SIG_IGN.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let code = reap_until(worker.id() as libc::pid_t);
    sweep(&run, &ways(&run, &o));
    drop(work);
    std::process::exit(code);
}

/// Reaps every child until `worker` exits; returns its exit code (128 +
/// the signal that killed it).
fn reap_until(worker: libc::pid_t) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waiting for any child into a local status.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == worker {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 1;
        }
    }
}

/// Removes what a worker left: every process it started (a client or
/// runtime caught mid-way, containerd, the shims), every container in the
/// state roots (each deleted by its own runtime), the run's cgroups and
/// the skiff shim's state root. Finds nothing after a worker that
/// finished.
fn sweep(run: &Run, ways: &[Way]) {
    // First, so that nothing creates a container behind the sweep.
    let started = kill_cgroup(run);
    let mut left = 0;
    for way in ways {
        let Ok(entries) = std::fs::read_dir(&way.root) else {
            continue;
        };
        for entry in entries.flatten() {
            left += 1;
            let _ = Command::new(&way.runtime)
                .arg("--root")
                .arg(&way.root)
                .args(["delete", "--force"])
                .arg(entry.file_name())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if way.route == Route::Containerd {
            let _ = std::fs::remove_dir(&way.root);
        }
    }
    // Without a memory cgroup to find them by, the shims are found by
    // the address of the run's containerd.
    let shims = pids_of("containerd-shim", &run.address().display().to_string());
    kill_and_reap(&shims);
    skiff_e2e::remove_parent_cgroup(&run.tag);
    if left + started + shims.len() > 0 {
        eprintln!(
            "skiff-bench-storm: cleaned up after the worker: {started} processes, \
             {left} containers, {} shims",
            shims.len()
        );
    }
}

/// Kills every process in the bench cgroups until none is left; returns
/// how many there were.
fn kill_cgroup(run: &Run) -> usize {
    let Some(cg) = MemCg::detect() else {
        return 0;
    };
    let bench = cg.dir(&run.bench_cgroup(""));
    let mut killed = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<u32> = std::fs::read_dir(&bench)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        if pids.is_empty() || Instant::now() > deadline {
            return killed.len();
        }
        killed.extend(pids.iter().copied());
        kill_and_reap(&pids);
    }
}

/// SIGKILLs `pids` and reaps whatever comes to this subreaper meanwhile,
/// until they are gone (5 s at most).
fn kill_and_reap(pids: &[u32]) {
    for &pid in pids {
        // SAFETY: signalling a process of this run.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: reaping any exited child; the worker is reaped already.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let alive = pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The memory cgroup hierarchy: v1's memory controller, or cgroup2's.
enum MemCg {
    V1(PathBuf),
    V2(PathBuf),
}

impl MemCg {
    fn detect() -> Option<MemCg> {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.usage_in_bytes").exists() {
            return Some(MemCg::V1(v1.to_path_buf()));
        }
        let v2 = Path::new("/sys/fs/cgroup");
        std::fs::read_to_string(v2.join("cgroup.controllers"))
            .ok()
            .filter(|c| c.split_whitespace().any(|c| c == "memory"))
            .map(|_| MemCg::V2(v2.to_path_buf()))
    }

    fn dir(&self, cgroup: &str) -> PathBuf {
        let (MemCg::V1(base) | MemCg::V2(base)) = self;
        base.join(cgroup.trim_start_matches('/'))
    }

    /// Kernel memory charged to `cgroup`, in KiB.
    fn kernel_kib(&self, cgroup: &str) -> u64 {
        let dir = self.dir(cgroup);
        match self {
            MemCg::V1(_) => read_u64(&dir.join("memory.kmem.usage_in_bytes")) / 1024,
            MemCg::V2(_) => {
                let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
                stat.lines()
                    .find_map(|l| l.strip_prefix("kernel "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
                    / 1024
            }
        }
    }

    /// All memory charged to `cgroup`, in KiB.
    fn usage_kib(&self, cgroup: &str) -> u64 {
        let file = match self {
            MemCg::V1(_) => "memory.usage_in_bytes",
            MemCg::V2(_) => "memory.current",
        };
        read_u64(&self.dir(cgroup).join(file)) / 1024
    }

    /// Moves this process into `cgroup` (made here; on cgroup2 with the
    /// controller enabled in each of its parents the run made), where
    /// everything it starts from now on is charged.
    fn join(&self, cgroup: &str) -> std::io::Result<()> {
        let dir = self.dir(cgroup);
        std::fs::create_dir_all(&dir)?;
        if let MemCg::V2(base) = self {
            let parents: Vec<&Path> = dir
                .ancestors()
                .skip(1)
                .take_while(|p| p.starts_with(base) && p != base)
                .collect();
            for parent in parents.iter().rev() {
                std::fs::write(parent.join("cgroup.subtree_control"), "+memory")?;
            }
        }
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
    }
}

/// Makes the containers' parent cgroup `tag` in every hierarchy, as a
/// kubelet makes a pod's: otherwise the first runtime to make it decides
/// for the others (runc and crun leave a parent they made behind, skiff
/// removes it when it is empty), and the ways would not run alike.
fn make_parents(tag: &str) {
    let base = Path::new("/sys/fs/cgroup");
    let hierarchies = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([base.to_path_buf()])
        .filter(|h| h.join("cgroup.procs").exists());
    for h in hierarchies {
        if let Err(e) = std::fs::create_dir_all(h.join(tag)) {
            eprintln!("{}: {e}", h.join(tag).display());
        }
    }
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Raises the soft open-file limit to the hard one (containerd, the shims
/// and the runtimes inherit it) and checks what a burst of `n` needs;
/// fails only where the burst would surely fail.
fn check_limits(n: usize, jobs: usize, containerd: bool) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    // containerd holds about a dozen fds per task (shim connection, event
    // and ttrpc streams); each client in flight a few pipes here.
    let files = if containerd { 16 * n } else { 4 * n } + 1024;
    let sysctl = |name: &str| read_u64(&Path::new("/proc/sys").join(name));
    let tasks_now: u64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0);
    // A Go runc runs about 8 threads, a Go shim about 10, a ctr client 10.
    let tasks = if containerd {
        12 * n + 10 * jobs.min(n)
    } else {
        10 * n
    } as u64;
    let task_max = sysctl("kernel/pid_max").min(sysctl("kernel/threads-max"));
    eprintln!(
        "limits at N={n}: open files {} (a burst needs about {files}); tasks {tasks_now} running \
         of kernel.pid_max/threads-max {task_max} (a burst adds about {tasks})",
        lim.rlim_cur
    );
    if tasks_now + tasks > task_max {
        eprintln!(
            "  WARNING: too few pids: sysctl -w kernel.pid_max={}",
            (tasks_now + 2 * tasks).next_power_of_two()
        );
    }
    if matches!(MemCg::detect(), Some(MemCg::V2(_))) && containerd {
        // On cgroup2 each shim (runc's and skiff's) watches memory.events
        // with an inotify instance of its own, for OOM events.
        let instances = sysctl("fs/inotify/max_user_instances");
        eprintln!("  inotify instances per user {instances} (a shim each on cgroup2)");
        if instances < n as u64 + 128 {
            eprintln!(
                "  WARNING: shims will lose OOM events: sysctl -w fs.inotify.max_user_instances={}",
                (n as u64 + 256).next_power_of_two()
            );
        }
    }
    if lim.rlim_cur < files as u64 {
        return Err(format!(
            "open files: hard limit {} but a burst of {n} needs about {files}: raise it \
             (ulimit -Hn {files}, or LimitNOFILE= for a service)",
            lim.rlim_max
        ));
    }
    Ok(())
}

/// A task of a burst: one container's start or teardown.
type Task = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// What a burst measured.
struct Burst {
    wall_ms: f64,
    /// Each task's own time, in task order.
    each_ms: Vec<f64>,
    /// Per task: its error, if it failed.
    failed: Vec<Option<String>>,
}

/// Runs the tasks at once, at most `jobs` at a time; the clock starts when
/// every worker thread is ready.
fn burst(tasks: Vec<Task>, jobs: usize) -> Burst {
    let n = tasks.len();
    let queue = Mutex::new(tasks.into_iter().enumerate().collect::<VecDeque<_>>());
    let results = Mutex::new(vec![(0.0, None); n]);
    let threads = jobs.min(n).max(1);
    let ready = Barrier::new(threads + 1);
    let start = std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                ready.wait();
                loop {
                    let Some((i, task)) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    let t = Instant::now();
                    let r = task();
                    results.lock().unwrap()[i] = (t.elapsed().as_secs_f64() * 1e3, r.err());
                }
            });
        }
        ready.wait();
        Instant::now()
    });
    let wall_ms = start.elapsed().as_secs_f64() * 1e3;
    let (each_ms, failed) = results.into_inner().unwrap().into_iter().unzip();
    Burst {
        wall_ms,
        each_ms,
        failed,
    }
}

/// Runs `cmd` with its stderr in `log`; the error names the command and
/// the last line it wrote.
fn run_logged(mut cmd: Command, log: &Path) -> Result<(), String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Err(format!(
        "{cmd:?}: {status}: {}",
        text.lines().last().unwrap_or("")
    ))
}

/// A pidfd of process `pid`; None when it is gone.
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process behind `pidfd` has exited (it reads as
/// readable from then on, before anyone reaps it).
fn wait_exit(pidfd: &OwnedFd, pid: i32) -> Result<(), String> {
    let mut fds = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        // SAFETY: poll over one pollfd we own.
        match unsafe { libc::poll(fds.as_mut_ptr(), 1, 30_000) } {
            1 => return Ok(()),
            0 => return Err(format!("container init {pid} alive 30 s after SIGKILL")),
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => {
                return Err(format!(
                    "polling the pidfd of {pid}: {}",
                    std::io::Error::last_os_error()
                ))
            }
        }
    }
}

/// Writes the bundle of one container: the shared read-only rootfs, its
/// own cgroup.
fn write_bundle(dir: &Path, rootfs: &Path, cgroup: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(include_str!("../../runtime/src/default_spec.json")).unwrap();
    config["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(SLEEP);
    config["linux"]["cgroupsPath"] = serde_json::json!(cgroup);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// The worker's fixed pieces.
struct Env<'a> {
    run: &'a Run,
    rootfs: PathBuf,
    memcg: Option<MemCg>,
    containerd_pid: Option<u32>,
    jobs: usize,
}

impl Env<'_> {
    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.run.address())
            .args(["--namespace", &self.run.tag]);
        c
    }

    fn log(&self, id: &str, step: &str) -> PathBuf {
        self.run.work.join("logs").join(format!("{id}.{step}"))
    }

    fn runtime(&self, way: &Way) -> Command {
        let mut c = Command::new(&way.runtime);
        c.arg("--root").arg(&way.root);
        c
    }

    fn start_task(&self, way: &Way, id: &str) -> Task {
        let log = self.log(id, "start");
        let cmd = match way.route {
            Route::Direct => {
                let bundle = self.run.work.join("bundles").join(id);
                write_bundle(&bundle, &self.rootfs, &self.run.cgroup(id));
                let mut c = self.runtime(way);
                c.args(["run", "-d", "--pid-file"])
                    .arg(self.pid_file(id))
                    .arg("--bundle")
                    .arg(&bundle)
                    .arg(id);
                c
            }
            Route::Containerd => {
                let mut c = self.ctr();
                c.args(["run", "-d", "--null-io", "--cgroup", &self.run.cgroup(id)])
                    .args(&way.ctr_flags)
                    .args([IMAGE, id])
                    .args(SLEEP);
                c
            }
        };
        Box::new(move || run_logged(cmd, &log))
    }

    fn pid_file(&self, id: &str) -> PathBuf {
        self.run.work.join("pids").join(id)
    }

    /// Stops and deletes a running container as a manager would: SIGKILL,
    /// wait for the exit, delete.
    fn stop_task(&self, way: &Way, id: &str) -> Task {
        let log = self.log(id, "stop");
        match way.route {
            Route::Direct => {
                let pid: Option<i32> = std::fs::read_to_string(self.pid_file(id))
                    .ok()
                    .and_then(|p| p.trim().parse().ok());
                let mut kill = self.runtime(way);
                kill.args(["kill", id, "KILL"]);
                let mut delete = self.runtime(way);
                delete.args(["delete", id]);
                Box::new(move || {
                    let pid = pid.ok_or("no pid file")?;
                    let fd = pidfd(pid);
                    run_logged(kill, &log)?;
                    if let Some(fd) = &fd {
                        wait_exit(fd, pid)?;
                    }
                    run_logged(delete, &log)
                })
            }
            Route::Containerd => {
                // `task delete --force` kills and waits for the exit.
                let mut task = self.ctr();
                task.args(["task", "delete", "--force", id]);
                let mut container = self.ctr();
                container.args(["container", "delete", id]);
                Box::new(move || {
                    run_logged(task, &log)?;
                    run_logged(container, &log)
                })
            }
        }
    }

    /// Removes what a failed start may have left, quietly.
    fn remove_quietly(&self, way: &Way, id: &str) {
        let cmds = match way.route {
            Route::Direct => {
                let mut c = self.runtime(way);
                c.args(["delete", "--force", id]);
                vec![c]
            }
            Route::Containerd => {
                let mut task = self.ctr();
                task.args(["task", "delete", "--force", id]);
                let mut container = self.ctr();
                container.args(["container", "delete", id]);
                vec![task, container]
            }
        };
        for mut c in cmds {
            let _ = c
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Memory of the running containers, all in KiB.
#[derive(Default, Clone)]
struct Memory {
    shims_pss: u64,
    /// Processes outside the containers that are neither a shim, containerd
    /// nor the benchmark: what a runtime left running.
    leftover_pss: u64,
    containers_pss: u64,
    /// Containers' cgroups, the burst's (its runtimes and clients), and
    /// what the engine's gained (containerd, shims).
    kernel: Option<i64>,
    /// Everything charged to the containers' cgroups.
    cgroups: Option<u64>,
}

/// One process: its parent and its pid namespace.
struct Proc {
    pid: u32,
    ppid: u32,
    pidns: u64,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses.
            let rest = &stat[stat.rfind(')')? + 2..];
            let ppid = rest.split(' ').nth(1)?.parse().ok()?;
            let pidns = std::fs::metadata(format!("/proc/{pid}/ns/pid")).ok()?.ino();
            Some(Proc { pid, ppid, pidns })
        })
        .collect()
}

/// The processes below `roots` (not the roots themselves).
fn descendants(procs: &[Proc], roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen: HashSet<u32> = roots.iter().copied().collect();
    let mut out = Vec::new();
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        for &c in children.get(&pid).into_iter().flatten() {
            if seen.insert(c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// Measures the memory of the `ids` running; fails unless each of them
/// has a process running in a pid namespace of its own.
fn memory(
    env: &Env<'_>,
    ids: &[String],
    burst: &str,
    engine_before: u64,
) -> Result<Memory, String> {
    let procs = processes();
    let me = std::process::id();
    let own_ns = procs.iter().find(|p| p.pid == me).map(|p| p.pidns);
    let shims = pids_of("containerd-shim", &env.run.address().display().to_string());
    // The supervisor is the subreaper the inits of direct runs go to.
    // SAFETY: getppid has no preconditions.
    let supervisor = unsafe { libc::getppid() } as u32;
    let mut roots = vec![supervisor];
    roots.extend(&shims);
    let ns_of: HashMap<u32, u64> = procs.iter().map(|p| (p.pid, p.pidns)).collect();
    let mut m = Memory::default();
    let mut namespaces = HashSet::new();
    for pid in descendants(&procs, &roots) {
        if pid == me || Some(pid) == env.containerd_pid {
            continue;
        }
        let pss = smaps_kib(pid).1;
        if ns_of.get(&pid).copied() != own_ns {
            namespaces.insert(ns_of[&pid]);
            m.containers_pss += pss;
        } else if !shims.contains(&pid) {
            m.leftover_pss += pss;
        }
    }
    m.shims_pss = shims.iter().map(|&p| smaps_kib(p).1).sum();
    if namespaces.len() < ids.len() {
        return Err(format!(
            "only {} of {} containers found running",
            namespaces.len(),
            ids.len()
        ));
    }
    if let Some(cg) = &env.memcg {
        let containers: u64 = ids
            .iter()
            .map(|id| cg.kernel_kib(&env.run.cgroup(id)))
            .sum();
        let outside = cg.kernel_kib(&env.run.bench_cgroup(burst))
            + cg.kernel_kib(&env.run.bench_cgroup("engine"));
        m.kernel = Some((containers + outside) as i64 - engine_before as i64);
        m.cgroups = Some(ids.iter().map(|id| cg.usage_kib(&env.run.cgroup(id))).sum());
    }
    Ok(m)
}

/// One burst of one way at one size, measured.
struct Sample {
    start: Burst,
    stop_ms: f64,
    memory: Memory,
}

/// Starts `n` containers of `way` at once, measures them running, stops
/// and deletes them all. Errors name every container that failed.
fn storm(env: &Env<'_>, way: &Way, n: usize, tag: &str) -> Result<Sample, String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{}-{tag}-{i}", way.key)).collect();
    let tasks = ids.iter().map(|id| env.start_task(way, id)).collect();
    // A cgroup of its own for the burst's runtimes and clients: the kernel
    // memory of earlier bursts, freed late (a network namespace goes in a
    // workqueue), is not taken off this one's.
    let burst_cgroup = format!("{}-{tag}", way.key);
    let mut engine_before = 0;
    if let Some(cg) = &env.memcg {
        cg.join(&env.run.bench_cgroup(&burst_cgroup))
            .map_err(|e| format!("joining the burst's memory cgroup: {e}"))?;
        engine_before = cg.kernel_kib(&env.run.bench_cgroup("engine"));
    }
    let jobs = match way.route {
        Route::Direct => n,
        Route::Containerd => env.jobs,
    };
    let start = burst(tasks, jobs);
    let mut errors: Vec<String> = start.failed.iter().flatten().cloned().collect();
    let running: Vec<String> = ids
        .iter()
        .zip(&start.failed)
        .filter(|(_, f)| f.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    let memory = if errors.is_empty() {
        memory(env, &ids, &burst_cgroup, engine_before).unwrap_or_else(|e| {
            errors.push(e);
            Memory::default()
        })
    } else {
        Memory::default()
    };
    let stops = running.iter().map(|id| env.stop_task(way, id)).collect();
    let stop = burst(stops, jobs);
    errors.extend(stop.failed.iter().flatten().cloned());
    for (id, failed) in ids.iter().zip(&start.failed) {
        if failed.is_some() {
            env.remove_quietly(way, id);
        }
    }
    for (id, failed) in running.iter().zip(&stop.failed) {
        if failed.is_some() {
            env.remove_quietly(way, id);
        }
    }
    for id in &ids {
        let _ = std::fs::remove_dir_all(env.run.work.join("bundles").join(id));
    }
    if let Some(cg) = &env.memcg {
        if cg.join(&env.run.bench_cgroup("engine")).is_ok() {
            let _ = std::fs::remove_dir(cg.dir(&env.run.bench_cgroup(&burst_cgroup)));
        }
    }
    if !errors.is_empty() {
        let shown: Vec<&str> = errors.iter().take(5).map(String::as_str).collect();
        return Err(format!(
            "{} errors, first: {}",
            errors.len(),
            shown.join("\n    ")
        ));
    }
    Ok(Sample {
        start,
        stop_ms: stop.wall_ms,
        memory,
    })
}

fn worker(o: &Options, run: &Run) -> i32 {
    let max_n = *o.sizes.last().unwrap();
    if let Err(e) = check_limits(max_n, o.jobs, o.containerd) {
        eprintln!("skiff-bench-storm: {e}");
        return 1;
    }
    // The supervisor owns the directory: it is removed after the sweep.
    let work = ManuallyDrop::new(Workdir {
        path: run.work.clone(),
    });
    let exe = std::env::current_exe().unwrap();
    let shim = exe.with_file_name("containerd-shim-skiff-v2");
    if !shim.exists() {
        eprintln!("skiff-bench-storm: build containerd-shim-skiff-v2 first");
        return 1;
    }
    let (bin, _) = install(&work, &shim, &exe.with_file_name("skiff"));
    for dir in ["logs", "pids", "bundles", "roots"] {
        std::fs::create_dir_all(run.work.join(dir)).unwrap();
    }
    // State on tmpfs, as on a node (/run is ext4 on this VM).
    nix::mount::mount(
        Some("tmpfs"),
        &run.roots(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mounting the state tmpfs");
    let image = skiff_e2e::busybox_image(&work, IMAGE);
    make_parents(&run.tag);
    let memcg = MemCg::detect();
    if let Some(cg) = &memcg {
        // containerd and its shims are started from here.
        if let Err(e) = cg.join(&run.bench_cgroup("engine")) {
            eprintln!("skiff-bench-storm: joining a memory cgroup: {e}");
            return 1;
        }
    }
    let daemon = o.containerd.then(|| {
        let daemon = engines::start_containerd(&work, Some(&bin));
        let mut import = Command::new("ctr");
        import
            .arg("--address")
            .arg(run.address())
            .args(["--namespace", &run.tag, "images", "import"])
            .arg(&image.archive);
        skiff_e2e::check(&mut import);
        daemon
    });
    let env = Env {
        run,
        rootfs: image.rootfs,
        memcg,
        containerd_pid: daemon.as_ref().map(|d| d.pid()),
        jobs: o.jobs,
    };
    let ways = ways(run, o);
    for tool in ["runc", "crun", "containerd"] {
        println!("{tool}: {}", version_of(tool));
    }
    let labels: Vec<&str> = ways.iter().map(|w| w.label).collect();
    println!("compared: {}", labels.join(", "));
    let start_load = load_average();
    println!("load average at start: {start_load}");
    let mut failures = 0;
    for way in &ways {
        if let Err(e) = storm(&env, way, 1, "warm") {
            eprintln!("{} warm-up: {e}", way.label);
            failures += 1;
        }
    }
    let mut samples: HashMap<(usize, usize), Vec<Sample>> = HashMap::new();
    for round in 0..o.rounds {
        for &n in &o.sizes {
            // A different way goes first in each round.
            for k in 0..ways.len() {
                let w = (k + round) % ways.len();
                match storm(&env, &ways[w], n, &format!("r{round}n{n}")) {
                    Ok(s) => samples.entry((w, n)).or_default().push(s),
                    Err(e) => {
                        eprintln!("{} N={n} round {round}: {e}", ways[w].label);
                        failures += 1;
                    }
                }
            }
        }
    }
    println!("load average at end: {}", load_average());
    let rows = report(o, &ways, &samples);
    let series: Vec<Series> = ways
        .iter()
        .enumerate()
        .map(|(w, way)| Series {
            label: match way.route {
                Route::Direct => format!("{} (direct)", way.label),
                Route::Containerd => format!("{} (containerd)", way.label),
            },
            dashed: way.route == Route::Containerd,
            colour: way.colour,
            points: rows
                .iter()
                .filter(|r| r.way == w)
                .map(|r| (r.n as f64, r.per_container_ms))
                .collect(),
        })
        .collect();
    let caption = format!(
        "medians of {} rounds; load average {start_load} at the start, {} at the end; \
         containerd clients at most {} at once",
        o.rounds,
        load_average(),
        o.jobs
    );
    match std::fs::write(&o.svg, svg(&series, &caption)) {
        Ok(()) => println!("plot: {}", o.svg.display()),
        Err(e) => {
            eprintln!("{}: {e}", o.svg.display());
            failures += 1;
        }
    }
    drop(daemon);
    let _ = nix::mount::umount2(&run.roots(), nix::mount::MntFlags::MNT_DETACH);
    for way in &ways {
        if way.route == Route::Containerd {
            let _ = std::fs::remove_dir(&way.root);
        }
    }
    // All but the memory cgroup the worker is in: the supervisor removes
    // that one (and does all this again after a worker that failed).
    skiff_e2e::remove_parent_cgroup(&run.tag);
    i32::from(failures > 0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of the table.
struct Row {
    way: usize,
    n: usize,
    per_container_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// Prints the table (medians over the rounds; p50/p99 over every
/// container of every round); returns its rows for the plot.
fn report(o: &Options, ways: &[Way], samples: &HashMap<(usize, usize), Vec<Sample>>) -> Vec<Row> {
    println!(
        "\nstorms of N containers running `sleep`, {} rounds (medians), containerd clients \
         at most {} at once",
        o.rounds, o.jobs
    );
    println!(
        "| path | runtime | N | burst ms | ms per container | vs N=1 | p50 ms | p99 ms | \
         teardown ms | shim PSS MiB/ctr | left PSS KiB/ctr | kernel KiB/ctr | cgroup KiB/ctr |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (w, way) in ways.iter().enumerate() {
        let mut at_one = None;
        for &n in &o.sizes {
            let Some(s) = samples.get(&(w, n)).filter(|s| !s.is_empty()) else {
                continue;
            };
            let wall = median(s.iter().map(|s| s.start.wall_ms).collect());
            let per = wall / n as f64;
            if n == 1 {
                at_one = Some(per);
            }
            let mut each: Vec<f64> = s.iter().flat_map(|s| s.start.each_ms.clone()).collect();
            each.sort_by(f64::total_cmp);
            let per_n = |f: &dyn Fn(&Memory) -> f64| {
                median(s.iter().map(|s| f(&s.memory)).collect()) / n as f64
            };
            let kernel = s
                .iter()
                .all(|s| s.memory.kernel.is_some())
                .then(|| per_n(&|m| m.kernel.unwrap_or(0) as f64));
            let cgroups = s
                .iter()
                .all(|s| s.memory.cgroups.is_some())
                .then(|| per_n(&|m| m.cgroups.unwrap_or(0) as f64));
            let or_dash =
                |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
            println!(
                "| {} | {} | {n} | {wall:.1} | {per:.2} | {} | {:.1} | {:.1} | {:.1} | {:.2} | \
                 {:.0} | {} | {} |",
                match way.route {
                    Route::Direct => "direct",
                    Route::Containerd => "containerd",
                },
                way.label,
                at_one.map_or("-".into(), |one| format!("{:.2}x", per / one)),
                percentile(&each, 0.5),
                percentile(&each, 0.99),
                median(s.iter().map(|s| s.stop_ms).collect()),
                per_n(&|m| m.shims_pss as f64) / 1024.0,
                per_n(&|m| m.leftover_pss as f64),
                or_dash(kernel, 0),
                or_dash(cgroups, 0),
            );
            rows.push(Row {
                way: w,
                n,
                per_container_ms: per,
            });
        }
    }
    rows
}

/// `text` for an SVG text node.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One line of the plot.
struct Series {
    label: String,
    dashed: bool,
    colour: &'static str,
    /// (N, ms per container)
    points: Vec<(f64, f64)>,
}

/// The time per container against N, both axes logarithmic: one line per
/// way, solid for direct runs, dashed through containerd.
fn svg(series: &[Series], caption: &str) -> String {
    const W: f64 = 880.0;
    const H: f64 = 480.0;
    let (left, right, top, bottom) = (70.0, 560.0, 40.0, 400.0);
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    let bounds = |v: Vec<f64>| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min).max(1e-3);
        let hi = v.iter().copied().fold(0.0, f64::max).max(lo);
        let (lo, hi) = (lo.log10().floor(), hi.log10().ceil());
        (lo, if hi > lo { hi } else { lo + 1.0 })
    };
    let (x0, x1) = bounds(all.iter().map(|p| p.0).collect());
    let (y0, y1) = bounds(all.iter().map(|p| p.1).collect());
    let x = |n: f64| left + (n.log10() - x0) / (x1 - x0) * (right - left);
    let y = |ms: f64| bottom - (ms.log10() - y0) / (y1 - y0) * (bottom - top);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="14">Time per container (burst wall time / N) against N</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{0}" font-size="11" fill="#555">{1}</text>"##,
        H - 8.0,
        escape(caption)
    );
    for d in x0 as i32..=x1 as i32 {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}" stroke="#ccc"/>"##,
            x(10f64.powi(d))
        );
    }
    // The sizes measured label the axis.
    let mut sizes: Vec<f64> = all.iter().map(|p| p.0).collect();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    for n in sizes {
        let _ = writeln!(
            s,
            r#"<text x="{0:.1}" y="{1}" text-anchor="middle">{n}</text>"#,
            x(n),
            bottom + 18.0
        );
    }
    for d in y0 as i32..y1 as i32 {
        for m in [1.0, 2.0, 5.0] {
            let ms = m * 10f64.powi(d);
            let grey = if m == 1.0 { "#ccc" } else { "#eee" };
            let _ = writeln!(
                s,
                r#"<line x1="{left}" y1="{0:.1}" x2="{right}" y2="{0:.1}" stroke="{grey}"/><text x="{1}" y="{2:.1}" text-anchor="end">{ms}</text>"#,
                y(ms),
                left - 6.0,
                y(ms) + 4.0
            );
        }
    }
    let top_ms = 10f64.powi(y1 as i32);
    let _ = writeln!(
        s,
        r#"<text x="{0}" y="{1:.1}" text-anchor="end">{top_ms}</text>"#,
        left - 6.0,
        y(top_ms) + 4.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{0}" y="{1}" text-anchor="middle">N, containers started at once</text>"#,
        (left + right) / 2.0,
        bottom + 40.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {0}) rotate(-90)" text-anchor="middle">ms per container</text>"#,
        (top + bottom) / 2.0
    );
    for (i, line) in series.iter().enumerate() {
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(n, ms)| format!("{:.1},{:.1}", x(n), y(ms)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            points.join(" "),
            line.colour
        );
        for &(n, ms) in &line.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                x(n),
                y(ms),
                line.colour
            );
        }
        let ly = top + 10.0 + 22.0 * i as f64;
        let label = escape(&line.label);
        let _ = writeln!(
            s,
            r#"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{2}" stroke-width="2"{dash}/><text x="{3}" y="{4}">{label}</text>"#,
            right + 20.0,
            right + 50.0,
            line.colour,
            right + 56.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
