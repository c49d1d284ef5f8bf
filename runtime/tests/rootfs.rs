//! The container's filesystem: root, mounts of every kind with their
//! options and propagation, devices, masked and read-only paths, and the
//! safety of in-root resolution.

mod support;

use serde_json::json;
use support::{Bundle, Skiff};

fn run_in(b: &Bundle) -> support::Run {
    let skiff = Skiff::new();
    let id = support::unique_id("fs");
    let run = skiff.run_bundle(b, &id);
    support::assert_nothing_left(&skiff, &id);
    run
}

/// The mountinfo line for `target` inside the container.
fn mountinfo_line<'a>(mountinfo: &'a str, target: &str) -> &'a str {
    mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(target))
        .unwrap_or_else(|| panic!("{target} not mounted:\n{mountinfo}"))
}

#[test]
fn readonly_root_and_writable_tmpfs() {
    require_root!();
    let b =
        Bundle::sh("touch /x 2>/dev/null && echo wrote-root; touch /dev/shm/y && echo wrote-shm");
    assert_eq!(run_in(&b).ok().stdout, "wrote-shm\n");
    let mut b = Bundle::own_rootfs(&["sh", "-c", "touch /x && echo wrote-root"]);
    b.config["root"]["readonly"] = json!(false);
    assert_eq!(run_in(&b).ok().stdout, "wrote-root\n");
    assert!(b.rootfs.join("x").exists());
}

#[test]
fn pivot_root_hides_the_host() {
    require_root!();
    let marker = format!("/skiff-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let b = Bundle::sh(&format!(
        "ls {marker} 2>&1; cat /proc/self/mountinfo | wc -l"
    ));
    let out = run_in(&b).ok().stdout;
    std::fs::remove_file(&marker).unwrap();
    assert!(out.contains("No such file"), "{out}");
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let inside: usize = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(
        inside < host_mounts || host_mounts < 30,
        "container sees {inside} mounts, host has {host_mounts}"
    );
}

#[test]
fn no_pivot_chroots() {
    require_root!();
    let skiff = Skiff::new();
    let b = Bundle::sh("cat /proc/self/mountinfo | grep -c ' / / '; ls /bin/busybox");
    b.write();
    let id = support::unique_id("nopivot");
    let out = skiff
        .run(&[
            "run",
            "--no-pivot",
            "--bundle",
            b.dir.to_str().unwrap(),
            &id,
        ])
        .ok()
        .stdout;
    assert!(out.ends_with("/bin/busybox\n"), "{out}");
}

#[test]
fn mount_types_and_options() {
    require_root!();
    let mut b = Bundle::sh("cat /proc/self/mountinfo");
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/mnt/ro-noexec", "type": "tmpfs", "source": "tmpfs",
        "options": ["ro", "noexec", "nosuid", "nodev", "noatime", "mode=700", "size=1m"]}),
    );
    mounts.push(json!({"destination": "/mnt/sync", "type": "tmpfs", "source": "tmpfs", "options": ["sync", "dirsync"]}));
    let out = run_in(&b).ok().stdout;
    let line = mountinfo_line(&out, "/mnt/ro-noexec");
    let opts = line.split(' ').nth(5).unwrap();
    for o in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing in {line}");
    }
    assert!(
        line.contains("mode=700") && line.contains("size=1024k"),
        "{line}"
    );
    let line = mountinfo_line(&out, "/mnt/sync");
    assert!(
        line.contains(" - tmpfs") && line.ends_with(",sync,dirsync") || line.contains("sync"),
        "{line}"
    );
    for (dest, fs) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let line = mountinfo_line(&out, dest);
        assert!(line.contains(&format!(" - {fs} ")), "{dest}: {line}");
    }
    assert!(mountinfo_line(&out, "/sys")
        .split(' ')
        .nth(5)
        .unwrap()
        .starts_with("ro"));
}

