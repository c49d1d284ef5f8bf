//! skiff-bench-seccomp: the seccomp side of the benchmarks, with Podman's
//! default profile (containers-common, resolved as Podman resolves it).
//!
//!   compile time of the profile in skiff (median of 200)
//!   BPF instructions each runtime actually installed (read back from the
//!     container's process with PTRACE_SECCOMP_GET_FILTER)
//!   ns per getppid inside a container under the filter, skiff and runc
//!     interleaved, and without any filter as the floor
//!
//! Usage: skiff-bench-seccomp [--skiff PATH] [--calls N] [--runs N]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn bundle(dir: &Path, checker: &Path, args: &[&str], seccomp: Option<&Value>) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(checker, rootfs.join("checker")).unwrap();
    let mut config: Value =
        serde_json::from_str(include_str!("../../runtime/src/default_spec.json")).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(args);
    config["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    let caps = json!(skiff_seccomp::containers_common::PODMAN_DEFAULT_CAPS);
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set] = caps.clone();
    }
    if let Some(s) = seccomp {
        config["linux"]["seccomp"] = s.clone();
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

fn run(runtime: &Path, root: &Path, dir: &Path, id: &str) -> String {
    let out = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["run", "--bundle", dir.to_str().unwrap_or_default(), id])
        .stdin(Stdio::null())
        .output()
        .expect("runtime");
    assert!(
        out.status.success(),
        "{}: {}",
        runtime.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Instructions of the filter the process `pid` runs, via ptrace.
fn installed_instructions(pid: i32) -> Option<i64> {
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    // SAFETY: seize/interrupt/wait/query/detach on a process we may trace.
    unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) < 0 {
            return None;
        }
        libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0);
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::__WALL);
        let n = libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            pid,
            0,
            std::ptr::null_mut::<libc::c_void>(),
        );
        libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
        (n >= 0).then_some(n as i64)
    }
}

/// Starts a sleeping container under the profile and reads its filter.
fn filter_size(
    runtime: &Path,
    root: &Path,
    work: &Path,
    checker: &Path,
    profile: &Value,
    id: &str,
) -> Option<i64> {
    let dir = work.join(format!("size-{id}"));
    bundle(&dir, checker, &["/checker", "sleep", "60"], Some(profile));
    let status = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args([
            "run",
            "-d",
            "--bundle",
            dir.to_str().unwrap_or_default(),
            id,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let state = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .output()
        .ok()?;
    let pid = serde_json::from_slice::<Value>(&state.stdout).ok()?["pid"].as_i64()? as i32;
    let n = installed_instructions(pid);
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .status();
    n
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut skiff = None;
    let mut calls = 10_000_000u64;
    let mut runs = 5usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--skiff" => skiff = args.next().map(PathBuf::from),
            "--calls" => calls = args.next().and_then(|n| n.parse().ok()).unwrap_or(calls),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            _ => {
                eprintln!("usage: skiff-bench-seccomp [--skiff PATH] [--calls N] [--runs N]");
                std::process::exit(2);
            }
        }
    }
    let exe = std::env::current_exe().unwrap();
    let skiff = skiff.unwrap_or_else(|| exe.with_file_name("skiff"));
    let checker = exe.with_file_name("skiff-checker");
    let text = std::fs::read_to_string("/usr/share/containers/seccomp.json")
        .expect("/usr/share/containers/seccomp.json (apt install golang-github-containers-common)");
    use skiff_seccomp::containers_common as cc;
    let profile = cc::resolve(
        &serde_json::from_str(&text).unwrap(),
        &cc::PODMAN_DEFAULT_CAPS,
        cc::running_kernel(),
    );
    let spec: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(profile.clone()).unwrap();

    let mut compile_us: Vec<f64> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let f = skiff_seccomp::compile(&spec).unwrap();
            std::hint::black_box(&f);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    let program_len = skiff_seccomp::compile(&spec).unwrap().program.len();
    println!(
        "Podman default profile ({} rules): skiff compiles it in {:.0} us (median of 200), {} BPF instructions",
        spec.syscalls().as_ref().map_or(0, Vec::len),
        median(&mut compile_us),
        program_len
    );

    let work = std::env::temp_dir().join(format!("skiff-bench-seccomp-{}", std::process::id()));
    let root = work.join("state");
    let mut runtimes = vec![("skiff", skiff)];
    if let Some(runc) = which("runc") {
        runtimes.push(("runc", runc));
    }
    for (name, path) in &runtimes {
        match filter_size(
            path,
            &root.join(name),
            &work,
            &checker,
            &profile,
            &format!("size-{name}"),
        ) {
            Some(n) => println!("{name}: installed filter has {n} instructions"),
            None => println!("{name}: could not read the installed filter back"),
        }
    }

    let loop_args = ["/checker", "syscall-loop", &calls.to_string()];
    let mut results: Vec<(String, Vec<f64>)> = vec![("no filter (skiff)".into(), Vec::new())];
    for (name, _) in &runtimes {
        results.push((format!("{name} + profile"), Vec::new()));
    }
    let floor_dir = work.join("floor");
    bundle(&floor_dir, &checker, &loop_args, None);
    let filtered_dir = work.join("filtered");
    bundle(&filtered_dir, &checker, &loop_args, Some(&profile));
    for i in 0..runs {
        let ns = run(
            &runtimes[0].1,
            &root.join("floor"),
            &floor_dir,
            &format!("floor{i}"),
        );
        results[0].1.push(ns.parse().unwrap_or(f64::NAN));
        for (r, (name, path)) in runtimes.iter().enumerate() {
            let ns = run(path, &root.join(name), &filtered_dir, &format!("loop{i}"));
            results[r + 1].1.push(ns.parse().unwrap_or(f64::NAN));
        }
    }
    println!(
        "ns per getppid inside the container, {calls} calls, median of {runs} interleaved runs:"
    );
    for (name, mut v) in results {
        println!("  {name:<20} {:>7.1} ns", median(&mut v));
    }
    let _ = std::fs::remove_dir_all(&work);
}
