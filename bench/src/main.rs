//! skiff-bench: times container lifecycles, interleaved, for skiff and the
//! runtimes installed next to it (crun, runc), and Debian sid's (crun-sid,
//! runc-sid: the peers of target/sid-root, when scripts/sid-root.sh built
//! it), on one busybox bundle with state on tmpfs. Prints medians, p90
//! and ratios to the faster crun.
//!
//! Usage: skiff-bench [--skiff PATH] [--baseline PATH] [--runs N] [--busybox PATH]
//!        [--rootless USER | --systemd]
//!
//! `--baseline` adds another skiff build (say, the last release) to the
//! same interleaved run, to measure what a change costs. `--rootless`
//! times `run` as root and as an ordinary user instead (see rootless.rs);
//! `--systemd`, on a systemd host, the systemd cgroup driver against the
//! cgroupfs one (see systemd.rs).
//!
//! crun 1.8.1 refuses hybrid cgroup hosts, so the benchmark runs every
//! runtime in a private mount namespace where the cgroup2 mount at
//! /sys/fs/cgroup/unified is detached (only there; the host is untouched).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::MntFlags;
use skiff_bench::bundle::build_bundle;
use skiff_bench::measure::median_p90;
use skiff_bench::private_tmpfs;

mod rootless;
mod systemd;

