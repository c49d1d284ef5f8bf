//! config.md#root, #mounts, and the Linux filesystem fields: masked and
//! read-only paths, rootfs propagation.

use serde_json::{json, Value};

use super::{create_fails, expect_eq, mount_at, mount_options, output_with, report_with};
use crate::ctx::{Check, Ctx, Failure};
use crate::suite::{case, Case, Level::*};
use crate::{ensure, skip};

pub fn cases() -> Vec<Case> {
    vec![
        case("root.readonly", "config.md#root", Must, root_readonly),
        case("root.readwrite", "config.md#root", Must, root_readwrite),
        case(
            "root.path_relative_to_bundle",
            "config.md#root",
            Must,
            root_relative,
        ),
        case("root.missing_fails", "config.md#root", Must, root_missing),
        case(
            "root.pivot_hides_host",
            "runtime.md (the root is the container's)",
            Must,
            pivot_hides_host,
        ),
        case("mounts.proc", "config.md#mounts", Must, proc_mount),
        case("mounts.sysfs_readonly", "config.md#mounts", Must, sysfs_ro),
        case(
            "mounts.tmpfs_data_options",
            "config.md#mounts",
            Must,
            tmpfs_options,
        ),
        case("mounts.devpts", "config.md#mounts", Must, devpts),
        case("mounts.mqueue", "config.md#mounts", Must, mqueue),
        case("mounts.flags", "config.md#mounts (options)", Must, flags),
        case(
            "mounts.atime_flags",
            "config.md#mounts (options)",
            Must,
            atime,
        ),
        case(
            "mounts.destination_created",
            "config.md#mounts",
            Must,
            destination_created,
        ),
        case("mounts.order", "config.md#mounts (in order)", Must, order),
        case("mounts.bind", "config.md#mounts", Must, bind),
        case("mounts.bind_readonly", "config.md#mounts", Must, bind_ro),
        case("mounts.bind_file", "config.md#mounts", Must, bind_file),
        case(
            "mounts.rbind_submounts",
            "config.md#mounts",
            Must,
            rbind_submounts,
        ),
        case(
            "mounts.bind_not_recursive",
            "config.md#mounts",
            Must,
            bind_not_recursive,
        ),
        case(
            "mounts.recursive_readonly",
            "config.md#mounts (rro)",
            Must,
            recursive_ro,
        ),
        case(
            "mounts.bind_relative_source",
            "config.md#mounts (relative to the bundle)",
            Must,
            bind_relative,
        ),
        case(
            "mounts.bind_missing_source_fails",
            "runtime.md#create",
            Must,
            bind_missing,
        ),
        case(
            "mounts.propagation_shared",
            "config.md#mounts (propagation)",
            Must,
            propagation_shared,
        ),
        case(
            "mounts.propagation_private",
            "config.md#mounts (propagation)",
            Must,
            propagation_private,
        ),
        case(
            "mounts.propagation_unbindable",
            "config.md#mounts (propagation)",
            Must,
            propagation_unbindable,
        ),
        case(
            "mounts.symlink_stays_in_root",
            "runtime.md (paths resolve in the root)",
            Must,
            symlink_in_root,
        ),
        case(
            "mounts.proc_through_symlink_fails",
            "CVE-2019-19921, CVE-2023-27561 (runc and crun refuse it)",
            Runc,
            proc_through_symlink,
        ),
        case(
            "mounts.sysfs_through_symlink_fails",
            "CVE-2019-19921, CVE-2023-27561 (runc and crun refuse it)",
            Runc,
            sysfs_through_symlink,
        ),
        case(
            "mounts.cgroup",
            "config.md#mounts (cgroup)",
            Must,
            cgroup_mount,
        ),
        case("mounts.idmap", "config.md#mounts (idmap)", Must, idmap),
        case("mounts.tmpcopyup", "runc tmpcopyup", Runc, tmpcopyup),
        case(
            "mounts.src_nofollow",
            "crun(1) src-nofollow",
            Runc,
            src_nofollow,
        ),
        case(
            "mounts.dest_nofollow",
            "crun(1) dest-nofollow",
            Runc,
            dest_nofollow,
        ),
        case(
            "paths.masked_file",
            "config-linux.md#masked-paths",
            Must,
            masked_file,
        ),
        case(
            "paths.masked_dir",
            "config-linux.md#masked-paths",
            Must,
            masked_dir,
        ),
        case(
            "paths.masked_missing_ok",
            "config-linux.md#masked-paths",
            Should,
            masked_missing,
        ),
        case(
            "paths.readonly",
            "config-linux.md#readonly-paths",
            Must,
            readonly_path,
        ),
        case(
            "paths.readonly_missing_ok",
            "config-linux.md#readonly-paths",
            Should,
            readonly_missing,
        ),
        case(
            "rootfs_propagation.private",
            "config-linux.md#rootfs-mount-propagation",
            Must,
            rootfs_private,
        ),
        case(
            "rootfs_propagation.slave",
            "config-linux.md#rootfs-mount-propagation",
            Must,
            rootfs_slave,
        ),
        case(
            "mount_label",
            "config-linux.md#mount-label",
            Must,
            mount_label,
        ),
    ]
}

