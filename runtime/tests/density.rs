//! Cost flat in the number of containers: what one container's commands
//! do must not grow with what else runs on the host. Counted in bytes read
//! (`rchar` of /proc/PID/io), not in time, so that the tests hold on a
//! loaded machine.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::{scratch, unique_id, Bundle, Skiff};

/// A private mount namespace holding `mounts` more tmpfs mounts than the
/// host, kept by a sleeping process; it goes when dropped.
struct Mounts {
    holder: Child,
}

impl Mounts {
    fn new(mounts: usize) -> Mounts {
        let dir = scratch().join(unique_id("mounts"));
        let script = format!(
            "i=0; while [ $i -lt {mounts} ]; do i=$((i+1)); mkdir -p {d}/$i; \
             mount -t tmpfs -o size=4k density {d}/$i || exit 1; done; echo ready; exec sleep 600",
            d = dir.display()
        );
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "making {mounts} mounts failed");
        Mounts { holder }
    }

    /// `cmd` run inside the namespace (nsenter execs it, in its own pid).
    fn enter(&self, cmd: &Command) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg(cmd.get_program())
            .args(cmd.get_args());
        c
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Runs `cmd` to its end; returns the bytes it read through read(2) and
/// its kin. /proc/PID/io is read once the process has exited and before
/// it is reaped (reaping adds a child's counts to its parent's).
fn bytes_read(mut cmd: Command) -> u64 {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // SAFETY: a zeroed siginfo is valid; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child without reaping it.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(r, 0, "waitid: {}", std::io::Error::last_os_error());
    let io = std::fs::read_to_string(format!("/proc/{}/io", child.id())).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{cmd:?}: {status}");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// A node's containers each add a mount or more to the host (an overlay
/// rootfs, shm, secrets); `create` read all of /proc/self/mountinfo to
/// find the cgroup hierarchies, about 80 bytes more per tmpfs here, and
/// several hundred per overlay.
#[test]
fn create_reads_no_more_with_a_thousand_more_mounts() {
    require_root!();
    if skiff::cgroups::hierarchy::found_by_statmount().is_none() {
        let why = "statmount cannot find the cgroup hierarchies here (Linux 6.8+; 6.11+ for v1)";
        assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("SKIPPED {}: {why}", module_path!());
        return;
    }
    let skiff = Skiff::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    bundle.write();
    let read = |mounts: usize| {
        let ns = Mounts::new(mounts);
        let id = unique_id("density");
        let create = skiff.command(&["create", "--bundle", bundle.dir.to_str().unwrap(), &id]);
        let read = bytes_read(ns.enter(&create));
        skiff.cleanup(&id);
        read
    };
    let (few, many) = (read(0), read(1000));
    assert!(
        many < few + 8 * 1024,
        "create read {few} bytes, and {many} with 1000 more mounts on the host"
    );
}

/// Runs `cmd` to success; returns how often it blocked (voluntary context
/// switches: each sleep, each wait that had to wait). The child is reaped
/// with wait4, for its rusage, not with Child::wait.
#[allow(clippy::zombie_processes)]
fn waits(mut cmd: Command) -> i64 {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaping our own child with valid pointers.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?}: {status}"
    );
    usage.ru_nvcsw
}

/// The first container under a new cgroup parent makes it, in every
/// hierarchy, and tries to remove it when deleted. With siblings still in
/// it, delete waited for them to leave: 12 growing sleeps per hierarchy,
/// 0.8 s each, 8 s on a host with ten v1 hierarchies, in every storm's
/// teardown.
#[test]
fn deleting_the_maker_of_a_shared_parent_waits_for_no_sibling() {
    require_root!();
    let skiff = Skiff::new();
    let parent = unique_id("shared");
    let ids: Vec<String> = (0..2).map(|_| unique_id("sibling")).collect();
    for id in &ids {
        let mut b = Bundle::new(&["sleep", "60"]);
        b.config["linux"]["cgroupsPath"] = serde_json::json!(format!("/{parent}/{id}"));
        skiff.create(&b, id).ok();
    }
    let maker = waits(skiff.command(&["delete", "--force", &ids[0]]));
    let sibling = waits(skiff.command(&["delete", "--force", &ids[1]]));
    // The parent stays (as with runc and crun): the test removes it.
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(&parent));
    }
    let _ = std::fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(&parent));
    assert!(
        maker <= sibling + 8,
        "deleting the parent's maker blocked {maker} times, its sibling {sibling}"
    );
}
