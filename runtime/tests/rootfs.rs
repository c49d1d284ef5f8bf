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

/// A shared or unbindable rootfsPropagation is what the container's root
/// mount itself gets (and, recursively, the mounts under it), so that a
/// bind of `/` inside sees later mounts (shared) or is refused (unbindable):
/// the runtime-tools validation linux_rootfs_propagation checks both.
#[test]
fn rootfs_propagation_is_the_container_roots() {
    require_root!();
    let show = "cat /proc/self/mountinfo; mount --bind / /tmp 2>/dev/null && echo bound-root; true";
    let cases = [
        ("shared", " shared:", "", true),
        ("rshared", " shared:", " shared:", true),
        ("unbindable", " unbindable ", "", false),
        ("runbindable", " unbindable ", " unbindable ", false),
    ];
    for (value, root_has, proc_has, binds) in cases {
        let mut b = Bundle::sh(show);
        b.config["root"]["readonly"] = json!(false);
        b.config["linux"]["rootfsPropagation"] = json!(value);
        for set in ["bounding", "effective", "permitted"] {
            b.config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
        let out = run_in(&b).ok().stdout;
        let root = mountinfo_line(&out, "/");
        assert!(root.contains(root_has), "{value}: {root}");
        let proc = mountinfo_line(&out, "/proc");
        assert!(
            proc.contains(proc_has) && (!proc_has.is_empty() || !proc.contains(root_has)),
            "{value}: {proc}"
        );
        assert_eq!(out.contains("bound-root"), binds, "{value}:\n{out}");
    }
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

/// A host symlink `link -> file` in the bundle directory, and the file.
fn host_symlink(b: &Bundle) -> std::path::PathBuf {
    std::fs::write(b.dir.join("file"), "host file\n").unwrap();
    let link = b.dir.join("link");
    std::os::unix::fs::symlink("file", &link).unwrap();
    link
}

#[test]
fn src_nofollow_binds_the_symlink_itself() {
    require_root!();
    for (options, script, want) in [
        // Followed: the file it names.
        (json!(["bind"]), "cat /target", "host file\n"),
        (
            json!(["bind", "src-nofollow"]),
            "readlink /target",
            "file\n",
        ),
    ] {
        let mut b = Bundle::sh(script);
        let link = host_symlink(&b);
        b.config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/target", "type": "bind", "source": link, "options": options
        }));
        assert_eq!(run_in(&b).ok().stdout, want, "{options}");
    }
}

#[test]
fn dest_nofollow_mounts_on_the_symlink_itself() {
    require_root!();
    let with_link = |options: serde_json::Value, symlink_source: bool| {
        let mut b =
            Bundle::own_rootfs(&["sh", "-c", "readlink /link; cat /link; cat /real/marker"]);
        std::fs::create_dir_all(b.rootfs.join("real")).unwrap();
        std::fs::write(b.rootfs.join("real/marker"), "untouched\n").unwrap();
        std::os::unix::fs::symlink("real/marker", b.rootfs.join("link")).unwrap();
        let source = if symlink_source {
            host_symlink(&b)
        } else {
            std::fs::write(b.dir.join("file"), "host file\n").unwrap();
            b.dir.join("file")
        };
        b.config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/link", "type": "bind", "source": source, "options": options
        }));
        b
    };
    // Followed (the default): the mount lands on the image's file.
    let out = run_in(&with_link(json!(["bind"]), false)).ok().stdout;
    assert_eq!(out, "real/marker\nhost file\nhost file\n");
    // dest-nofollow: on the symlink, whose target stays as it was.
    let out = run_in(&with_link(json!(["bind", "dest-nofollow"]), false))
        .ok()
        .stdout;
    assert_eq!(out, "host file\nuntouched\n");
    // Both: the host's symlink replaces the image's (and names a file
    // the container does not have).
    let out = run_in(&with_link(
        json!(["bind", "src-nofollow", "dest-nofollow"]),
        true,
    ))
    .ok()
    .stdout;
    assert_eq!(out, "file\nuntouched\n");
    // Only binds take them.
    let mut b = Bundle::new(&["true"]);
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["dest-nofollow"]
    }));
    refused(&b, &["mounts[", "dest-nofollow need a bind mount"]);
}

