//! skiff run by an ordinary user (scripts/rootless-user.sh makes one, with
//! subordinate ids), with runc 1.1.5 beside it on the same bundle: the
//! rootless config, a user namespace of the user's own ids or of its
//! subordinate ones, the state under $XDG_RUNTIME_DIR, no cgroup without
//! delegation, binds of sources whose flags the kernel locks, and what the
//! container must never reach: the user's own limits on host files, no
//! capability in the host's user namespace, and the runtime binary even
//! when the user owns it.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};
use support::{collect, Bundle, Run};

/// The test user.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    /// Its first subordinate uid range (start, count); the same gids.
    subordinate: (u32, u32),
}

/// Makes the user (idempotent) on first use.
fn user() -> &'static User {
    static USER: OnceLock<User> = OnceLock::new();
    USER.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rootless-user.sh");
        let out = Command::new(&script).output().unwrap();
        assert!(out.status.success(), "{script:?}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let f: Vec<&str> = text.split_whitespace().collect();
        let name = f[0].to_string();
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap();
        let range = subuid
            .lines()
            .find_map(|l| {
                let p: Vec<&str> = l.split(':').collect();
                (p.len() == 3 && p[0] == name)
                    .then(|| (p[1].parse().unwrap(), p[2].parse().unwrap()))
            })
            .unwrap();
        User {
            uid: f[1].parse().unwrap(),
            gid: f[2].parse().unwrap(),
            home: PathBuf::from(f[3]),
            subordinate: range,
            name,
        }
    })
}

/// What the rootless suite needs beyond root and busybox.
fn missing_rootless() -> Option<String> {
    let setuid = |p: &str| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o4000 != 0);
    if !setuid("/usr/bin/newuidmap") || !setuid("/usr/bin/newgidmap") {
        return Some("no setuid newuidmap/newgidmap (apt install uidmap)".into());
    }
    if Command::new("runc").arg("--version").output().is_err() {
        return Some("runc missing (apt install runc)".into());
    }
    None
}

macro_rules! require_rootless {
    () => {
        require_root!();
        if let Some(why) = missing_rootless() {
            assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
            eprintln!("SKIPPED {}: {}", module_path!(), why);
            return;
        }
    };
}

/// A login of the test user: its own XDG_RUNTIME_DIR, and commands run
/// with its uid, gid and environment.
struct Session {
    xdg: PathBuf,
}

impl Session {
    fn new() -> Session {
        let xdg = support::scratch().join(support::unique_id("xdg"));
        Session {
            xdg: user_dir(&xdg),
        }
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let u = user();
        let mut cmd = Command::new(program);
        cmd.args(args)
            .uid(u.uid)
            .gid(u.gid)
            .env_clear()
            .env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .stdin(Stdio::null());
        cmd
    }

    fn skiff(&self, args: &[&str]) -> Run {
        collect(self.command(support::skiff_bin(), args))
    }

    fn runc(&self, args: &[&str]) -> Run {
        collect(self.command("runc", args))
    }

    /// `run` of the bundle by skiff, then by runc.
    fn run_both(&self, b: &Bundle, id: &str) -> (Run, Run) {
        b.write();
        let dir = b.dir.to_str().unwrap();
        let skiff = self.skiff(&["run", "--bundle", dir, id]);
        let runc = self.runc(&["run", "--bundle", dir, id]);
        (skiff, runc)
    }

    /// Nothing of container `id` is left: no state, cgroup or process.
    fn assert_nothing_left(&self, id: &str) {
        let skiff = support::Skiff {
            root: self.xdg.join("skiff"),
            bin: PathBuf::from(support::skiff_bin()),
        };
        support::assert_nothing_left(&skiff, id);
    }
}

/// Runs its closure when dropped: a detached container is deleted even
/// when the test fails half-way.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// `dir`, made and owned by the test user, private to it.
fn user_dir(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(user().uid), Some(user().gid)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir.to_path_buf()
}

/// A bundle with skiff's rootless config for the test user (runc's, as
/// `spec_is_runcs` checks), running `sh -c script`.
fn bundle(script: &str) -> Bundle {
    let mut b = Bundle::sh(script);
    let u = user();
    let text = skiff::commands::spec::text(Some((u.uid, u.gid)));
    let mut config: Value = serde_json::from_slice(&text).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = b.config["process"]["args"].clone();
    config["root"]["path"] = b.config["root"]["path"].clone();
    b.config = config;
    b
}

