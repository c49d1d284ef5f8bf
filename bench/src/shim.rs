//! skiff-bench-shim: what a shim costs. containerd 1.6 with
//! containerd-shim-skiff-v2 against its stock containerd-shim-runc-v2 +
//! runc: `ctr run --rm` of /bin/true, interleaved, and the shims' RSS per
//! container with 20 containers running (sum of shim VmRSS / 20).
//!
//! Usage: skiff-bench-shim [--runs N] [--containers N] [--in-place]
//!
//! The shim and skiff are installed (copied) into the work directory, as
//! a package would install them: the page cache holds a copied file in
//! large folios, and a fault maps a whole folio, so the binaries the
//! linker wrote (held in single pages) would show less memory than a node
//! sees. `--in-place` uses them where they were built
//! (scripts/shim-hot-functions.sh needs single-page faults).

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_e2e::{engines, Workdir};

#[path = "measure.rs"]
mod measure;
use measure::{median_p90, timed};

const IMAGE: &str = "docker.io/library/busybox:bench";

/// Sums of Rss and Pss (KiB, from smaps_rollup) over the processes whose
/// command line contains `name`. Rss counts the binary's shared pages in
/// every process; Pss splits them among the processes sharing them.
fn memory_kib(name: &str) -> (u64, u64) {
    let out = Command::new("pgrep").args(["-f", name]).output().unwrap();
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|pid| {
            std::fs::read_to_string(format!("/proc/{}/smaps_rollup", pid.trim())).ok()
        })
        .fold((0, 0), |(rss, pss), s| {
            (rss + field(&s, "Rss:"), pss + field(&s, "Pss:"))
        })
}

/// Copies the shim and skiff into `work`/bin (the shim runs the skiff
/// beside it); returns the directory and the copy of skiff.
fn install(work: &Workdir, shim: &Path, skiff: &Path) -> (PathBuf, PathBuf) {
    let bin = work.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for file in [shim, skiff] {
        std::fs::copy(file, bin.join(file.file_name().unwrap())).unwrap();
    }
    let skiff = bin.join("skiff");
    (bin, skiff)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut runs, mut containers, mut in_place) = (30usize, 20usize, false);
    while let Some(a) = args.next() {
        let mut num = |d: usize| args.next().and_then(|n| n.parse().ok()).unwrap_or(d);
        match a.as_str() {
            "--runs" => runs = num(runs),
            "--containers" => containers = num(containers),
            "--in-place" => in_place = true,
            _ => {
                eprintln!("usage: skiff-bench-shim [--runs N] [--containers N] [--in-place]");
                std::process::exit(2);
            }
        }
    }
    if let Some(why) = skiff_e2e::missing(&["containerd", "ctr", "containerd-shim-runc-v2", "runc"])
    {
        eprintln!("skiff-bench-shim: {why}");
        std::process::exit(1);
    }
    let exe = std::env::current_exe().unwrap();
    let shim = exe.with_file_name("containerd-shim-skiff-v2");
    assert!(shim.exists(), "build containerd-shim-skiff-v2 first");
    let _outside = skiff_e2e::CreatedOutside::watch(&[
        "/run/containerd",
        "/run/containerd/skiff",
        "/run/skiff-shim",
    ]);
    let work = Workdir::new("bench-shim");
    let (bin, skiff) = if in_place {
        (engines::shim_dir(&work, &shim), exe.with_file_name("skiff"))
    } else {
        install(&work, &shim, &exe.with_file_name("skiff"))
    };
    let archive = skiff_e2e::busybox_image(&work, IMAGE).archive;
    let daemon = engines::start_containerd(&work, Some(Path::new(&bin)));
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(work.join("containerd.sock"));
        c.args(["--namespace", "skiff-bench"]).args(args);
        c
    };
    timed(&mut ctr(&["images", "import", archive.to_str().unwrap()]));
    let shims = [
        (
            "skiff shim",
            "io.containerd.skiff.v2",
            "containerd-shim-skiff-v2",
        ),
        (
            "runc shim + runc",
            "io.containerd.runc.v2",
            "containerd-shim-runc-v2",
        ),
    ];
    // Latency also of the stock shim calling skiff: what the shim itself
    // adds, apart from the runtime it calls.
    let skiff = skiff.display().to_string();
    let ways: [(&str, Vec<&str>); 3] = [
        ("skiff shim", vec!["--runtime", "io.containerd.skiff.v2"]),
        (
            "runc shim + skiff",
            vec![
                "--runtime",
                "io.containerd.runc.v2",
                "--runc-binary",
                &skiff,
            ],
        ),
        (
            "runc shim + runc",
            vec!["--runtime", "io.containerd.runc.v2"],
        ),
    ];
    let mut ms = vec![Vec::new(); ways.len()];
    for i in 0..runs + 1 {
        for (w, (_, flags)) in ways.iter().enumerate() {
            let id = format!("b{w}-{i}");
            let mut cmd = ctr(&["run", "--rm"]);
            cmd.args(flags).args([IMAGE, &id, "/bin/true"]);
            let t = timed(&mut cmd);
            // The first round warms caches and is not counted.
            if i > 0 {
                ms[w].push(t);
            }
        }
    }
    println!("ctr run --rm /bin/true, {runs} interleaved runs (ms):");
    let base = median_p90(&mut ms[2].clone()).0;
    for (w, (name, _)) in ways.iter().enumerate() {
        let (med, p90) = median_p90(&mut ms[w]);
        println!(
            "  {name:<18} median {med:7.2}  p90 {p90:7.2}  {:.2}x runc shim + runc",
            med / base
        );
    }
    println!("shim memory per container, {containers} containers running sleep:");
    for (name, runtime, binary) in shims {
        for i in 0..containers {
            let id = format!("rss-{binary}-{i}");
            timed(&mut ctr(&[
                "run",
                "-d",
                "--runtime",
                runtime,
                IMAGE,
                &id,
                "sleep",
                "1000",
            ]));
        }
        let (rss, pss) = memory_kib(binary);
        let per = |kib: u64| kib as f64 / 1024.0 / containers as f64;
        println!(
            "  {name:<18} RSS {:6.2} MiB  PSS {:6.2} MiB per container",
            per(rss),
            per(pss)
        );
        for i in 0..containers {
            let id = format!("rss-{binary}-{i}");
            let _ = ctr(&["task", "kill", "-s", "SIGKILL", &id]).output();
        }
        for i in 0..containers {
            let id = format!("rss-{binary}-{i}");
            for _ in 0..50 {
                if ctr(&["task", "delete", &id])
                    .output()
                    .is_ok_and(|o| o.status.success())
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = ctr(&["container", "delete", &id]).output();
        }
    }
    drop(daemon);
    skiff_e2e::remove_parent_cgroup("skiff-bench");
}