/// Mount points in this process's mount namespace at or under `dir`.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == dir || mp.starts_with(&format!("{dir}/")))
        .map(String::from)
        .collect()
}

/// Runs `b`, which must fail with one error line holding every fragment,
/// and checks that nothing is left: no state, cgroup, process or mount.
fn refused(b: &Bundle, fragments: &[&str]) {
    let skiff = Skiff::new();
    let id = support::unique_id("refused");
    skiff.run_bundle(b, &id).fails_with(fragments);
    support::assert_nothing_left(&skiff, &id);
    assert_eq!(mounts_under(&b.dir), Vec::<String>::new());
}

/// A private rootfs whose `path` (absolute in the container) is replaced
/// by a symlink to `target`; `target`, when it is a directory of the
/// rootfs, is made (empty).
fn with_symlink(args: &[&str], path: &str, target: &str) -> Bundle {
    let b = Bundle::own_rootfs(args);
    let at = b.rootfs.join(path.trim_start_matches('/'));
    let _ = std::fs::remove_dir(&at);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, &at).unwrap();
    let resolved = at.parent().unwrap().join(target.trim_start_matches('/'));
    let inside = if target.starts_with('/') {
        b.rootfs.join(target.trim_start_matches('/'))
    } else {
        resolved
    };
    if !target.contains("nowhere") {
        std::fs::create_dir_all(inside).unwrap();
    }
    b
}

/// Drops the `mounts` entries at these destinations.
fn without_mounts(b: &mut Bundle, destinations: &[&str]) {
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| !destinations.contains(&m["destination"].as_str().unwrap()));
}

#[test]
fn proc_and_sys_must_not_be_symlinks() {
    require_root!();
    // CVE-2019-19921 / CVE-2023-27561: procfs or sysfs mounted through a
    // symlink lands somewhere else. runc 1.1.5 refuses each of these with
    // `filesystem "proc" must be mounted on ordinary directory`.
    for dir in ["proc", "sys"] {
        let kind = if dir == "proc" { "proc" } else { "sysfs" };
        for target in ["/evil", "evil", "/nowhere"] {
            let b = with_symlink(&["true"], &format!("/{dir}"), target);
            refused(
                &b,
                &[
                    &format!("({kind} on /{dir})"),
                    &format!("/{dir} is a symlink"),
                    &format!("{kind} must be mounted on a real directory"),
                ],
            );
            let evil = b.rootfs.join("evil");
            if evil.exists() {
                assert_eq!(std::fs::read_dir(&evil).unwrap().count(), 0, "{target}");
            }
            assert!(!b.rootfs.join("nowhere").exists());
        }
    }
    // A symlink above the destination is refused too, and named.
    let mut b = with_symlink(&["true"], "/foo", "evil");
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/foo/proc", "type": "proc", "source": "proc"}));
    refused(&b, &["(proc on /foo/proc)", "/foo is a symlink"]);
    assert!(!b.rootfs.join("evil/proc").exists());
    // Not a directory at all.
    let b = Bundle::own_rootfs(&["true"]);
    std::fs::remove_dir(b.rootfs.join("proc")).unwrap();
    std::fs::write(b.rootfs.join("proc"), "").unwrap();
    refused(&b, &["(proc on /proc)", "/proc is not a directory"]);
}

#[test]
fn dev_must_not_be_a_symlink() {
    require_root!();
    // skiff makes the device nodes, /dev/ptmx and the masks' /dev/null by
    // name in /dev. runc 1.1.5 fails on an absolute /dev symlink (its ptmx
    // link goes to the host path) and follows a relative one.
    for target in ["/evil", "evil"] {
        let b = with_symlink(&["true"], "/dev", target);
        refused(&b, &["(tmpfs on /dev)", "/dev is a symlink"]);
        // Without mounts there, the nodes go into the image's /dev.
        let mut b = with_symlink(&["true"], "/dev", target);
        without_mounts(&mut b, &["/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"]);
        refused(&b, &["/dev is a symlink", "/dev must be a real directory"]);
        assert_eq!(std::fs::read_dir(b.rootfs.join("evil")).unwrap().count(), 0);
    }
}