/// Both runtimes succeeded, with the same output; returns it.
fn same_output(skiff: Run, runc: Run) -> String {
    let skiff = skiff.ok();
    let runc = runc.ok();
    assert_eq!(skiff.stdout, runc.stdout, "skiff's output, then runc's");
    skiff.stdout
}

#[test]
fn spec_is_runcs() {
    require_rootless!();
    let s = Session::new();
    let ours = user_dir(&s.xdg.join("spec-skiff"));
    let runcs = user_dir(&s.xdg.join("spec-runc"));
    s.skiff(&["spec", "--rootless", "--bundle", ours.to_str().unwrap()])
        .ok();
    s.runc(&["spec", "--rootless", "--bundle", runcs.to_str().unwrap()])
        .ok();
    // Byte for byte but for the version and the hostname, which differ
    // between the default configs too.
    let text = |dir: &Path| {
        std::fs::read_to_string(dir.join("config.json"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("\t\"ociVersion\"") && !l.starts_with("\t\"hostname\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(text(&ours), text(&runcs));
    assert!(text(&ours).contains(&format!("\"hostID\": {},", user().uid)));
}

#[test]
fn own_ids_need_no_helper() {
    require_rootless!();
    let s = Session::new();
    let b = bundle(
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
         stat -c %t,%T /dev/null; echo x > /dev/null && echo null-ok; \
         grep ' /sys ' /proc/self/mounts | cut -d' ' -f3,4",
    );
    let id = support::unique_id("own-ids");
    let (skiff, runc) = s.run_both(&b, &id);
    let out = same_output(skiff, runc);
    let uid = user().uid;
    let map = format!("{:>10} {uid:>10} {:>10}\n", 0, 1);
    assert!(out.starts_with(&format!("0\n0\n{map}")), "{out}");
    // The kernel takes a gid map from a user only with setgroups denied;
    // devices are the host's, bound; /sys is the host's, bound read-only
    // (no network namespace of its own to mount one).
    assert!(out.contains("deny\n1,3\nnull-ok\n"), "{out}");
    assert!(
        out.ends_with("sysfs ro,nosuid,nodev,noexec,relatime\n"),
        "{out}"
    );
    s.assert_nothing_left(&id);
}

#[test]
fn state_lives_under_xdg_runtime_dir_and_no_cgroup_is_made() {
    require_rootless!();
    let s = Session::new();
    let b = bundle("sleep 100");
    b.write();
    let id = support::unique_id("xdg-state");
    let dir = b.dir.to_str().unwrap();
    let _delete = OnDrop(|| drop(s.skiff(&["delete", "--force", &id])));
    s.skiff(&["run", "-d", "--bundle", dir, &id]).ok();
    let root = s.xdg.join("skiff");
    assert!(root.join(&id).join("state.json").exists());
    let mode = std::fs::metadata(&root).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o1700, "private and sticky, as runc's");
    assert!(s.skiff(&["list", "-q"]).ok().stdout.contains(&id));
    for cg in support::cgroup_dirs(&id) {
        assert!(!cg.exists(), "{} made without delegation", cg.display());
    }
    let out = s
        .skiff(&["exec", &id, "sh", "-c", "id -u; readlink /proc/1/exe"])
        .ok();
    assert_eq!(out.stdout, "0\n/bin/busybox\n");
    // A single-id map has no uid 1000.
    s.skiff(&["exec", "--user", "1000", &id, "true"])
        .fails_with(&["process.user.uid: setresuid: not mapped in the container's user namespace"]);
    s.skiff(&["pause", &id])
        .fails_with(&["pause: the container has no cgroup of its own"]);
    s.skiff(&["kill", "--all", &id, "KILL"]).ok();
    for _ in 0..200 {
        if s.skiff(&["state", &id]).ok().stdout.contains("stopped") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    s.skiff(&["delete", &id]).ok();
    s.assert_nothing_left(&id);
    // runc the same way: its state under $XDG_RUNTIME_DIR/runc.
    s.runc(&["run", "-d", "--bundle", dir, &id]).ok();
    assert!(s.xdg.join("runc").join(&id).join("state.json").exists());
    s.runc(&["delete", "--force", &id]).ok();
}

#[test]
fn subordinate_ids_go_through_newuidmap() {
    require_rootless!();
    let s = Session::new();
    let mut b = bundle("cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups");
    let u = user();
    let (start, count) = u.subordinate;
    let size = count.min(65536);
    for (field, own) in [("uidMappings", u.uid), ("gidMappings", u.gid)] {
        b.config["linux"][field] = json!([
            {"containerID": 0, "hostID": own, "size": 1},
            {"containerID": 1, "hostID": start, "size": size}
        ]);
    }
    let id = support::unique_id("subids");
    let (skiff, runc) = s.run_both(&b, &id);
    let out = same_output(skiff, runc);
    let second = format!("{:>10} {start:>10} {size:>10}\n", 1);
    assert_eq!(out.matches(&second).count(), 2, "{out}");
    assert!(out.ends_with("allow\n"), "{out}");
    s.assert_nothing_left(&id);
}

#[test]
fn ids_that_are_not_the_users_are_refused() {
    require_rootless!();
    let s = Session::new();
    let mut b = bundle("true");
    let (start, count) = user().subordinate;
    b.config["linux"]["uidMappings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"containerID": 1, "hostID": start + count, "size": 10}));
    let id = support::unique_id("not-subids");
    let (skiff, runc) = s.run_both(&b, &id);
    skiff.fails_with(&[
        "linux.uidMappings[1]: host ids",
        &format!("may not be mapped by {} (uid {})", user().name, user().uid),
        "subordinate ids in /etc/subuid",
    ]);
    assert_ne!(runc.code, 0, "runc: {}", runc.stdout);
    s.assert_nothing_left(&id);
}

#[test]
fn a_user_namespace_is_required() {
    require_rootless!();
    let s = Session::new();
    let mut b = bundle("true");
    b.config["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    let linux = b.config["linux"].as_object_mut().unwrap();
    linux.remove("uidMappings");
    linux.remove("gidMappings");
    b.config.as_object_mut().unwrap().remove("hostname");
    let id = support::unique_id("no-userns");
    let (skiff, runc) = s.run_both(&b, &id);
    skiff.fails_with(&[&format!(
        "linux.namespaces: skiff runs as uid {}, not root",
        user().uid
    )]);
    assert!(
        runc.stderr.contains("requires user namespaces"),
        "{}",
        runc.stderr
    );
    s.assert_nothing_left(&id);
}

#[test]
fn limits_need_a_delegated_cgroup() {
    require_rootless!();
    let s = Session::new();
    let mut b = bundle("true");
    b.config["linux"]["resources"] = json!({"memory": {"limit": 104857600}});
    let id = support::unique_id("limits");
    let (skiff, runc) = s.run_both(&b, &id);
    skiff.fails_with(&[
        "linux.resources.memory.limit: cgroup limits need a cgroup this user may write",
        "Permission denied",
    ]);
    assert!(
        runc.stderr.contains("cannot set memory limit"),
        "{}",
        runc.stderr
    );
    s.assert_nothing_left(&id);
}

/// A bind of a mount whose ro, nosuid, nodev, noexec and atime flags the
/// kernel locks in the container's user namespace: whatever the entry
/// asks, the mount keeps them (runc 1.1.5 fails on `ro` and on an atime
/// option: the bug class, fixed in 1.2).
#[test]
fn binds_keep_the_flags_the_kernel_locks() {
    require_rootless!();
    let s = Session::new();
    let source = support::scratch().join(support::unique_id("locked"));
    std::fs::create_dir_all(&source).unwrap();
    for options in [
        vec!["rbind"],
        vec!["rbind", "ro"],
        vec!["rbind", "rw", "exec"],
        vec!["rbind", "nosuid", "nodev", "ro", "relatime"],
    ] {
        // On a directory the shared rootfs has: the user may make none.
        let mut b = bundle("grep ' /root ' /proc/self/mounts | cut -d' ' -f4");
        b.config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/root", "type": "bind", "source": source, "options": options
        }));
        b.write();
        let dir = b.dir.to_str().unwrap();
        let run = |runtime: &str, id: &str| {
            // The source is mounted in a private mount namespace, and the
            // runtime started there as the user.
            let mut cmd = s.command("unshare", &[]);
            cmd.uid(0).gid(0).args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount -t tmpfs -o ro,nosuid,nodev,noexec,noatime tmpfs \"$0\" && \
                 exec setpriv --reuid \"$1\" --regid \"$2\" --clear-groups \"$3\" run --bundle \"$4\" \"$5\"",
                source.to_str().unwrap(),
                &user().uid.to_string(),
                &user().gid.to_string(),
                runtime,
                dir,
                id,
            ]);
            collect(cmd)
        };
        let id = support::unique_id("locked");
        let out = run(support::skiff_bin(), &id).ok();
        assert_eq!(
            out.stdout, "ro,nosuid,nodev,noexec,noatime\n",
            "options {options:?}"
        );
        s.assert_nothing_left(&id);
        let runc = run("runc", &id);
        eprintln!(
            "runc with {options:?}: exit {} {}",
            runc.code,
            runc.stderr.lines().last().unwrap_or_default()
        );
    }
}

/// A root-owned file the user may not read stays out of reach, though the
/// container's root has CAP_DAC_OVERRIDE in its own user namespace; a
/// bind source the user may not reach is refused.
#[test]
fn host_files_the_user_cannot_reach_stay_out_of_reach() {
    require_rootless!();
    let s = Session::new();
    let shared = support::scratch().join(support::unique_id("secret"));
    let vault = shared.join("vault");
    std::fs::create_dir_all(&vault).unwrap();
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(vault.join("key"), "host secret").unwrap();
    let mut b = bundle("cat /root/vault/key 2>&1; ls /root/vault 2>&1; echo end");
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/root", "type": "bind", "source": shared, "options": ["rbind"]
    }));
    let id = support::unique_id("secret");
    let (skiff, runc) = s.run_both(&b, &id);
    let out = same_output(skiff, runc);
    assert!(!out.contains("host secret"), "{out}");
    assert_eq!(out.matches("Permission denied").count(), 2, "{out}");
    s.assert_nothing_left(&id);

    let mut b = bundle("true");
    let key = vault.join("key");
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/etc/passwd", "type": "bind", "source": key, "options": ["bind"]
    }));
    let id = support::unique_id("secret-bind");
    let (skiff, runc) = s.run_both(&b, &id);
    skiff.fails_with(&["(bind on /etc/passwd)", key.to_str().unwrap(), "EACCES"]);
    assert_ne!(runc.code, 0, "{}", runc.stdout);
    s.assert_nothing_left(&id);
}