fn write_result(
    ctx: &mut Ctx,
    path: &str,
    edit: impl FnOnce(&mut crate::ctx::Bundle),
) -> Check<String> {
    output_with(ctx, &["/checker", "write", path, "x"], edit)
}

fn root_readonly(ctx: &mut Ctx) -> Check {
    let r = write_result(ctx, "/probe", |b| {
        b.config["root"]["readonly"] = json!(true)
    })?;
    expect_eq("write to /", r.as_str(), "EROFS")
}

fn root_readwrite(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle_own_rootfs();
    b.config["root"]["readonly"] = json!(false);
    let out = ctx.output(&mut b, &["/checker", "write", "/probe", "x"])?;
    expect_eq("write to /", out.as_str(), "ok")?;
    ensure!(
        b.rootfs.join("probe").exists(),
        "the write did not reach the rootfs"
    );
    Ok(())
}

fn root_relative(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle_own_rootfs();
    ensure!(b.config["root"]["path"] == "rootfs", "fixture");
    let r = ctx.report(&b)?;
    let _ = &mut b;
    expect_eq("pid", r["pid"].as_i64(), Some(1))
}

fn root_missing(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.config["root"]["path"] = json!("no-such-rootfs");
    create_fails(ctx, &b)
}

fn pivot_hides_host(ctx: &mut Ctx) -> Check {
    let marker = ctx.dir.join("host-only-marker");
    let _ = std::fs::write(&marker, "x");
    let out = output_with(
        ctx,
        &["/checker", "cat", &marker.display().to_string()],
        |_| {},
    )?;
    expect_eq("host file from inside", out.as_str(), "error ENOENT")
}

fn proc_mount(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |_| {})?;
    let m = mount_at(&r, "/proc").ok_or_else(|| Failure::Fail("no /proc mount".into()))?;
    expect_eq("fstype", m["fstype"].as_str(), Some("proc"))
}

fn sysfs_ro(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |_| {})?;
    let m = mount_at(&r, "/sys").ok_or_else(|| Failure::Fail("no /sys mount".into()))?;
    expect_eq("fstype", m["fstype"].as_str(), Some("sysfs"))?;
    ensure!(
        mount_options(m).contains(&"ro".to_string()),
        "/sys is not read-only: {m}"
    );
    Ok(())
}

fn tmpfs_options(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.mount(json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700"]}));
    })?;
    let m = mount_at(&r, "/mnt/t").ok_or_else(|| Failure::Fail("no /mnt/t mount".into()))?;
    let sup = m["super"].as_str().unwrap_or("");
    ensure!(
        sup.contains("size=1024k") && sup.contains("mode=700"),
        "superblock options {sup}"
    );
    Ok(())
}