#[test]
fn runtime_mount_points_must_not_be_symlinks() {
    require_root!();
    // Without a /dev tmpfs the image's /dev holds the mount points; skiff
    // fills /dev, so nothing there may be a symlink (runc and crun follow
    // these inside the rootfs).
    for (dest, kind) in [
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        let mut b = with_symlink(&["true"], dest, "/evil");
        without_mounts(&mut b, &["/dev"]);
        refused(
            &b,
            &[
                &format!("({kind} on {dest})"),
                &format!("{dest} is a symlink"),
            ],
        );
    }
    // devpts and mqueue are pinned wherever /dev comes from.
    let mut b = with_symlink(&["true"], "/dev/pts", "/evil");
    without_mounts(&mut b, &["/dev"]);
    b.config["mounts"].as_array_mut().unwrap().insert(
        0,
        json!({"destination": "/dev", "type": "bind", "source": b.rootfs.join("dev"), "options": ["rbind"]}),
    );
    refused(&b, &["(devpts on /dev/pts)", "/dev/pts is a symlink"]);
    // Cgroup mounts, with and without a symlink above them.
    for link in ["/sys/fs/cgroup", "/sys/fs"] {
        let mut b = with_symlink(&["true"], link, "/evil");
        without_mounts(&mut b, &["/sys"]);
        refused(
            &b,
            &[
                "(cgroup on /sys/fs/cgroup)",
                &format!("{link} is a symlink"),
            ],
        );
    }
}

#[test]
fn dev_console_is_never_reached_through_a_symlink() {
    require_root!();
    // The pty is bound over /dev/console; through an image's symlink it
    // would land on whatever the link names.
    let skiff = Skiff::new();
    let id = support::unique_id("console");
    let mut b = with_symlink(&["true"], "/dev/console", "/evil/console");
    std::fs::remove_dir(b.rootfs.join("evil/console")).unwrap();
    std::fs::write(b.rootfs.join("evil/console"), "").unwrap();
    without_mounts(&mut b, &["/dev"]);
    b.config["process"]["terminal"] = json!(true);
    b.write();
    let out = skiff
        .command(&["run", "--bundle", b.dir.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("/dev/console is a symlink"), "{stderr}");
    support::assert_nothing_left(&skiff, &id);
    assert_eq!(mounts_under(&b.dir), Vec::<String>::new());
}

/// How a propagation test makes the mount that holds its bundles, inside a
/// private mount namespace of its own that stands in for the host.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Holder {
    /// A shared tmpfs (`/run` on a systemd host).
    Shared,
    /// A slave of a shared tmpfs: host events come from the master.
    Slave,
    /// A private tmpfs.
    Private,
    /// `/` and the tmpfs shared and each rootfs a mount of its own, as
    /// containerd's bundles on a systemd host.
    SystemdRoot,
}

const PROPAGATION_VALUES: [&str; 9] = [
    "private",
    "rprivate",
    "slave",
    "rslave",
    "shared",
    "rshared",
    "unbindable",
    "runbindable",
    "unset",
];

/// Whether a mount the host makes under the container's rootfs reaches the
/// container. Nothing the container mounts reaches the host, for any value.
/// As runc 1.1.5 (measured on the same bundles): rslave (the default) makes
/// the holder a slave, which the rootfs bind then follows; rprivate cuts it.
/// A holder still shared when the rootfs is bound (shared, or a
/// non-recursive value on a shared one) is made private for pivot_root,
/// which cuts it too. Non-recursive values leave a slave holder a slave.
/// Unlike runc, which refuses runbindable: an unbindable value is the
/// container root's own (as crun), and an unbindable mount is no slave.
fn reaches_container(holder: Holder, value: &str) -> bool {
    match value {
        "rslave" | "unset" => holder != Holder::Private,
        "rprivate" | "rshared" | "unbindable" | "runbindable" => false,
        _ => holder == Holder::Slave,
    }
}

