//! skiff-bench-engines: what a user of an engine waits for. `ctr run --rm`
//! (containerd, its runc shim calling the runtime) and `podman run --rm`
//! (Podman + conmon) of /bin/true, with skiff, runc and crun as the
//! engine's runtime, interleaved, on private daemons.
//!
//! Usage: skiff-bench-engines [--runs N]
//!
//! On the host it drives Debian 12's engines and peers (containerd 1.6,
//! Podman 4.3, runc 1.1.5, crun 1.8.1); run from the sid root with
//! SKIFF_ENGINES=sid (`scripts/in-sid.sh`), today's (containerd 2.1,
//! Podman 5.8, runc 1.3.6, crun 1.28).
//!
//! crun 1.8.1 refuses this hybrid cgroup host; it runs through
//! scripts/crun-without-unified.sh (a private mount namespace without the
//! cgroup2 mount), which adds an unshare and a umount to each of its calls.

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_e2e::{engines, Workdir};

use skiff_bench::measure::{median_p90, timed};
use skiff_bench::version_of;

const IMAGE: &str = "docker.io/library/busybox:bench";

fn main() {
    let mut args = std::env::args().skip(1);
    let mut runs = 30usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            _ => {
                eprintln!("usage: skiff-bench-engines [--runs N]");
                std::process::exit(2);
            }
        }
    }
    if let Some(why) = skiff_e2e::missing(&["containerd", "ctr", "podman", "conmon", "runc"]) {
        eprintln!("skiff-bench-engines: {why}");
        std::process::exit(1);
    }
    let skiff = std::env::current_exe().unwrap().with_file_name("skiff");
    let mut runtimes: Vec<(&str, PathBuf)> = vec![
        ("skiff", skiff),
        ("runc", skiff_e2e::which("runc").unwrap()),
    ];
    let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/crun-without-unified.sh");
    if skiff_e2e::which("crun").is_some() && wrapper.exists() {
        runtimes.push(("crun", wrapper.canonicalize().unwrap()));
    }

    let _outside = skiff_e2e::CreatedOutside::watch(&["/var/lib/containers"]);
    let work = Workdir::new("bench-engines");
    let image = skiff_e2e::busybox_image(&work, IMAGE);
    let (tar, archive) = (image.tar, image.archive);
    let daemon = engines::start_containerd(&work, None);
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(work.join("containerd.sock"));
        c.args(["--namespace", "skiff-bench"]).args(args);
        c
    };
    timed(&mut ctr(&["images", "import", archive.to_str().unwrap()]));
    engines::configure_podman(&work);
    timed(engines::podman(&work.path, &runtimes[0].1).args([
        "import",
        tar.to_str().unwrap(),
        IMAGE,
    ]));

    let n = runtimes.len();
    let mut ctr_ms = vec![Vec::new(); n];
    let mut podman_ms = vec![Vec::new(); n];
    let warmup = 3;
    for i in 0..runs + warmup {
        for (r, (name, bin)) in runtimes.iter().enumerate() {
            let root = work.join(&format!("runc-root-{name}"));
            let id = format!("b{i}-{name}");
            let t_ctr = timed(&mut ctr(&[
                "run",
                "--rm",
                "--runc-binary",
                bin.to_str().unwrap(),
                "--runc-root",
                root.to_str().unwrap(),
                IMAGE,
                &id,
                "/bin/true",
            ]));
            let t_podman = timed(engines::podman(&work.path, bin).args([
                "run",
                "--rm",
                "--network",
                "none",
                IMAGE,
                "/bin/true",
            ]));
            if i >= warmup {
                ctr_ms[r].push(t_ctr);
                podman_ms[r].push(t_podman);
            }
        }
    }
    println!(
        "{runs} interleaved runs each (after {warmup} warm-up), private daemons, busybox /bin/true"
    );
    for tool in ["containerd", "podman", "runc", "crun"] {
        println!("{tool}: {}", version_of(tool));
    }
    println!(
        "{:<22} {:<8} {:>10} {:>10} {:>8} {:>8}",
        "engine", "runtime", "median ms", "p90 ms", "vs runc", "vs crun"
    );
    for (engine, samples) in [
        ("ctr run --rm", &mut ctr_ms),
        ("podman run --rm", &mut podman_ms),
    ] {
        let stats: Vec<(f64, f64)> = samples.iter_mut().map(|v| median_p90(v)).collect();
        let idx = |name: &str| runtimes.iter().position(|(n, _)| *n == name);
        for (r, (name, _)) in runtimes.iter().enumerate() {
            let ratio = |other: Option<usize>| {
                other.map_or("-".into(), |o| format!("{:.2}x", stats[r].0 / stats[o].0))
            };
            println!(
                "{:<22} {:<8} {:>10.1} {:>10.1} {:>8} {:>8}",
                engine,
                name,
                stats[r].0,
                stats[r].1,
                ratio(idx("runc")),
                ratio(idx("crun"))
            );
        }
    }
    let _ = engines::podman(&work.path, &runtimes[0].1)
        .args(["rm", "-a", "-f"])
        .output();
    drop(daemon);
    drop(work);
    skiff_e2e::remove_parent_cgroup("skiff-bench");
    skiff_e2e::remove_parent_cgroup("libpod_parent");
}