#[test]
fn bind_rbind_and_recursive_readonly() {
    require_root!();
    // A host directory with a submount.
    let host = std::env::temp_dir().join(support::unique_id("bindsrc"));
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("file"), "hello\n").unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &host.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(host.join("sub/inner"), "inner\n").unwrap();
    let src = host.to_str().unwrap();
    let mut b = Bundle::sh(
        "cat /bind/file; ls /bind/sub; cat /rbind/sub/inner; \
         touch /rbind/sub/w 2>/dev/null && echo sub-writable; \
         touch /rro/sub/w 2>/dev/null || echo sub-readonly; \
         touch /bind/w 2>/dev/null || echo bind-readonly; cat /file-bind",
    );
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/bind", "type": "bind", "source": src, "options": ["bind", "ro"]}),
    );
    mounts.push(
        json!({"destination": "/rbind", "type": "bind", "source": src, "options": ["rbind", "ro"]}),
    );
    mounts.push(
        json!({"destination": "/rro", "type": "none", "source": src, "options": ["rbind", "rro"]}),
    );
    mounts.push(
        json!({"destination": "/file-bind", "source": host.join("file"), "options": ["bind"]}),
    );
    let out = run_in(&b).ok().stdout;
    nix::mount::umount(&host.join("sub")).unwrap();
    std::fs::remove_dir_all(&host).unwrap();
    // bind (not recursive): the submount is not carried, sub is empty.
    // rbind + ro: the submount comes along and stays writable (ro is for
    // the top mount only); rro makes it read-only too.
    assert_eq!(
        out,
        "hello\ninner\nsub-writable\nsub-readonly\nbind-readonly\nhello\n"
    );
}

#[test]
fn relative_bind_source_is_relative_to_the_bundle() {
    require_root!();
    let mut b = Bundle::sh("cat /data/f");
    std::fs::create_dir_all(b.dir.join("data")).unwrap();
    std::fs::write(b.dir.join("data/f"), "from bundle\n").unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]}),
    );
    assert_eq!(run_in(&b).ok().stdout, "from bundle\n");
}