/// Every capability the config grants is the user namespace's: none of
/// them works on the host (making a device node, raising a priority),
/// and on the host the container is the user.
#[test]
fn no_capability_in_the_host_user_namespace() {
    require_rootless!();
    let s = Session::new();
    let mut b = bundle(
        "mknod /dev/n c 1 3 2>&1 || echo no-mknod; nice -n -5 true 2>/dev/null || echo no-nice; \
         grep CapEff /proc/self/status",
    );
    let caps = [
        "CAP_MKNOD",
        "CAP_SYS_NICE",
        "CAP_SYS_ADMIN",
        "CAP_DAC_OVERRIDE",
    ];
    for set in ["bounding", "effective", "permitted"] {
        let list = b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap();
        list.extend(caps.iter().map(|c| json!(c)));
    }
    let id = support::unique_id("caps");
    let (skiff, runc) = s.run_both(&b, &id);
    let out = same_output(skiff, runc);
    assert!(
        out.contains("no-mknod\n") && out.contains("no-nice\n"),
        "{out}"
    );
    // They are held, in the container's user namespace.
    let eff = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .unwrap();
    let eff = u64::from_str_radix(eff, 16).unwrap();
    // CAP_SYS_ADMIN is capability 21.
    assert_ne!(eff & (1 << 21), 0, "{out}");
    s.assert_nothing_left(&id);

    b.config["process"]["args"] = json!(["sleep", "100"]);
    b.write();
    let id = support::unique_id("caps-host");
    let _delete = OnDrop(|| drop(s.skiff(&["delete", "--force", &id])));
    s.skiff(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &id])
        .ok();
    let pid = s.skiff(&["state", &id]).ok().stdout;
    let pid: Value = serde_json::from_str(&pid).unwrap();
    let pid = pid["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uid = user().uid.to_string();
    assert!(
        uid_line.split_whitespace().skip(1).all(|f| f == uid),
        "{uid_line}"
    );
    let ns = |p: &str| std::fs::read_link(p).unwrap();
    assert_ne!(
        ns(&format!("/proc/{pid}/ns/user")),
        ns("/proc/self/ns/user")
    );
    s.skiff(&["delete", "--force", &id]).ok();
    s.assert_nothing_left(&id);
}