fn devpts(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |_| {})?;
    let m = mount_at(&r, "/dev/pts").ok_or_else(|| Failure::Fail("no /dev/pts mount".into()))?;
    expect_eq("fstype", m["fstype"].as_str(), Some("devpts"))?;
    let sup = m["super"].as_str().unwrap_or("");
    ensure!(
        sup.contains("ptmxmode=666") && sup.contains("mode=620"),
        "devpts options {sup}"
    );
    Ok(())
}

fn mqueue(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |_| {})?;
    let m = mount_at(&r, "/dev/mqueue").ok_or_else(|| Failure::Fail("no /dev/mqueue".into()))?;
    expect_eq("fstype", m["fstype"].as_str(), Some("mqueue"))
}

fn flags(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.mount(json!({"destination": "/mnt/f", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nosuid", "nodev", "noexec"]}));
    })?;
    let m = mount_at(&r, "/mnt/f").ok_or_else(|| Failure::Fail("no mount".into()))?;
    let opts = mount_options(m);
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        ensure!(opts.iter().any(|x| x == o), "{o} missing: {opts:?}");
    }
    Ok(())
}

fn atime(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.mount(json!({"destination": "/mnt/a", "type": "tmpfs", "source": "tmpfs", "options": ["noatime"]}));
        b.mount(json!({"destination": "/mnt/s", "type": "tmpfs", "source": "tmpfs", "options": ["strictatime", "nodiratime"]}));
    })?;
    let a = mount_at(&r, "/mnt/a")
        .map(mount_options)
        .unwrap_or_default();
    ensure!(a.contains(&"noatime".into()), "noatime missing: {a:?}");
    let s = mount_at(&r, "/mnt/s")
        .map(mount_options)
        .unwrap_or_default();
    ensure!(
        s.contains(&"nodiratime".into()) && !s.contains(&"relatime".into()),
        "strictatime,nodiratime: {s:?}"
    );
    Ok(())
}

fn destination_created(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.mount(json!({"destination": "/deep/new/dir", "type": "tmpfs", "source": "tmpfs"}));
    })?;
    ensure!(
        mount_at(&r, "/deep/new/dir").is_some(),
        "no mount at a destination that did not exist"
    );
    Ok(())
}

fn order(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.mount(json!({"destination": "/mnt/outer", "type": "tmpfs", "source": "outer"}));
        b.mount(json!({"destination": "/mnt/outer/inner", "type": "tmpfs", "source": "inner"}));
    })?;
    let inner =
        mount_at(&r, "/mnt/outer/inner").ok_or_else(|| Failure::Fail("inner missing".into()))?;
    expect_eq("inner source", inner["source"].as_str(), Some("inner"))?;
    ensure!(mount_at(&r, "/mnt/outer").is_some(), "outer missing");
    Ok(())
}

fn host_dir(ctx: &Ctx, name: &str) -> std::path::PathBuf {
    let d = ctx.dir.join(name);
    let _ = std::fs::create_dir_all(&d);
    let _ = std::fs::write(d.join("file"), "host content");
    d
}

fn bind(ctx: &mut Ctx) -> Check {
    let src = host_dir(ctx, "src");
    let out = output_with(ctx, &["/checker", "cat", "/mnt/b/file"], |b| {
        b.mount(
            json!({"destination": "/mnt/b", "type": "bind", "source": src, "options": ["rbind"]}),
        );
    })?;
    expect_eq("content", out.as_str(), "host content")
}

fn bind_ro(ctx: &mut Ctx) -> Check {
    let src = host_dir(ctx, "src");
    let out = write_result(ctx, "/mnt/b/new", |b| {
        b.mount(json!({"destination": "/mnt/b", "type": "bind", "source": src, "options": ["rbind", "ro"]}));
    })?;
    expect_eq("write into a ro bind", out.as_str(), "EROFS")
}

fn bind_file(ctx: &mut Ctx) -> Check {
    let src = host_dir(ctx, "src").join("file");
    let out = output_with(ctx, &["/checker", "cat", "/mnt/file-target"], |b| {
        b.mount(json!({"destination": "/mnt/file-target", "type": "bind", "source": src, "options": ["bind"]}));
    })?;
    expect_eq("content", out.as_str(), "host content")
}