/// The mounts of the calling thread's mount namespace below this process's
/// scratch directory, where every bundle of these tests lives: a container
/// mount that propagates back lands there. Mounts elsewhere come and go
/// with other software on a busy host (seen here: another suite's tmpfs
/// and a Docker daemon's overlays, which showed up in this namespace while
/// the suites ran side by side) and say nothing about skiff.
fn thread_mounts() -> Vec<String> {
    let scratch = support::scratch().to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').take(5).collect::<Vec<_>>().join(" "))
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&scratch)))
        .collect()
}

fn mount_tmpfs(at: &std::path::Path) {
    std::fs::create_dir_all(at).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
}

fn set_propagation(at: &std::path::Path, flags: nix::mount::MsFlags) {
    nix::mount::mount(None::<&str>, at, None::<&str>, flags, None::<&str>).unwrap();
}

/// Waits up to 10 s for `file` and returns its content.
fn wait_for(file: &std::path::Path) -> Option<String> {
    for _ in 0..1000 {
        if let Ok(s) = std::fs::read_to_string(file) {
            if !s.is_empty() {
                return Some(s);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// One container with `rootfsPropagation: value` (or none) in bundle
/// `dir` on `holder`'s mount: its error, or whether a host mount under its
/// rootfs reached it and whether its own mount reached the host. `upstream`
/// is where host events start: the holder itself, or a slave's master.
fn propagation_outcome(
    dir: &std::path::Path,
    upstream: &std::path::Path,
    holder: Holder,
    value: &str,
    no_pivot: bool,
) -> Result<(bool, bool), String> {
    let rootfs = dir.join("rootfs");
    support::make_rootfs(&rootfs);
    for d in ["c", "h"] {
        std::fs::create_dir(rootfs.join(d)).unwrap();
    }
    if holder == Holder::SystemdRoot {
        let flags = nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(Some(&rootfs), &rootfs, None::<&str>, flags, None::<&str>).unwrap();
    }
    let script =
        "mount -t tmpfs c /c && touch /c/mark && echo ok > /ready || echo mount-failed > /ready; \
                  while [ ! -e /go ]; do sleep 0.02; done; \
                  if [ -e /h/mark ]; then echo yes; else echo no; fi > /seen";
    let mut config = support::default_config(&rootfs, &["sh", "-c", script]);
    config["root"]["readonly"] = json!(false);
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_ADMIN"));
    }
    if value != "unset" {
        config["linux"]["rootfsPropagation"] = json!(value);
    }
    let b = Bundle {
        dir: dir.to_path_buf(),
        rootfs: rootfs.clone(),
        config,
    };
    b.write();
    let skiff = Skiff::new();
    let id = support::unique_id("prop");
    let before = thread_mounts();
    let mut args = vec!["run", "-d", "--bundle", dir.to_str().unwrap()];
    if no_pivot {
        args.push("--no-pivot");
    }
    args.push(&id);
    let run = skiff.run(&args);
    let outcome = if run.code != 0 {
        Err(run.stderr)
    } else {
        let ready = wait_for(&rootfs.join("ready"));
        let from_container = rootfs.join("c/mark").exists();
        let host_mount = upstream
            .join(rootfs.strip_prefix(dir.parent().unwrap()).unwrap())
            .join("h");
        mount_tmpfs(&host_mount);
        std::fs::write(host_mount.join("mark"), "").unwrap();
        std::fs::write(rootfs.join("go"), "").unwrap();
        let seen = wait_for(&rootfs.join("seen"));
        skiff.run(&["delete", "--force", &id]).ok();
        nix::mount::umount2(&host_mount, nix::mount::MntFlags::MNT_DETACH).unwrap();
        if from_container {
            nix::mount::umount2(&rootfs.join("c"), nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
        assert_eq!(ready.as_deref(), Some("ok\n"), "{value} on {holder:?}");
        let seen = seen.unwrap_or_else(|| panic!("{value} on {holder:?}: no answer"));
        Ok((seen == "yes\n", from_container))
    };
    support::assert_nothing_left(&skiff, &id);
    assert_eq!(
        thread_mounts(),
        before,
        "{value} on {holder:?}: mounts below the bundles changed"
    );
    if holder == Holder::SystemdRoot {
        nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    outcome
}

/// Runs every rootfsPropagation value with bundles on `holder`, in a
/// private mount namespace, and compares with `reaches_container` (with
/// `--no-pivot`, private and rprivate are refused, as runc does).
fn propagation_matrix(holder: Holder, no_pivot: bool) {
    use nix::mount::MsFlags;
    let base = support::scratch().join(support::unique_id("propagation"));
    let work = base.clone();
    let failures = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        set_propagation(
            std::path::Path::new("/"),
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        );
        let holder_dir = work.join("holder");
        let master = work.join("master");
        let upstream = match holder {
            Holder::Slave => {
                mount_tmpfs(&master);
                set_propagation(&master, MsFlags::MS_SHARED);
                std::fs::create_dir_all(&holder_dir).unwrap();
                let bind = MsFlags::MS_BIND;
                nix::mount::mount(Some(&master), &holder_dir, None::<&str>, bind, None::<&str>)
                    .unwrap();
                set_propagation(&holder_dir, MsFlags::MS_SLAVE);
                master.clone()
            }
            Holder::SystemdRoot => {
                let shared = MsFlags::MS_REC | MsFlags::MS_SHARED;
                set_propagation(std::path::Path::new("/"), shared);
                mount_tmpfs(&holder_dir);
                holder_dir.clone()
            }
            Holder::Shared | Holder::Private => {
                mount_tmpfs(&holder_dir);
                let flag = if holder == Holder::Shared {
                    MsFlags::MS_SHARED
                } else {
                    MsFlags::MS_PRIVATE
                };
                set_propagation(&holder_dir, flag);
                holder_dir.clone()
            }
        };
        let mut failures = Vec::new();
        for value in PROPAGATION_VALUES {
            let dir = holder_dir.join(value);
            let got = propagation_outcome(&dir, &upstream, holder, value, no_pivot);
            let refused_without_pivot = no_pivot && (value == "private" || value == "rprivate");
            let ok = match &got {
                Err(e) => refused_without_pivot && e.contains("not safe with --no-pivot"),
                Ok((reached, from_container)) => {
                    *reached == reaches_container(holder, value)
                        && !from_container
                        && !refused_without_pivot
                }
            };
            if !ok {
                failures.push(format!("{value}: {got:?}"));
            }
        }
        for mnt in [&holder_dir, &master] {
            let _ = nix::mount::umount2(mnt, nix::mount::MntFlags::MNT_DETACH);
        }
        failures
    })
    .join()
    .unwrap();
    assert_eq!(mounts_under(&base), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&base);
    assert!(
        failures.is_empty(),
        "bundles on a {holder:?} mount{}, unexpected:\n{}",
        if no_pivot { " with --no-pivot" } else { "" },
        failures.join("\n")
    );
}

#[test]
fn rootfs_propagation_on_a_shared_mount() {
    require_root!();
    propagation_matrix(Holder::Shared, false);
}

#[test]
fn rootfs_propagation_on_a_slave_mount() {
    require_root!();
    propagation_matrix(Holder::Slave, false);
}

#[test]
fn rootfs_propagation_on_a_private_mount() {
    require_root!();
    propagation_matrix(Holder::Private, false);
}

#[test]
fn rootfs_propagation_on_a_systemd_host() {
    require_root!();
    propagation_matrix(Holder::SystemdRoot, false);
}

#[test]
fn rootfs_propagation_without_pivot_root() {
    require_root!();
    propagation_matrix(Holder::Shared, true);
    propagation_matrix(Holder::SystemdRoot, true);
}
