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
