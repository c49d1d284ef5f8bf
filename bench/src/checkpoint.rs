//! skiff-bench-checkpoint: the time to checkpoint a running container and
//! to restore it, skiff and runc 1.3 interleaved, both driving CRIU 4.2
//! from the Debian sid root (target/sid-root/peers, scripts/sid-root.sh).
//! Two containers: a small one (busybox sh and sleep, under 1 MiB of
//! anonymous memory) and one holding 256 MiB resident (busybox awk with a
//! 256 MiB string). Images and state go to a tmpfs in a private mount
//! namespace, so the disk is not what is measured.
//!
//! Each round, per size and runtime (the order alternates by round):
//! `run -d`, wait until the memory is resident, time `checkpoint` (which
//! ends the container), time `restore -d` into the same id, `delete -f`.
//!
//! Usage: skiff-bench-checkpoint [--skiff PATH] [--peers DIR] [--runs N]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_bench::bundle::build_bundle;
use skiff_bench::{measure, private_tmpfs};

/// The resident memory of the large container.
const LARGE_MIB: u64 = 256;

struct Runtime {
    name: &'static str,
    path: PathBuf,
    /// Global flags: skiff is told where CRIU is; runc 1.3 runs the
    /// `criu` on PATH.
    global: Vec<String>,
}

/// The runtime's command with its state under `state`.
fn runtime(rt: &Runtime, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(&rt.path);
    cmd.args(&rt.global)
        .arg("--root")
        .arg(state.join(rt.name))
        .args(args);
    cmd
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: i64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The init pid of container `id`.
fn init_pid(rt: &Runtime, state: &Path, id: &str) -> Option<i64> {
    let out = runtime(rt, state, &["state", id]).output().ok()?;
    serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()?["pid"].as_i64()
}

/// One checkpoint and restore; returns their times.
fn round(
    rt: &Runtime,
    state: &Path,
    bundle: &Path,
    images: &Path,
    resident_kib: u64,
) -> Result<(f64, f64), String> {
    let id = format!("ckpt-{}", rt.name);
    let b = bundle.to_str().unwrap();
    let img = images.join(rt.name);
    let i = img.to_str().unwrap();
    detached(rt, state, &["run", "-d", "--bundle", b, &id])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while init_pid(rt, state, &id).map_or(0, rss_kib) < resident_kib {
        if Instant::now() > deadline {
            return Err(format!("{}: the container never got resident", rt.name));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let dump = measure::try_timed(&mut runtime(
        rt,
        state,
        &["checkpoint", "--image-path", i, &id],
    ))?;
    let restore = detached(
        rt,
        state,
        &["restore", "-d", "--bundle", b, "--image-path", i, &id],
    )?;
    measure::timed(&mut runtime(rt, state, &["delete", "-f", &id]));
    std::fs::remove_dir_all(&img).map_err(|e| e.to_string())?;
    Ok((dump, restore))
}

/// Times a command that leaves a container running with its stdio:
/// everything is /dev/null (runc cannot dump a container whose stdio is a
/// host file), and the runtime's log tells why it failed.
fn detached(rt: &Runtime, state: &Path, args: &[&str]) -> Result<f64, String> {
    let log = state.join(format!("{}.log", rt.name));
    let _ = std::fs::remove_file(&log);
    let mut all = vec!["--log", log.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    let start = Instant::now();
    let status = runtime(rt, state, &all)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", rt.path.display()))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(format!("{} {args:?}: {}", rt.name, text.trim()));
    }
    Ok(ms)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let exe = std::env::current_exe().unwrap();
    let mut skiff = exe.with_file_name("skiff");
    // The sid root sits in the target directory: target/sid-root, this
    // binary in target/<triple>/<profile>/.
    let mut peers = exe
        .ancestors()
        .nth(3)
        .map(|t| t.join("sid-root/peers"))
        .unwrap_or_default();
    let mut runs = 10usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--skiff" => skiff = args.next().map(PathBuf::from).unwrap_or(skiff),
            "--peers" => peers = args.next().map(PathBuf::from).unwrap_or(peers),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            _ => {
                eprintln!("usage: skiff-bench-checkpoint [--skiff PATH] [--peers DIR] [--runs N]");
                std::process::exit(2);
            }
        }
    }
    let criu = peers.join("criu");
    if !criu.is_file() || !peers.join("runc").is_file() {
        eprintln!(
            "{}: no criu and runc (build the sid root: ./scripts/sid-root.sh)",
            peers.display()
        );
        std::process::exit(2);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{path}", peers.display()));
    let runtimes = [
        Runtime {
            name: "skiff",
            path: skiff,
            global: vec!["--criu".into(), criu.to_string_lossy().into_owned()],
        },
        Runtime {
            name: "runc",
            path: peers.join("runc"),
            global: Vec::new(),
        },
    ];
    let work = std::env::temp_dir().join(format!("skiff-bench-checkpoint-{}", std::process::id()));
    let busybox = Path::new("/bin/busybox");
    let small = work.join("small");
    build_bundle(&small, busybox, &["sh", "-c", "exec sleep 100000"], false);
    let large = work.join("large");
    let hold = format!(
        "BEGIN{{s=sprintf(\"%{}s\",\"\"); system(\"exec sleep 100000\")}}",
        LARGE_MIB << 20
    );
    build_bundle(&large, busybox, &["awk", &hold], false);
    let tmp = work.join("tmp");
    private_tmpfs(&tmp);
    let (state, images) = (tmp.join("state"), tmp.join("images"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let sizes = [("small", &small, 0), ("256 MiB", &large, LARGE_MIB << 10)];
    // [size][runtime] -> (checkpoint ms, restore ms) of each round.
    let mut times = vec![vec![(Vec::new(), Vec::new()); runtimes.len()]; sizes.len()];
    let mut failure = None;
    'rounds: for r in 0..runs {
        for (s, (_, bundle, resident)) in sizes.iter().enumerate() {
            for k in 0..runtimes.len() {
                let i = (k + r) % runtimes.len();
                let rt = &runtimes[i];
                match round(rt, &state, bundle, &images, *resident) {
                    Ok((dump, restore)) => {
                        times[s][i].0.push(dump);
                        times[s][i].1.push(restore);
                    }
                    Err(e) => {
                        let id = format!("ckpt-{}", rt.name);
                        let _ = runtime(rt, &state, &["delete", "-f", &id]).output();
                        failure = Some(e);
                        break 'rounds;
                    }
                }
            }
        }
    }
    // The tmpfs goes first: the work directory is removed on the host.
    let _ = nix::mount::umount2(&tmp, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&work);
    if let Some(e) = failure {
        eprintln!("{e}");
        std::process::exit(1);
    }
    println!("checkpoint and restore, median (p90) of {runs} interleaved rounds, images on tmpfs");
    println!(
        "{:<9} {:<6} {:>18} {:>18}",
        "container", "", "checkpoint ms", "restore ms"
    );
    for (s, (size, _, _)) in sizes.iter().enumerate() {
        for (i, rt) in runtimes.iter().enumerate() {
            let (d, re) = &mut times[s][i];
            let (dm, dp) = measure::median_p90(d);
            let (rm, rp) = measure::median_p90(re);
            println!(
                "{size:<9} {:<6} {:>9.1} ({:>6.1}) {:>9.1} ({:>6.1})",
                rt.name, dm, dp, rm, rp
            );
        }
    }
}