/// The user owns the runtime binary, and the container's root is the
/// user: still, neither a program that is `/proc/self/exe` nor an
/// attacker going for the waiting init's exe can write the binary.
#[test]
fn the_runtime_binary_is_out_of_reach_even_when_the_user_owns_it() {
    require_rootless!();
    let s = Session::new();
    let dir = user_dir(&s.xdg.join("bin"));
    let copy = dir.join("skiff-under-attack");
    std::fs::copy(support::skiff_bin(), &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(user().uid), Some(user().gid)).unwrap();
    let original = std::fs::read(&copy).unwrap();
    let root = s.xdg.join("state");
    let root = root.to_str().unwrap();
    let skiff = |args: &[&str]| {
        let mut all = vec!["--root", root];
        all.extend_from_slice(args);
        collect(s.command(&copy, &all))
    };

    let mut b = bundle("true");
    let rootfs = b.dir.join("rootfs");
    support::make_rootfs(&rootfs);
    std::os::unix::fs::symlink("/proc/self/exe", rootfs.join("bin/evil")).unwrap();
    std::fs::write(rootfs.join("attack.sh"), support::ATTACKER).unwrap();
    let out = rootfs.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    b.config["root"] = json!({"path": "rootfs", "readonly": false});
    b.config["process"]["args"] = json!(["/bin/evil", "--version"]);
    b.write();
    let bundle_dir = b.dir.to_str().unwrap();
    let id = support::unique_id("self-exe");
    let run = skiff(&["run", "--bundle", bundle_dir, &id]).ok();
    assert!(run.stdout.contains("skiff version"), "{}", run.stdout);
    assert_eq!(std::fs::read(&copy).unwrap(), original);

    b.config["process"]["args"] = json!(["sleep", "60"]);
    b.write();
    let id = support::unique_id("atk-init");
    let _delete = OnDrop(|| drop(skiff(&["delete", "--force", &id])));
    skiff(&["create", "--bundle", bundle_dir, &id]).ok();
    skiff(&["exec", "-d", &id, "sh", "/attack.sh"]).ok();
    support::attacker_tried(&rootfs);
    skiff(&["start", &id]).ok();
    let log = support::attack_verdict(&rootfs);
    skiff(&["delete", "--force", &id]).ok();
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        original,
        "the binary was changed; attacker log:\n{log}"
    );
    assert!(log.contains("saw "), "attacker never saw skiff:\n{log}");
    assert!(log.contains("denied") || log.contains("refused"), "{log}");
}