/// A host dir with a tmpfs mounted at sub/ (unmounted when dropped).
struct WithSubmount(std::path::PathBuf);

impl Drop for WithSubmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0.join("sub"), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn with_submount(ctx: &Ctx) -> Check<WithSubmount> {
    let d = host_dir(ctx, "withsub");
    let sub = d.join("sub");
    let _ = std::fs::create_dir_all(&sub);
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| Failure::Fail(format!("host submount: {e}")))?;
    let _ = std::fs::write(sub.join("inner"), "inner");
    Ok(WithSubmount(d))
}

fn rbind_submounts(ctx: &mut Ctx) -> Check {
    let h = with_submount(ctx)?;
    let src = h.0.clone();
    let out = output_with(ctx, &["/checker", "cat", "/mnt/r/sub/inner"], |b| {
        b.mount(
            json!({"destination": "/mnt/r", "type": "bind", "source": src, "options": ["rbind"]}),
        );
    })?;
    expect_eq("submount content", out.as_str(), "inner")
}

fn bind_not_recursive(ctx: &mut Ctx) -> Check {
    let h = with_submount(ctx)?;
    let src = h.0.clone();
    let out = output_with(ctx, &["/checker", "cat", "/mnt/r/sub/inner"], |b| {
        b.mount(
            json!({"destination": "/mnt/r", "type": "bind", "source": src, "options": ["bind"]}),
        );
    })?;
    expect_eq(
        "submount through a plain bind",
        out.as_str(),
        "error ENOENT",
    )
}

fn recursive_ro(ctx: &mut Ctx) -> Check {
    let h = with_submount(ctx)?;
    let src = h.0.clone();
    let out = write_result(ctx, "/mnt/r/sub/new", |b| {
        b.mount(json!({"destination": "/mnt/r", "type": "bind", "source": src, "options": ["rbind", "rro"]}));
    })?;
    expect_eq(
        "write into a submount of an rro bind",
        out.as_str(),
        "EROFS",
    )
}

fn bind_relative(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    let _ = std::fs::create_dir_all(b.dir.join("data"));
    let _ = std::fs::write(b.dir.join("data/file"), "bundle content");
    b.mount(
        json!({"destination": "/mnt/rel", "type": "bind", "source": "data", "options": ["rbind"]}),
    );
    let out = ctx.output(&mut b, &["/checker", "cat", "/mnt/rel/file"])?;
    expect_eq("content", out.as_str(), "bundle content")
}

fn bind_missing(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    b.mount(json!({"destination": "/mnt/x", "type": "bind", "source": "/no/such/source", "options": ["rbind"]}));
    create_fails(ctx, &b)
}

fn propagation(ctx: &mut Ctx, option: &str) -> Check<Value> {
    let src = host_dir(ctx, "prop");
    let r = report_with(ctx, |b| {
        b.mount(json!({"destination": "/mnt/p", "type": "bind", "source": src, "options": ["rbind", option]}));
    })?;
    mount_at(&r, "/mnt/p")
        .cloned()
        .ok_or_else(|| Failure::Fail("no /mnt/p".into()))
}

fn propagation_shared(ctx: &mut Ctx) -> Check {
    let m = propagation(ctx, "rshared")?;
    ensure!(
        m["optional"].as_str().unwrap_or("").contains("shared:"),
        "not shared: {m}"
    );
    Ok(())
}

fn propagation_private(ctx: &mut Ctx) -> Check {
    let m = propagation(ctx, "rprivate")?;
    let opt = m["optional"].as_str().unwrap_or("");
    ensure!(
        !opt.contains("shared:") && !opt.contains("master:"),
        "not private: {m}"
    );
    Ok(())
}

