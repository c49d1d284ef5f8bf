//! Checkpoint and restore with CRIU, each story run with skiff and, beside
//! it, runc 1.3.6 from the Debian sid root (scripts/sid-root.sh), both
//! driving CRIU 4.2 from the same root (`peers/criu`; Debian 12's 3.17
//! fails `criu check` on this kernel). Without that CRIU the tests skip
//! loudly, and fail under SKIFF_REQUIRE_ALL.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{assert_nothing_left, scratch, unique_id, Bundle, Skiff};

/// The sid root's peers: CRIU and runc built against its libraries.
fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sid-root/peers")
}

/// Why CRIU cannot run here, if it cannot. Puts the peers first on PATH
/// for runc (once; every test sets the same value).
fn criu_missing() -> Option<String> {
    static PATH: std::sync::Once = std::sync::Once::new();
    PATH.call_once(|| {
        let path = std::env::var("PATH").unwrap_or_default();
        std::env::set_var("PATH", format!("{}:{path}", peers().display()));
    });
    let criu = peers().join("criu");
    match Command::new(&criu).arg("check").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{} check failed: {}",
            criu.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!(
            "{}: {e} (build it with ./scripts/sid-root.sh)",
            criu.display()
        )),
    }
}

macro_rules! require_criu {
    () => {
        require_root!();
        if let Some(why) = criu_missing() {
            assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
            eprintln!("SKIPPED {}: {}", module_path!(), why);
            return;
        }
    };
}

/// One runtime under test: skiff or runc, the same command line.
struct Runtime {
    name: &'static str,
    tool: Skiff,
    /// Every id a detached command named, force-deleted when the runtime
    /// goes out of scope: a failed assertion leaves no counter running.
    ids: std::cell::RefCell<Vec<String>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            self.tool.cleanup(id);
        }
    }
}

impl Runtime {
    fn both() -> Vec<Runtime> {
        vec![
            Runtime {
                name: "skiff",
                tool: Skiff::new(),
                ids: Default::default(),
            },
            Runtime {
                name: "runc",
                tool: Skiff::with_binary(peers().join("runc")),
                ids: Default::default(),
            },
        ]
    }