struct Runtime {
    name: String,
    path: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A private mount namespace with the state tmpfs and without the hybrid
/// cgroup2 mount crun refuses.
fn private_namespace(state: &Path) {
    private_tmpfs(state);
    let unified = Path::new("/sys/fs/cgroup/unified");
    let hybrid = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup/unified"));
    if hybrid {
        nix::mount::umount2(unified, MntFlags::MNT_DETACH).unwrap();
    }
}

/// One timed command; returns (elapsed, peak RSS of that process in KiB).
/// The child is reaped with wait4 (for its rusage), not Child::wait.
#[allow(clippy::zombie_processes)]
fn timed(mut cmd: Command) -> (Duration, i64) {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid pointers.
    let r = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert!(
        r > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed ({status})"
    );
    (elapsed, usage.ru_maxrss)
}

fn runtime_cmd(rt: &Runtime, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(&rt.path);
    c.arg("--root").arg(state.join(&rt.name)).args(args);
    c
}

/// create + start + wait for the process + delete, timed end to end.
fn lifecycle(rt: &Runtime, state: &Path, bundle: &Path, id: &str) -> Duration {
    let pid_file = state.join(format!("{id}.pid"));
    let start = Instant::now();
    timed(runtime_cmd(
        rt,
        state,
        &[
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            id,
        ],
    ));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    timed(runtime_cmd(rt, state, &["start", id]));
    // We are a subreaper: the init was reparented to us when create exited.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    timed(runtime_cmd(rt, state, &["delete", id]));
    start.elapsed()
}

/// The crun with the lowest median: the one to beat.
fn fastest_crun(runtimes: &[Runtime], medians: &[(f64, f64)]) -> Option<usize> {
    (0..runtimes.len())
        .filter(|&r| runtimes[r].name.starts_with("crun"))
        .min_by(|&a, &b| medians[a].0.total_cmp(&medians[b].0))
}

/// Prints one scenario's rows: each runtime's median, p90 and ratio to
/// the faster crun (`samples[r]` are runtime r's times in ms).
fn print_scenario(scenario: &str, runtimes: &[Runtime], samples: &mut [Vec<f64>]) {
    let s: Vec<(f64, f64)> = samples.iter_mut().map(|v| median_p90(v)).collect();
    let crun = fastest_crun(runtimes, &s);
    for (r, rt) in runtimes.iter().enumerate() {
        let ratio = crun.map_or("-".into(), |c| format!("{:.2}x", s[r].0 / s[c].0));
        println!(
            "{:<22} {:<9} {:>10.2} {:>10.2} {:>8}",
            scenario, rt.name, s[r].0, s[r].1, ratio
        );
    }
}

/// The header of `print_scenario`'s table.
fn print_header() {
    println!("vs crun: against the faster crun in that row's scenario");
    println!(
        "{:<22} {:<9} {:>10} {:>10} {:>8}",
        "scenario", "runtime", "median ms", "p90 ms", "vs crun"
    );
}

fn linked(path: &Path) -> String {
    let out = Command::new("file")
        .arg("-L")
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    match out {
        Ok(s) if s.contains("static-pie linked") || s.contains("statically linked") => {
            "static".into()
        }
        Ok(s) if s.contains("dynamically linked") => "dynamic".into(),
        _ => "?".into(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut skiff = None;
    let mut baseline = None;
    let mut runs = 50usize;
    let mut busybox = PathBuf::from("/bin/busybox");
    let mut rootless_user = None;
    let mut systemd = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--skiff" => skiff = args.next().map(PathBuf::from),
            "--baseline" => baseline = args.next().map(PathBuf::from),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            "--busybox" => busybox = args.next().map(PathBuf::from).unwrap_or(busybox),
            "--rootless" => rootless_user = args.next(),
            "--systemd" => systemd = true,
            _ => {
                eprintln!(
                    "usage: skiff-bench [--skiff PATH] [--baseline PATH] [--runs N] [--busybox PATH] \
                     [--rootless USER | --systemd]"
                );
                std::process::exit(2);
            }
        }
    }
    let skiff = skiff.unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.with_file_name("skiff")
    });
    // The sid root sits in the target directory: target/sid-root, this
    // binary in target/<triple>/<profile>/.
    let sid_peers = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("sid-root/peers")));
    let mut runtimes = vec![Runtime {
        name: "skiff".into(),
        path: skiff,
    }];
    if let Some(path) = baseline {
        runtimes.push(Runtime {
            name: "baseline".into(),
            path,
        });
    }
    for name in ["crun", "runc"] {
        match which(name) {
            Some(path) => runtimes.push(Runtime {
                name: name.into(),
                path,
            }),
            None => eprintln!("{name} not installed: not compared"),
        }
        // On the systemd host (the guest booted from the sid root) the
        // installed peers are sid's already.
        if systemd {
            continue;
        }
        match sid_peers
            .as_ref()
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
        {
            Some(path) => runtimes.push(Runtime {
                name: format!("{name}-sid"),
                path,
            }),
            None => eprintln!("{name}-sid not built (scripts/sid-root.sh): not compared"),
        }
    }
    if let Some(user) = rootless_user {
        rootless::bench(&runtimes, &user, runs, &busybox);
        return;
    }
    if systemd {
        systemd::bench(&runtimes, runs, &busybox);
        return;
    }
    let work = std::env::temp_dir().join(format!("skiff-bench-{}", std::process::id()));
    let bundle = work.join("bundle");
    build_bundle(&bundle, &busybox, &["/bin/true"], false);
    let limited = work.join("limited");
    build_bundle(&limited, &busybox, &["/bin/true"], true);
    let sleeper = work.join("sleeper");
    build_bundle(&sleeper, &busybox, &["/bin/sleep", "100000"], false);
    let state = work.join("state");
    private_namespace(&state);
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    let n = runtimes.len();
    let mut run_ms = vec![Vec::new(); n];
    let mut limited_ms = vec![Vec::new(); n];
    let mut rss_kib = vec![Vec::new(); n];
    let mut life_ms = vec![Vec::new(); n];
    let mut exec_ms = vec![Vec::new(); n];
    // One long-running container per runtime to exec into.
    for rt in &runtimes {
        timed(runtime_cmd(
            rt,
            &state,
            &[
                "run",
                "-d",
                "--bundle",
                sleeper.to_str().unwrap(),
                &format!("{}-target", rt.name),
            ],
        ));
    }
    let warmup = 5;
    for i in 0..runs + warmup {
        for (r, rt) in runtimes.iter().enumerate() {
            // Ids per runtime: two skiff builds share default cgroup paths.
            let id = format!("{}-b{i}", rt.name);
            let (t, rss) = timed(runtime_cmd(
                rt,
                &state,
                &["run", "--bundle", bundle.to_str().unwrap(), &id],
            ));
            let life = lifecycle(rt, &state, &bundle, &format!("{}-l{i}", rt.name));
            let (limits, _) = timed(runtime_cmd(
                rt,
                &state,
                &[
                    "run",
                    "--bundle",
                    limited.to_str().unwrap(),
                    &format!("{}-m{i}", rt.name),
                ],
            ));
            let target = format!("{}-target", rt.name);
            let (exec, _) = timed(runtime_cmd(rt, &state, &["exec", &target, "/bin/true"]));
            if i >= warmup {
                exec_ms[r].push(exec.as_secs_f64() * 1e3);
                run_ms[r].push(t.as_secs_f64() * 1e3);
                limited_ms[r].push(limits.as_secs_f64() * 1e3);
                rss_kib[r].push(rss as f64);
                life_ms[r].push(life.as_secs_f64() * 1e3);
            }
        }
    }
    let rss_stats: Vec<(f64, f64)> = rss_kib.iter_mut().map(|v| median_p90(v)).collect();
    println!(
        "{runs} interleaved runs each (after {warmup} warm-up), state on tmpfs, busybox /bin/true"
    );
    print_header();
    let scenarios = [
        ("run", &mut run_ms),
        ("run, mem+pids+cpu", &mut limited_ms),
        ("create/start/delete", &mut life_ms),
        ("exec /bin/true", &mut exec_ms),
    ];
    for (scenario, samples) in scenarios {
        print_scenario(scenario, &runtimes, samples);
    }
    println!(
        "\n{:<9} {:>14} {:>8} {:>12}",
        "runtime", "peak RSS MiB", "vs crun", "binary"
    );
    let crun = fastest_crun(&runtimes, &rss_stats);
    for (r, rt) in runtimes.iter().enumerate() {
        let size = std::fs::metadata(&rt.path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
        let ratio = crun.map_or("-".into(), |c| {
            format!("{:.2}x", rss_stats[r].0 / rss_stats[c].0)
        });
        println!(
            "{:<9} {:>14.2} {:>8} {:>7.2} MB {}",
            rt.name,
            rss_stats[r].0 / 1024.0,
            ratio,
            size,
            linked(&rt.path)
        );
    }
    for rt in &runtimes {
        let target = format!("{}-target", rt.name);
        timed(runtime_cmd(rt, &state, &["delete", "--force", &target]));
    }
    let _ = nix::mount::umount2(&state, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&work);
}