/// A user cannot mount the read-only overlay; where no memfd may be
/// executed either (`vm.memfd_noexec=2`, set in a private pid namespace),
/// skiff refuses to run unprotected, with one line naming both.
#[test]
fn without_a_sealed_copy_a_user_is_refused() {
    require_rootless!();
    if !Path::new("/proc/sys/vm/memfd_noexec").exists() {
        let why = "this kernel has no vm.memfd_noexec (Linux 6.3+)";
        assert!(std::env::var_os("SKIFF_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("SKIPPED without_a_sealed_copy_a_user_is_refused: {why}");
        return;
    }
    let s = Session::new();
    let b = bundle("true");
    b.write();
    let id = support::unique_id("no-seal");
    let mut cmd = s.command("unshare", &[]);
    cmd.uid(0).gid(0).args([
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        "echo 2 > /proc/sys/vm/memfd_noexec && \
         exec setpriv --reuid \"$0\" --regid \"$1\" --clear-groups \"$2\" run --bundle \"$3\" \"$4\"",
        &user().uid.to_string(),
        &user().gid.to_string(),
        support::skiff_bin(),
        b.dir.to_str().unwrap(),
        &id,
    ]);
    collect(cmd).fails_with(&[
        "no sealed copy could be made: read-only overlayfs: fsopen(overlay): EPERM",
        "sealed memfd: memfd_create: EACCES",
    ]);
    s.assert_nothing_left(&id);
}