fn propagation_unbindable(ctx: &mut Ctx) -> Check {
    let m = propagation(ctx, "runbindable")?;
    ensure!(
        m["optional"].as_str().unwrap_or("").contains("unbindable"),
        "not unbindable: {m}"
    );
    Ok(())
}

fn symlink_in_root(ctx: &mut Ctx) -> Check {
    let victim = ctx.dir.join("victim");
    let _ = std::fs::create_dir_all(&victim);
    let mut b = ctx.bundle_own_rootfs();
    let _ = std::os::unix::fs::symlink(&victim, b.rootfs.join("evil"));
    b.mount(json!({"destination": "/evil/m", "type": "tmpfs", "source": "tmpfs"}));
    let _ = ctx.run(&b);
    ensure!(
        !victim.join("m").exists(),
        "a symlink in the rootfs sent a mount point to the host"
    );
    Ok(())
}

/// A rootfs whose `dir` is a symlink to another directory of the rootfs:
/// procfs or sysfs would land there instead, so create must fail.
fn pinned_through_symlink(ctx: &mut Ctx, dir: &str) -> Check {
    let b = ctx.bundle_own_rootfs();
    let _ = std::fs::create_dir_all(b.rootfs.join("elsewhere"));
    let _ = std::fs::remove_dir(b.rootfs.join(dir));
    std::os::unix::fs::symlink("elsewhere", b.rootfs.join(dir))
        .map_err(|e| Failure::Fail(format!("fixture: {e}")))?;
    create_fails(ctx, &b)
}

fn proc_through_symlink(ctx: &mut Ctx) -> Check {
    pinned_through_symlink(ctx, "proc")
}

fn sysfs_through_symlink(ctx: &mut Ctx) -> Check {
    pinned_through_symlink(ctx, "sys")
}

fn cgroup_mount(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |_| {})?;
    let under: Vec<&Value> = r["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("/sys/fs/cgroup"))
        })
        .collect();
    ensure!(
        under
            .iter()
            .any(|m| m["fstype"] == "cgroup" || m["fstype"] == "cgroup2"),
        "no cgroup filesystem under /sys/fs/cgroup"
    );
    Ok(())
}

fn idmap(ctx: &mut Ctx) -> Check {
    let src = host_dir(ctx, "idmapsrc");
    let out = output_with(ctx, &["/checker", "stat", "/mnt/id/file"], |b| {
        b.mount(json!({
            "destination": "/mnt/id", "type": "bind", "source": src, "options": ["rbind", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 4321, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 4321, "size": 1}]
        }));
    })?;
    let v: Value = serde_json::from_str(&out).map_err(|e| Failure::Fail(format!("{e}: {out}")))?;
    expect_eq(
        "owner through the id-mapped mount",
        v[0]["uid"].as_u64(),
        Some(4321),
    )
}

fn tmpcopyup(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle_own_rootfs();
    let _ = std::fs::create_dir_all(b.rootfs.join("run/app"));
    let _ = std::fs::write(b.rootfs.join("run/app/conf"), "from image");
    b.mount(json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}));
    let out = ctx.output(&mut b, &["/checker", "cat", "/run/app/conf"])?;
    expect_eq("content", out.as_str(), "from image")
}

/// A bind source that is a symlink is bound as the symlink itself.
fn src_nofollow(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle();
    let link = b.dir.join("link");
    let _ = std::fs::write(b.dir.join("file"), "host file");
    let _ = std::os::unix::fs::symlink("file", &link);
    b.mount(
        json!({"destination": "/target", "type": "bind", "source": link,
        "options": ["bind", "src-nofollow"]}),
    );
    let out = ctx.output(&mut b, &["/checker", "readlink", "/target"])?;
    expect_eq("/target", out.as_str(), "file")
}