    /// skiff is told where CRIU is; runc 1.3 ignores `--criu` and runs
    /// the `criu` on PATH, where `criu_missing` put the peers directory.
    fn args(&self, args: &[&str]) -> Vec<String> {
        let mut v = Vec::new();
        if self.name == "skiff" {
            v.push("--criu".to_string());
            v.push(peers().join("criu").to_string_lossy().into_owned());
        }
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    /// Runs a command that must succeed.
    fn ok(&self, args: &[&str]) {
        let a = self.args(args);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let run = self.tool.run(&refs);
        assert_eq!(
            run.code, 0,
            "{}: {args:?} failed:\n{}",
            self.name, run.stderr
        );
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let a = self.args(args);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let run = self.tool.run(&refs);
        assert_ne!(run.code, 0, "{}: {args:?} succeeded", self.name);
        run.stderr
    }

    /// Starts a detached command whose stdout (the container's, for `run`
    /// and `restore`) is collected line by line. Both stdout and stderr
    /// are pipes, as a manager gives them (runc cannot dump a container
    /// whose stdio is a host file); the container keeps them open, so
    /// they are drained by threads rather than read to the end.
    fn detached(&self, args: &[&str]) -> Output {
        if let Some(id) = args.last() {
            self.ids.borrow_mut().push(id.to_string());
        }
        let a = self.args(args);
        let mut child = self
            .tool
            .command(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = drain(Box::new(child.stdout.take().unwrap()));
        let errors = drain(Box::new(child.stderr.take().unwrap()));
        let status = child.wait().unwrap();
        if !status.success() {
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "{}: {args:?} failed:\n{:?}",
                self.name,
                errors.lock().unwrap()
            );
        }
        Output { lines }
    }

    /// Starts a command that stays attached (`restore` without
    /// --detach), its stdout and stderr pipes of the test.
    fn foreground(&self, args: &[&str]) -> Foreground {
        if let Some(id) = args.last() {
            self.ids.borrow_mut().push(id.to_string());
        }
        let a = self.args(args);
        let mut child = self
            .tool
            .command(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Foreground {
            out: Output {
                lines: drain(Box::new(child.stdout.take().unwrap())),
            },
            errors: drain(Box::new(child.stderr.take().unwrap())),
            child,
        }
    }

    fn status(&self, id: &str) -> Option<String> {
        let run = self.tool.run(&["state", id]);
        (run.code == 0).then(|| {
            serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
    }

    fn pid(&self, id: &str) -> i64 {
        self.tool.state(id)["pid"].as_i64().unwrap()
    }

    fn remove(&self, id: &str) {
        self.tool.cleanup(id);
        if self.name == "skiff" {
            assert_nothing_left(&self.tool, id);
        }
    }
}

/// Starts a command that stays attached, its stdio a new pty as at a
/// user's terminal (runc relays a container's terminal only to one);
/// returns it with the pty master.
fn on_pty(rt: &Runtime, args: &[&str]) -> (Foreground, std::fs::File) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut cmd = rt
        .tool
        .command(&rt.args(args).iter().map(String::as_str).collect::<Vec<_>>());
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    if let Some(id) = args.last() {
        rt.ids.borrow_mut().push(id.to_string());
    }
    let fg = Foreground {
        child: cmd.spawn().unwrap(),
        out: Output {
            lines: Default::default(),
        },
        errors: Default::default(),
    };
    (fg, std::fs::File::from(pty.master))
}

/// Collects the lines of a pipe on a thread, as they come.
fn drain(pipe: Box<dyn std::io::Read + Send>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A runtime command attached to the test's pipes.
struct Foreground {
    child: std::process::Child,
    out: Output,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Foreground {
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// The command's exit code; it must come within 10 s.
    fn exit_code(&mut self, who: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{who}: still attached after 10 s: {:?}",
                    self.errors.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What a container wrote to its stdout.
struct Output {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Output {
    fn numbers(&self) -> Vec<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn last(&self) -> Option<u64> {
        self.numbers().last().copied()
    }

    /// Waits until a line reads `want` (blanks around it aside).
    fn wait_line(&self, want: &str, who: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.lines.lock().unwrap().iter().any(|l| l.trim() == want) {
            assert!(
                Instant::now() < deadline,
                "{who}: no {want:?} after 10 s: {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until at least `n` numbers came.
    fn wait_for(&self, n: usize, what: &str) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.numbers();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} numbers after 10 s: {:?}",
                got.len(),
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";

fn image_dir(tag: &str) -> PathBuf {
    scratch().join(unique_id(tag))
}

/// Runs `script` detached with `rt` until it has counted to 3; returns
/// the bundle, the container's id, an image directory and its output.
fn counting(rt: &Runtime, script: &str, tag: &str) -> (Bundle, String, PathBuf, Output) {
    let bundle = Bundle::sh(script);
    bundle.write();
    let id = unique_id(tag);
    let out = rt.detached(&["run", "-d", "--bundle", bundle.dir.to_str().unwrap(), &id]);
    out.wait_for(3, &format!("{tag} before checkpoint"));
    (bundle, id, image_dir(tag), out)
}

/// Runs the counter, checkpoints it (leaving it running or not), restores
/// it into the same id or a new one, and checks the count goes on from
/// where it was dumped, in a container every command works on.
fn counter_story(rt: &Runtime, leave_running: bool, new_id: bool) {
    let bundle = Bundle::sh(COUNTER);
    bundle.write();
    let b = bundle.dir.to_str().unwrap();
    let id = unique_id("ckpt");
    let img = image_dir("img");
    let i = img.to_str().unwrap();
    let first = rt.detached(&["run", "-d", "--bundle", b, &id]);
    first.wait_for(3, "before checkpoint");
    let before = first.last().unwrap();
    let mut args = vec!["checkpoint", "--image-path", i];
    if leave_running {
        args.push("--leave-running");
    }
    args.push(&id);
    rt.ok(&args);
    let after = first.last().unwrap();
    if leave_running {
        assert_eq!(rt.status(&id).as_deref(), Some("running"), "{}", rt.name);
        first.wait_for(first.numbers().len() + 2, "left running");
    } else {
        // Killed by the dump, and gone as a container.
        assert_eq!(rt.status(&id), None, "{}: still there", rt.name);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(first.last(), Some(after), "{}: counted on", rt.name);
    }
    let target = if new_id {
        unique_id("ckpt-new")
    } else {
        if leave_running {
            rt.remove(&id);
        }
        id.clone()
    };
    let second = rt.detached(&["restore", "-d", "--bundle", b, "--image-path", i, &target]);
    let restored = second.wait_for(3, "after restore");
    let dumped_at = restored[0] - 1;
    assert!(
        dumped_at >= before && dumped_at <= after,
        "{}: restored count starts at {} (dumped between {before} and {after})",
        rt.name,
        restored[0]
    );
    assert!(
        restored.windows(2).all(|w| w[1] == w[0] + 1),
        "{}: {restored:?}",
        rt.name
    );
    assert_eq!(rt.status(&target).as_deref(), Some("running"));
    // An ordinary container: exec, kill, delete.
    rt.ok(&["exec", &target, "true"]);
    rt.ok(&["kill", &target, "KILL"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.status(&target).as_deref() != Some("stopped") {
        assert!(Instant::now() < deadline, "{}: never stopped", rt.name);
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.remove(&target);
    if new_id && leave_running {
        rt.remove(&id);
    }
}

#[test]
fn counter_checkpointed_and_restored_into_the_same_id() {
    require_criu!();
    for rt in Runtime::both() {
        counter_story(&rt, false, false);
    }
}

#[test]
fn counter_checkpointed_and_restored_into_a_new_id() {
    require_criu!();
    for rt in Runtime::both() {
        counter_story(&rt, false, true);
    }
}

#[test]
fn counter_left_running_and_restored_beside_itself() {
    require_criu!();
    for rt in Runtime::both() {
        counter_story(&rt, true, true);
    }
}

#[test]
fn counter_left_running_then_restored_into_its_own_id() {
    require_criu!();
    for rt in Runtime::both() {
        counter_story(&rt, true, false);
    }
}

/// A counter that exits 7 on SIGTERM (as pid 1 of its namespace it gets
/// only the signals it has a handler for).
const TRAPPING_COUNTER: &str =
    "trap 'echo got TERM; exit 7' TERM; i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done";

/// `restore` without --detach, as runc's: attached until the container
/// exits, signals forwarded to it, the container's exit status (128+N
/// when killed by signal N), the container removed after.
#[test]
fn restore_in_the_foreground_forwards_signals_and_exits_with_the_container() {
    require_criu!();
    for rt in Runtime::both() {
        let (bundle, id, img, first) = counting(&rt, TRAPPING_COUNTER, "fg");
        let (b, i) = (bundle.dir.to_str().unwrap(), img.to_str().unwrap());
        rt.ok(&["checkpoint", "--image-path", i, &id]);
        let dumped_at = first.last().unwrap();
        let restore = ["restore", "--bundle", b, "--image-path", i, id.as_str()];
        // A signal to the runtime reaches the container.
        let mut fg = rt.foreground(&restore);
        let counted = fg.out.wait_for(3, "restored in the foreground");
        assert_eq!(counted[0], dumped_at + 1, "{}: {counted:?}", rt.name);
        assert_eq!(rt.status(&id).as_deref(), Some("running"), "{}", rt.name);
        fg.signal(libc::SIGTERM);
        assert_eq!(fg.exit_code(rt.name), 7, "{}", rt.name);
        fg.out.wait_line("got TERM", rt.name);
        assert_eq!(rt.status(&id), None, "{}: not removed", rt.name);
        if rt.name == "skiff" {
            assert_nothing_left(&rt.tool, &id);
        }
        // Killed from outside: 128+9, and removed too.
        let mut fg = rt.foreground(&restore);
        fg.out.wait_for(3, "restored again");
        rt.ok(&["kill", &id, "KILL"]);
        assert_eq!(fg.exit_code(rt.name), 137, "{}", rt.name);
        assert_eq!(rt.status(&id), None, "{}: not removed", rt.name);
        if rt.name == "skiff" {
            assert_nothing_left(&rt.tool, &id);
        }
    }
}

/// Whether the kernel tracks dirty pages (what a pre-dump needs).
fn dirty_tracking() -> bool {
    Command::new(peers().join("criu"))
        .args(["check", "--feature", "mem_dirty_track"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn pre_dump_then_dump() {
    require_criu!();
    for rt in Runtime::both() {
        let bundle = Bundle::sh(COUNTER);
        bundle.write();
        let b = bundle.dir.to_str().unwrap();
        let id = unique_id("predump");
        let img = image_dir("predump");
        let (parent, fin) = (img.join("parent"), img.join("final"));
        let out = rt.detached(&["run", "-d", "--bundle", b, &id]);
        out.wait_for(3, "before pre-dump");
        let pre_dump = [
            "checkpoint",
            "--pre-dump",
            "--image-path",
            parent.to_str().unwrap(),
            &id,
        ];
        if !dirty_tracking() {
            // This kernel has no soft-dirty bits: a pre-dump is refused
            // with CRIU's reason, and the container runs on.
            let err = rt.fails(&pre_dump);
            if rt.name == "skiff" {
                assert!(
                    err.contains("Tracking memory is not available") && err.lines().count() == 1,
                    "{err}"
                );
            }
            let n = out.numbers().len();
            out.wait_for(n + 2, "after a refused pre-dump");
            rt.remove(&id);
            continue;
        }
        rt.ok(&pre_dump);
        let n = out.numbers().len();
        out.wait_for(n + 3, "after pre-dump");
        rt.ok(&[
            "checkpoint",
            "--image-path",
            fin.to_str().unwrap(),
            "--parent-path",
            "../parent",
            &id,
        ]);
        let last = out.last().unwrap();
        // The dump took only what changed: its pages refer to the parent.
        assert!(
            fin.join("parent").exists(),
            "{}: no parent link in the dump",
            rt.name
        );
        let restored = rt.detached(&[
            "restore",
            "-d",
            "--bundle",
            b,
            "--image-path",
            fin.to_str().unwrap(),
            &id,
        ]);
        let got = restored.wait_for(2, "after restore");
        assert_eq!(got[0], last + 1, "{}: {got:?}", rt.name);
        rt.remove(&id);
    }
}

/// `restore --parent-path`, which the runc shim passes for containerd's
/// `parent_checkpoint`: the image's parent link is made anew to point
/// there (CRIU checks it exists). An image whose parent link no longer
/// resolves (its parent moved) is refused by CRIU for either runtime;
/// runc 1.3.6 has no such flag on restore (nor 1.1.5), so through the
/// runc shim a parent checkpoint always fails. No pre-dump is needed:
/// CRIU opens the parent of any image that links one.
#[test]
fn restore_parent_path_relinks_the_images_parent() {
    require_criu!();
    for rt in Runtime::both() {
        let (bundle, id, img, out) = counting(&rt, COUNTER, "parent");
        let b = bundle.dir.to_str().unwrap();
        let (dump, parent) = (img.join("dump"), img.join("moved-parent"));
        std::fs::create_dir_all(&parent).unwrap();
        let d = dump.to_str().unwrap();
        rt.ok(&["checkpoint", "--image-path", d, &id]);
        let last = out.last().unwrap();
        std::os::unix::fs::symlink("../gone", dump.join("parent")).unwrap();
        let err = rt.fails(&["restore", "-d", "--bundle", b, "--image-path", d, &id]);
        if rt.name == "skiff" {
            assert!(
                err.contains("Can't open parent path") && err.lines().count() == 1,
                "{err}"
            );
            assert_nothing_left(&rt.tool, &id);
        }
        let relinked = [
            "restore",
            "-d",
            "--bundle",
            b,
            "--image-path",
            d,
            "--parent-path",
            "../moved-parent",
            id.as_str(),
        ];
        if rt.name == "runc" {
            let err = rt.fails(&relinked);
            assert!(err.contains("flag provided but not defined"), "{err}");
            continue;
        }
        let restored = rt.detached(&relinked);
        let got = restored.wait_for(2, "after restore");
        assert_eq!(got[0], last + 1, "{got:?}");
        assert_eq!(
            std::fs::read_link(dump.join("parent")).unwrap(),
            Path::new("../moved-parent")
        );
        rt.remove(&id);
    }
}

/// The limit in the memory cgroup `pid` is in, read on the host (v1).
fn memory_limit(pid: i64) -> Option<u64> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))?;
    std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn bind_mounts_and_memory_limit_hold_after_restore() {
    require_criu!();
    if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        assert!(
            std::env::var_os("SKIFF_REQUIRE_ALL").is_none(),
            "no v1 memory controller"
        );
        eprintln!("SKIPPED: no v1 memory controller here");
        return;
    }
    for rt in Runtime::both() {
        let host_dir = scratch().join(unique_id("data"));
        std::fs::create_dir_all(&host_dir).unwrap();
        let mut bundle = Bundle::sh(COUNTER);
        bundle.config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind",
            "source": host_dir, "options": ["rbind", "rw"]
        }));
        bundle.config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
        bundle.write();
        let b = bundle.dir.to_str().unwrap();
        let id = unique_id("bind");
        let img = image_dir("bind");
        let i = img.to_str().unwrap();
        let out = rt.detached(&["run", "-d", "--bundle", b, &id]);
        out.wait_for(2, "before checkpoint");
        rt.ok(&["checkpoint", "--image-path", i, &id]);
        let new_id = unique_id("bind-new");
        let restored = rt.detached(&["restore", "-d", "--bundle", b, "--image-path", i, &new_id]);
        restored.wait_for(2, "after restore");
        assert_eq!(
            memory_limit(rt.pid(&new_id)),
            Some(64 << 20),
            "{}: limit lost",
            rt.name
        );
        std::fs::write(host_dir.join("from-host"), "x").unwrap();
        rt.ok(&[
            "exec",
            &new_id,
            "sh",
            "-c",
            "test -f /data/from-host && echo y > /data/from-container",
        ]);
        assert!(host_dir.join("from-container").exists(), "{}", rt.name);
        rt.remove(&new_id);
    }
}

/// A bundle whose container does nothing, for the refusals.
fn idle_bundle() -> Bundle {
    let bundle = Bundle::sh("sleep 100");
    bundle.write();
    bundle
}

#[test]
fn restore_from_a_missing_or_corrupt_image_leaves_nothing() {
    require_criu!();
    let skiff = Runtime::both().remove(0);
    let bundle = idle_bundle();
    let b = bundle.dir.to_str().unwrap();
    let id = unique_id("bad-img");
    let missing = image_dir("missing");
    let err = skiff.fails(&[
        "restore",
        "-d",
        "--bundle",
        b,
        "--image-path",
        missing.to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains(missing.to_str().unwrap()) && err.lines().count() == 1,
        "{err}"
    );
    assert_nothing_left(&skiff.tool, &id);
    let empty = image_dir("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = skiff.fails(&[
        "restore",
        "-d",
        "--bundle",
        b,
        "--image-path",
        empty.to_str().unwrap(),
        &id,
    ]);
    assert!(err.contains("no inventory.img"), "{err}");
    assert_nothing_left(&skiff.tool, &id);
    let corrupt = image_dir("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("inventory.img"), b"not an image").unwrap();
    let err = skiff.fails(&[
        "restore",
        "-d",
        "--bundle",
        b,
        "--image-path",
        corrupt.to_str().unwrap(),
        &id,
    ]);
    assert!(
        err.contains("criu restore failed") && err.lines().count() == 1,
        "{err}"
    );
    assert_nothing_left(&skiff.tool, &id);
}

#[test]
fn restore_onto_an_existing_id_is_refused() {
    require_criu!();
    let skiff = Runtime::both().remove(0);
    let bundle = Bundle::sh(COUNTER);
    bundle.write();
    let b = bundle.dir.to_str().unwrap();
    let id = unique_id("exists");
    let img = image_dir("exists");
    let i = img.to_str().unwrap();
    let out = skiff.detached(&["run", "-d", "--bundle", b, &id]);
    out.wait_for(2, "before checkpoint");
    skiff.ok(&["checkpoint", "--leave-running", "--image-path", i, &id]);
    let pid = skiff.pid(&id);
    let err = skiff.fails(&["restore", "-d", "--bundle", b, "--image-path", i, &id]);
    assert!(
        err.contains("container with id exists") && err.lines().count() == 1,
        "{err}"
    );
    // The running container is untouched.
    assert_eq!(skiff.pid(&id), pid);
    assert_eq!(skiff.status(&id).as_deref(), Some("running"));
    skiff.remove(&id);
}

#[test]
fn criu_missing_or_too_old_is_one_line() {
    require_root!();
    let skiff = Runtime::both().remove(0);
    let bundle = idle_bundle();
    let b = bundle.dir.to_str().unwrap();
    let id = unique_id("nocriu");
    skiff.tool.create(&bundle, &id).ok();
    skiff.tool.run(&["start", &id]).ok();
    let img = image_dir("nocriu");
    let run = skiff.tool.run(&[
        "--criu",
        "/nonexistent/criu",
        "checkpoint",
        "--image-path",
        img.to_str().unwrap(),
        &id,
    ]);
    run.fails_with(&["/nonexistent/criu", "not found"]);
    // A CRIU that answers VERSION with 2.12.
    let fake = scratch().join(unique_id("old-criu"));
    std::fs::write(
        &fake,
        "#!/bin/sh\neval \"printf '\\\\010\\\\012\\\\020\\\\001\\\\122\\\\004\\\\010\\\\002\\\\020\\\\014' >&$2\"\nsleep 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = skiff.tool.run(&[
        "--criu",
        fake.to_str().unwrap(),
        "checkpoint",
        "--image-path",
        img.to_str().unwrap(),
        &id,
    ]);
    run.fails_with(&["criu 2.12.0 is too old"]);
    assert_eq!(skiff.status(&id).as_deref(), Some("running"));
    // An image directory that passes skiff's own checks: CRIU is asked.
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(img.join("inventory.img"), b"").unwrap();
    let new_id = unique_id("nocriu-new");
    let run = skiff.tool.run(&[
        "--criu",
        fake.to_str().unwrap(),
        "restore",
        "-d",
        "--bundle",
        b,
        "--image-path",
        img.to_str().unwrap(),
        &new_id,
    ]);
    run.fails_with(&["too old"]);
    assert_nothing_left(&skiff.tool, &new_id);
    skiff.remove(&id);
}

#[test]
fn paused_container_is_dumped_and_left_paused() {
    require_criu!();
    for rt in Runtime::both() {
        let (bundle, id, img, out) = counting(&rt, COUNTER, "paused");
        let (b, i) = (bundle.dir.to_str().unwrap(), img.to_str().unwrap());
        rt.ok(&["pause", &id]);
        let paused_at = out.last().unwrap();
        rt.ok(&["checkpoint", "--leave-running", "--image-path", i, &id]);
        // Still paused: CRIU put back the freezer state it found.
        assert_eq!(rt.status(&id).as_deref(), Some("paused"), "{}", rt.name);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            out.last(),
            Some(paused_at),
            "{}: counted while paused",
            rt.name
        );
        // The image restores as a running container, from where it paused.
        let new_id = unique_id("paused-new");
        let restored = rt.detached(&["restore", "-d", "--bundle", b, "--image-path", i, &new_id]);
        let got = restored.wait_for(2, "after restore");
        assert_eq!(got[0], paused_at + 1, "{}: {got:?}", rt.name);
        assert_eq!(
            rt.status(&new_id).as_deref(),
            Some("running"),
            "{}",
            rt.name
        );
        rt.remove(&new_id);
        // A dump without --leave-running ends the paused container.
        let last = image_dir("paused-last");
        rt.ok(&["checkpoint", "--image-path", last.to_str().unwrap(), &id]);
        assert_eq!(rt.status(&id), None, "{}: still there", rt.name);
        if rt.name == "skiff" {
            assert_nothing_left(&rt.tool, &id);
        }
    }
}

/// A network namespace outside any container, with lo up, held by a
/// sleeping process until dropped: the place a TCP peer stays while the
/// container it talks to is dumped and restored.
struct NetNs {
    holder: std::process::Child,
}

impl NetNs {
    fn new() -> NetNs {
        let mut holder = Command::new("unshare")
            .args([
                "-n",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec sleep 1000",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "up", "bringing lo up in a new netns");
        NetNs { holder }
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// Connects to 127.0.0.1:`port` from inside the namespace (a thread
    /// of its own joins it; the socket stays there), retrying while the
    /// server comes up. No Nagle: each line goes out as it is written.
    fn connect(&self, port: u16) -> std::net::TcpStream {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(s) => {
                        s.set_nodelay(true).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        return s;
                    }
                    Err(e) => {
                        assert!(Instant::now() < deadline, "connecting: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
        .join()
        .unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Sends a line and reads the echo of `expect` (lines sent earlier may
/// come first).
fn echo(conn: &mut std::net::TcpStream, line: &str, expect: &str, who: &str) {
    use std::io::{Read, Write};
    conn.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 256];
    while !got.lines().any(|l| l == expect) {
        let n = conn
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{who}: no echo of {expect:?} (got {got:?}): {e}"));
        assert!(n > 0, "{who}: connection closed (got {got:?})");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn established_tcp_connection_survives_checkpoint_and_restore() {
    require_criu!();
    for rt in Runtime::both() {
        // The server runs in the container, its peer outside it in the
        // network namespace the container joins.
        let netns = NetNs::new();
        let mut bundle = Bundle::new(&["nc", "-l", "-p", "5000", "-e", "cat"]);
        for ns in bundle.config["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(netns.path());
            }
        }
        bundle.write();
        let b = bundle.dir.to_str().unwrap();
        let id = unique_id("tcp");
        let img = image_dir("tcp");
        let i = img.to_str().unwrap();
        rt.detached(&["run", "-d", "--bundle", b, &id]);
        let mut conn = netns.connect(5000);
        echo(&mut conn, "one", "one", rt.name);
        // Without the flag CRIU refuses, and the container goes on.
        let err = rt.fails(&["checkpoint", "--image-path", i, &id]);
        if rt.name == "skiff" {
            assert!(
                err.contains("--tcp-established") && err.lines().count() == 1,
                "{err}"
            );
        }
        assert_eq!(rt.status(&id).as_deref(), Some("running"), "{}", rt.name);
        echo(&mut conn, "again", "again", rt.name);
        std::fs::remove_dir_all(&img).unwrap();
        rt.ok(&["checkpoint", "--tcp-established", "--image-path", i, &id]);
        assert_eq!(rt.status(&id), None, "{}: still there", rt.name);
        // Written while no server exists: the peer's kernel keeps it
        // until the restored socket takes it.
        {
            use std::io::Write;
            conn.write_all(b"while-dumped\n").unwrap();
        }
        let new_id = unique_id("tcp-new");
        rt.detached(&[
            "restore",
            "-d",
            "--tcp-established",
            "--bundle",
            b,
            "--image-path",
            i,
            &new_id,
        ]);
        echo(&mut conn, "after", "while-dumped", rt.name);
        echo(&mut conn, "last", "last", rt.name);
        assert_eq!(
            rt.status(&new_id).as_deref(),
            Some("running"),
            "{}",
            rt.name
        );
        rt.remove(&new_id);
    }
}

/// Both ends of the connection inside the container, over its own
/// loopback. Both runtimes have CRIU dump a network namespace they created
/// as empty (they leave network devices to whoever set them up); skiff
/// brings lo up again once CRIU has made the namespace, before the
/// sockets are restored, so the connection comes back. runc 1.3.6 does
/// not: lo is down after restore and CRIU cannot reconnect the socket.
#[test]
fn tcp_connection_over_the_containers_own_loopback() {
    require_criu!();
    for rt in Runtime::both() {
        let bundle = Bundle::sh(&format!(
            "nc -l -p 5000 -e cat & sleep 0.3; ( {COUNTER} ) | nc 127.0.0.1 5000"
        ));
        bundle.write();
        let b = bundle.dir.to_str().unwrap();
        let id = unique_id("lo");
        let img = image_dir("lo");
        let i = img.to_str().unwrap();
        let out = rt.detached(&["run", "-d", "--bundle", b, &id]);
        // Each number made the round trip through the connection.
        out.wait_for(3, "before checkpoint");
        rt.ok(&["checkpoint", "--tcp-established", "--image-path", i, &id]);
        std::thread::sleep(Duration::from_millis(200));
        let dumped = out.last().unwrap();
        let restore = [
            "restore",
            "-d",
            "--tcp-established",
            "--bundle",
            b,
            "--image-path",
            i,
            &id,
        ];
        if rt.name == "runc" {
            let err = rt.fails(&restore);
            assert!(err.contains("RESTORE"), "{err}");
            let log = std::fs::read_to_string(img.join("restore.log")).unwrap();
            assert!(
                log.contains("Can't connect inet socket back: Network is unreachable"),
                "runc: restore failed otherwise than expected:\n{err}"
            );
            assert_eq!(rt.status(&id), None);
            continue;
        }
        let restored = rt.detached(&restore);
        let got = restored.wait_for(3, "after restore");
        // Nothing lost or repeated, also what was in flight in the
        // socket buffers.
        assert!(
            got[0] == dumped + 1 && got.windows(2).all(|w| w[1] == w[0] + 1),
            "dumped at {dumped}, restored: {got:?}"
        );
        rt.remove(&id);
    }
}

/// Listens on a console socket in the scratch directory; the thread
/// returns the name and pty master the runtime sends.
fn console_socket() -> (PathBuf, std::thread::JoinHandle<(String, std::fs::File)>) {
    let path = scratch().join(unique_id("console.sock"));
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (name, fd) = skiff::terminal::recv_fd(std::os::fd::AsFd::as_fd(&conn)).unwrap();
        (name, std::fs::File::from(fd))
    });
    (path, accept)
}

/// Writes `input` to the pty and reads until `want` shows up.
fn type_into(master: &mut std::fs::File, input: &str, want: &str, who: &str) {
    use std::io::{Read, Write};
    master.write_all(input.as_bytes()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.lines().any(|l| l.trim() == want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => got.push_str(&String::from_utf8_lossy(&bytes)),
            Err(_) => panic!("{who}: no {want:?} on the terminal: {got:?}"),
        }
    }
}

/// A shell on a terminal (through a console socket) that set X=42, then
/// checkpointed: its bundle, id and image directory.
fn shell_checkpointed(rt: &Runtime, tag: &str) -> (Bundle, String, PathBuf) {
    let mut bundle = Bundle::new(&["sh"]);
    bundle.config["process"]["terminal"] = json!(true);
    bundle.write();
    let b = bundle.dir.to_str().unwrap();
    let id = unique_id(tag);
    let img = image_dir(tag);
    let (sock, accept) = console_socket();
    let s = sock.to_str().unwrap();
    rt.detached(&["run", "-d", "--console-socket", s, "--bundle", b, &id]);
    let (_, mut master) = accept.join().unwrap();
    type_into(&mut master, "X=42; echo $((X+1))\n", "43", rt.name);
    rt.ok(&["checkpoint", "--image-path", img.to_str().unwrap(), &id]);
    (bundle, id, img)
}

#[test]
fn terminal_container_gets_a_new_pty_through_the_console_socket() {
    require_criu!();
    for rt in Runtime::both() {
        let (bundle, id, img) = shell_checkpointed(&rt, "tty");
        let (b, i) = (bundle.dir.to_str().unwrap(), img.to_str().unwrap());
        // Restore without a console socket: refused, nothing left.
        let err = rt.fails(&["restore", "-d", "--bundle", b, "--image-path", i, &id]);
        if rt.name == "skiff" {
            assert!(
                err.contains("--console-socket") && err.lines().count() == 1,
                "{err}"
            );
            assert_nothing_left(&rt.tool, &id);
        }
        // With one, the shell is back, its variables kept, on a new pty.
        let (sock, accept) = console_socket();
        let s = sock.to_str().unwrap();
        let new_id = unique_id("tty-new");
        rt.detached(&[
            "restore",
            "-d",
            "--console-socket",
            s,
            "--bundle",
            b,
            "--image-path",
            i,
            &new_id,
        ]);
        let (name, mut master) = accept.join().unwrap();
        assert_eq!(name, "orphan-pts-master", "{}", rt.name);
        type_into(&mut master, "echo $((X+2)); tty\n", "44", rt.name);
        assert_eq!(
            rt.status(&new_id).as_deref(),
            Some("running"),
            "{}",
            rt.name
        );
        // An ordinary container: `exec` works on it.
        rt.ok(&["exec", &new_id, "true"]);
        rt.remove(&new_id);
    }
}

/// A terminal container restored without --detach and without a console
/// socket: the runtime relays between its own terminal and the new pty,
/// as `run` does, and exits with the shell's status.
#[test]
fn terminal_container_restored_in_the_foreground_is_relayed() {
    require_criu!();
    for rt in Runtime::both() {
        let (bundle, id, img) = shell_checkpointed(&rt, "fg-tty");
        let (b, i) = (bundle.dir.to_str().unwrap(), img.to_str().unwrap());
        let (mut fg, mut pty) = on_pty(&rt, &["restore", "--bundle", b, "--image-path", i, &id]);
        type_into(&mut pty, "echo $((X+2))\n", "44", rt.name);
        std::io::Write::write_all(&mut pty, b"exit 5\n").unwrap();
        assert_eq!(fg.exit_code(rt.name), 5, "{}", rt.name);
        assert_eq!(rt.status(&id), None, "{}: not removed", rt.name);
        if rt.name == "skiff" {
            assert_nothing_left(&rt.tool, &id);
        }
    }
}

#[test]
fn restore_into_a_fresh_rootfs_makes_the_mount_points() {
    require_criu!();
    for rt in Runtime::both() {
        // A file bound onto a path the image lacks: create made it in
        // the first rootfs, a copy of the image (another machine,
        // Podman's --import) does not have it.
        let host_file = scratch().join(unique_id("bound-file"));
        std::fs::write(&host_file, "from the host\n").unwrap();
        let bind = json!({
            "destination": "/etc/bound/file", "type": "bind",
            "source": host_file, "options": ["bind", "ro"]
        });
        let mut first = Bundle::own_rootfs(&["sh", "-c", COUNTER]);
        first.config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(bind.clone());
        first.write();
        let id = unique_id("fresh");
        let img = image_dir("fresh");
        let i = img.to_str().unwrap();
        let out = rt.detached(&["run", "-d", "--bundle", first.dir.to_str().unwrap(), &id]);
        out.wait_for(2, "before checkpoint");
        rt.ok(&["checkpoint", "--image-path", i, &id]);
        let mut second = Bundle::own_rootfs(&["sh", "-c", COUNTER]);
        second.config["mounts"].as_array_mut().unwrap().push(bind);
        second.write();
        assert!(!second.rootfs.join("etc/bound").exists());
        // The restored process has its cwd and files in the first rootfs'
        // content, which the second has too (the same busybox tree).
        let restored = rt.detached(&[
            "restore",
            "-d",
            "--bundle",
            second.dir.to_str().unwrap(),
            "--image-path",
            i,
            &id,
        ]);
        restored.wait_for(2, "after restore");
        rt.ok(&[
            "exec",
            &id,
            "grep",
            "-q",
            "from the host",
            "/etc/bound/file",
        ]);
        rt.remove(&id);
    }
}

#[test]
fn host_file_stdio_is_reattached_only_to_the_same_kind_of_file() {
    require_criu!();
    let skiff = Runtime::both().remove(0);
    let bundle = Bundle::sh(COUNTER);
    bundle.write();
    let b = bundle.dir.to_str().unwrap();
    let id = unique_id("hostfile");
    skiff.ids.borrow_mut().push(id.clone());
    let img = image_dir("hostfile");
    let i = img.to_str().unwrap();
    let log = scratch().join(unique_id("out"));
    let with_log = |args: &[&str]| {
        let a = skiff.args(args);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let status = skiff
            .tool
            .command(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
    };
    let numbers = || -> Vec<u64> {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    with_log(&["run", "-d", "--bundle", b, &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while numbers().len() < 3 {
        assert!(Instant::now() < deadline, "no output in {}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    skiff.ok(&["checkpoint", "--image-path", i, &id]);
    let dumped = *numbers().last().unwrap();
    // A pipe cannot stand in for the log file: refused before CRIU runs.
    let a = skiff.args(&["restore", "-d", "--bundle", b, "--image-path", i, &id]);
    let out = skiff
        .tool
        .command(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stdout was a regular file when checkpointed, restore's is a fifo")
            && err.lines().count() == 1,
        "{err}"
    );
    assert_nothing_left(&skiff.tool, &id);
    // The same file, appended to: the count goes on in it.
    with_log(&["restore", "-d", "--bundle", b, "--image-path", i, &id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while numbers().len() < dumped as usize + 2 {
        assert!(Instant::now() < deadline, "no count after restore");
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = numbers();
    assert!(got.iter().zip(1..).all(|(n, want)| *n == want), "{got:?}");
    skiff.remove(&id);
}

#[test]
fn dev_null_stdio_stays_dev_null_whatever_restore_gets() {
    require_criu!();
    for rt in Runtime::both() {
        let bundle = Bundle::sh("echo started > /tmp/started; exec sleep 1000");
        bundle.write();
        let b = bundle.dir.to_str().unwrap();
        let id = unique_id("null");
        rt.ids.borrow_mut().push(id.clone());
        let img = image_dir("null");
        let i = img.to_str().unwrap();
        // Every stdio /dev/null, as containerd's null IO gives it.
        let a = rt.args(&["run", "-d", "--bundle", b, &id]);
        let status = rt
            .tool
            .command(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{}: run", rt.name);
        rt.ok(&["checkpoint", "--image-path", i, &id]);
        // Restored with pipes for stdio, as ctr's restore gives them.
        let out = rt.detached(&["restore", "-d", "--bundle", b, "--image-path", i, &id]);
        assert_eq!(rt.status(&id).as_deref(), Some("running"), "{}", rt.name);
        rt.ok(&[
            "exec",
            &id,
            "sh",
            "-c",
            "test \"$(readlink /proc/1/fd/1)\" = /dev/null",
        ]);
        assert!(out.lines.lock().unwrap().is_empty());
        rt.remove(&id);
    }
}