#[test]
fn mount_propagation_options() {
    require_root!();
    let host = std::env::temp_dir().join(support::unique_id("prop"));
    std::fs::create_dir_all(&host).unwrap();
    let src = host.to_str().unwrap();
    let mut b = Bundle::sh("cat /proc/self/mountinfo");
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/shared", "type": "bind", "source": src, "options": ["rbind", "rshared"]}));
    mounts.push(json!({"destination": "/private", "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    mounts.push(json!({"destination": "/unbindable", "type": "bind", "source": src, "options": ["bind", "unbindable"]}));
    let out = run_in(&b).ok().stdout;
    std::fs::remove_dir_all(&host).unwrap();
    assert!(
        mountinfo_line(&out, "/shared").contains(" shared:"),
        "{}",
        mountinfo_line(&out, "/shared")
    );
    let private = mountinfo_line(&out, "/private");
    assert!(
        !private.contains("shared:") && !private.contains("master:"),
        "{private}"
    );
    assert!(
        mountinfo_line(&out, "/unbindable").contains(" unbindable "),
        "{}",
        mountinfo_line(&out, "/unbindable")
    );
}

#[test]
fn rootfs_propagation() {
    require_root!();
    // Default: rslave — the root mount follows the host but never the reverse.
    let b = Bundle::sh("cat /proc/self/mountinfo");
    let out = run_in(&b).ok().stdout;
    let root = mountinfo_line(&out, "/");
    let host_root_shared = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/") && l.contains("shared:"));
    if host_root_shared {
        assert!(root.contains("master:"), "{root}");
    }
    assert!(!root.contains("shared:"), "{root}");
    let mut b = Bundle::sh("cat /proc/self/mountinfo");
    b.config["linux"]["rootfsPropagation"] = json!("rprivate");
    let out = run_in(&b).ok().stdout;
    let root = mountinfo_line(&out, "/");
    assert!(
        !root.contains("master:") && !root.contains("shared:"),
        "{root}"
    );
}

#[test]
fn cgroup_mount_shows_the_container_cgroup() {
    require_root!();
    let mut b = Bundle::sh("cat /proc/self/cgroup; ls /sys/fs/cgroup");
    b.namespaces(&["pid", "network", "ipc", "uts", "mount", "cgroup"]);
    let out = run_in(&b).ok().stdout;
    // With a cgroup namespace every hierarchy shows the container as root.
    assert!(
        out.lines()
            .filter(|l| l.contains(":/"))
            .all(|l| l.ends_with(":/")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l == "memory" || l == "cgroup.procs"),
        "{out}"
    );
}

#[test]
fn default_and_extra_devices() {
    require_root!();
    let mut b = Bundle::sh(
        "for d in null zero full random urandom tty fuse-like; do stat -c '%n %t:%T %a %u:%g %F' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; echo x > /dev/null && echo null-ok",
    );
    b.config["linux"]["devices"] = json!([{"path": "/dev/fuse-like", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 3, "gid": 4}]);
    let out = run_in(&b).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/dev/null 1:3 666 0:0 character special file");
    assert_eq!(lines[1], "/dev/zero 1:5 666 0:0 character special file");
    assert_eq!(lines[5], "/dev/tty 5:0 666 0:0 character special file");
    assert_eq!(
        lines[6],
        "/dev/fuse-like a:e5 640 3:4 character special file"
    );
    assert_eq!(
        &lines[7..12],
        [
            "/proc/self/fd",
            "/proc/self/fd/0",
            "/proc/self/fd/1",
            "/proc/self/fd/2",
            "pts/ptmx"
        ]
    );
    assert_eq!(lines[12], "null-ok");
}

#[test]
fn masked_and_readonly_paths() {
    require_root!();
    let mut b = Bundle::sh(
        "cat /proc/kcore 2>/dev/null | wc -c; ls /proc/acpi | wc -l; cat /proc/keys | wc -c; \
         echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo sys-readonly; \
         touch /sys/firmware/x 2>/dev/null || echo firmware-readonly",
    );
    b.config["linux"]["maskedPaths"] = json!([
        "/proc/kcore",
        "/proc/acpi",
        "/proc/keys",
        "/sys/firmware",
        "/does/not/exist"
    ]);
    b.config["linux"]["readonlyPaths"] = json!(["/proc/sys", "/also/missing"]);
    let out = run_in(&b).ok().stdout;
    assert_eq!(out, "0\n0\n0\nsys-readonly\nfirmware-readonly\n");
}

#[test]
fn symlinks_in_the_rootfs_cannot_redirect_to_the_host() {
    require_root!();
    // An image whose /evil points at a host directory, and whose /dev/null
    // is a symlink to a host file: the mount must land inside the rootfs and
    // the mask must not use the host file.
    let victim = std::env::temp_dir().join(support::unique_id("victim"));
    std::fs::create_dir_all(&victim).unwrap();
    let mut b = Bundle::own_rootfs(&["sh", "-c", "ls /evil/mnt >/dev/null && echo inside"]);
    std::os::unix::fs::symlink(&victim, b.rootfs.join("evil")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/evil/mnt", "type": "tmpfs", "source": "tmpfs"}));
    let out = run_in(&b).ok().stdout;
    assert_eq!(out, "inside\n");
    assert!(
        !victim.join("mnt").exists(),
        "mount point created on the host"
    );
    assert!(b
        .rootfs
        .join(victim.strip_prefix("/").unwrap())
        .join("mnt")
        .is_dir());
    std::fs::remove_dir_all(&victim).unwrap();
}

#[test]
fn dangling_symlink_destination_is_created_inside() {
    require_root!();
    let mut b = Bundle::own_rootfs(&["sh", "-c", "ls -d /run/data && ls -d /var/run/data"]);
    std::fs::create_dir_all(b.rootfs.join("var")).unwrap();
    std::os::unix::fs::symlink("/run", b.rootfs.join("var/run")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/var/run/data", "type": "tmpfs", "source": "tmpfs"}));
    assert_eq!(run_in(&b).ok().stdout, "/run/data\n/var/run/data\n");
}

#[test]
fn proc_self_exe_never_runs_the_host_runtime() {
    require_root!();
    // CVE-2019-5736: an image whose program is a symlink to /proc/self/exe.
    // Without protection the init's execve would start the host's skiff
    // binary inside the container (which prints its version here); through
    // the sealed trampoline it only finds the trampoline again and fails.
    let b = Bundle::own_rootfs(&["/bin/evil", "--version"]);
    std::os::unix::fs::symlink("/proc/self/exe", b.rootfs.join("bin/evil")).unwrap();
    let run = run_in(&b);
    assert!(
        !run.stdout.contains("skiff version"),
        "host runtime ran in the container: {}",
        run.stdout
    );
    assert_eq!(run.code, 127);
}

#[test]
fn tmpcopyup_fills_the_tmpfs_from_the_image() {
    require_root!();
    let mut b = Bundle::own_rootfs(&[
        "sh",
        "-c",
        "cat /run/app/conf; readlink /run/link; stat -c '%a %u' /run/app/conf; \
         grep ' /run ' /proc/self/mounts | cut -d' ' -f3; echo new > /run/new",
    ]);
    std::fs::create_dir_all(b.rootfs.join("run/app")).unwrap();
    std::fs::write(b.rootfs.join("run/app/conf"), "from image\n").unwrap();
    std::fs::set_permissions(
        b.rootfs.join("run/app/conf"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    nix::unistd::chown(
        &b.rootfs.join("run/app/conf"),
        Some(nix::unistd::Uid::from_raw(7)),
        None,
    )
    .unwrap();
    std::os::unix::fs::symlink("app/conf", b.rootfs.join("run/link")).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "mode=755"]
    }));
    assert_eq!(
        run_in(&b).ok().stdout,
        "from image\napp/conf\n640 7\ntmpfs\n"
    );
    // The write went to the tmpfs, not the image.
    assert!(!b.rootfs.join("run/new").exists());
}