/// A bind destination that is a symlink gets the mount on the symlink,
/// not on the file it points to.
fn dest_nofollow(ctx: &mut Ctx) -> Check {
    let mut b = ctx.bundle_own_rootfs();
    let _ = std::fs::create_dir_all(b.rootfs.join("real"));
    let _ = std::fs::write(b.rootfs.join("real/marker"), "untouched");
    let _ = std::os::unix::fs::symlink("real/marker", b.rootfs.join("link"));
    let source = b.dir.join("file");
    let _ = std::fs::write(&source, "host file");
    b.mount(
        json!({"destination": "/link", "type": "bind", "source": source,
        "options": ["bind", "dest-nofollow"]}),
    );
    let out = ctx.output(&mut b, &["/checker", "cat", "/real/marker"])?;
    expect_eq("the symlink's target", out.as_str(), "untouched")
}

fn masked_file(ctx: &mut Ctx) -> Check {
    let out = output_with(ctx, &["/checker", "cat", "/proc/timer_list"], |b| {
        b.config["linux"]["maskedPaths"] = json!(["/proc/timer_list"]);
    })?;
    expect_eq("masked file", out.as_str(), "")
}

fn masked_dir(ctx: &mut Ctx) -> Check {
    let out = output_with(ctx, &["/checker", "ls", "/proc/bus"], |b| {
        b.config["linux"]["maskedPaths"] = json!(["/proc/bus"]);
        b.config["linux"]["readonlyPaths"] = json!([]);
    })?;
    expect_eq("masked dir listing", out.as_str(), "")
}

fn masked_missing(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["linux"]["maskedPaths"] = json!(["/does/not/exist"]);
    })?;
    expect_eq("pid", r["pid"].as_i64(), Some(1))
}

fn readonly_path(ctx: &mut Ctx) -> Check {
    let out = write_result(ctx, "/proc/sys/kernel/domainname", |b| {
        b.config["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    })?;
    expect_eq("write under a read-only path", out.as_str(), "EROFS")
}

fn readonly_missing(ctx: &mut Ctx) -> Check {
    let r = report_with(ctx, |b| {
        b.config["linux"]["readonlyPaths"] = json!(["/does/not/exist"]);
    })?;
    expect_eq("pid", r["pid"].as_i64(), Some(1))
}

fn rootfs_propagation(ctx: &mut Ctx, value: &str) -> Check<String> {
    let r = report_with(ctx, |b| {
        b.config["linux"]["rootfsPropagation"] = json!(value)
    })?;
    let m = mount_at(&r, "/").ok_or_else(|| Failure::Fail("no / in mountinfo".into()))?;
    Ok(m["optional"].as_str().unwrap_or("").to_string())
}

fn rootfs_private(ctx: &mut Ctx) -> Check {
    let opt = rootfs_propagation(ctx, "rprivate")?;
    ensure!(
        !opt.contains("shared:") && !opt.contains("master:"),
        "/ propagation {opt:?}"
    );
    Ok(())
}

/// The case's directory bound onto itself and made shared (our own mount,
/// removed when dropped), so a rootfs under it has a master to follow.
struct SharedDir(std::path::PathBuf);

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn rootfs_slave(ctx: &mut Ctx) -> Check {
    use nix::mount::MsFlags;
    let dir = ctx.dir.clone();
    nix::mount::mount(
        Some(&dir),
        &dir,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Failure::Fail(format!("bind {}: {e}", dir.display())))?;
    let _guard = SharedDir(dir.clone());
    nix::mount::mount(
        None::<&str>,
        &dir,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|e| Failure::Fail(format!("make {} shared: {e}", dir.display())))?;
    let mut b = ctx.bundle_own_rootfs();
    b.config["linux"]["rootfsPropagation"] = json!("rslave");
    let r = ctx.report(&b)?;
    let _ = &mut b;
    let opt = mount_at(&r, "/")
        .and_then(|m| m["optional"].as_str())
        .unwrap_or("")
        .to_string();
    ensure!(
        opt.contains("master:") && !opt.contains("shared:"),
        "/ propagation {opt:?}"
    );
    Ok(())
}

fn mount_label(ctx: &mut Ctx) -> Check {
    if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        skip!("SELinux is not enabled on this host");
    }
    let _ = ctx;
    crate::ctx::fail("SELinux hosts are not covered yet")
}
