//! skiff-bench-shim: what a shim costs. containerd 1.6 with
//! containerd-shim-skiff-v2 against its stock containerd-shim-runc-v2 +
//! runc: `ctr run --rm` of /bin/true, interleaved, and the shims' RSS per
//! container with 20 containers running (sum of shim VmRSS / 20).
//!
//! Usage: skiff-bench-shim [--runs N] [--containers N] [--rounds N]
//!        [--shim NAME=PATH]... [--in-place]
//!
//! `--shim` adds another build of the shim to the same run, interleaved
//! with the others (installed as containerd-shim-NAME-v2, run as
//! io.containerd.NAME.v2; NAME without dots or dashes). `--rounds` repeats
//! the memory measurement, the shims in turn, and prints the median and
//! range over the rounds.
//!
//! The shim and skiff are installed (copied) into the work directory, as
//! a package would install them: the page cache holds a copied file in
//! large folios, and a fault maps a whole folio, so the binaries the
//! linker wrote (held in single pages) would show less memory than a node
//! sees. `--in-place` uses them where they were built
//! (scripts/hot-functions.sh shim needs single-page faults).

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_e2e::{engines, Workdir};

use skiff_bench::install;
use skiff_bench::measure::{median_p90, memory_kib, timed};

const IMAGE: &str = "docker.io/library/busybox:bench";

fn usage() -> ! {
    eprintln!(
        "usage: skiff-bench-shim [--runs N] [--containers N] [--rounds N] \
         [--shim NAME=PATH]... [--in-place]"
    );
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut runs, mut containers, mut rounds, mut in_place) = (30usize, 20usize, 1usize, false);
    let mut others: Vec<(String, PathBuf)> = Vec::new();
    while let Some(a) = args.next() {
        let mut num = |d: usize| args.next().and_then(|n| n.parse().ok()).unwrap_or(d);
        match a.as_str() {
            "--runs" => runs = num(runs),
            "--containers" => containers = num(containers),
            "--rounds" => rounds = num(rounds).max(1),
            "--in-place" => in_place = true,
            "--shim" => match args.next().as_deref().and_then(|s| s.split_once('=')) {
                Some((name, path)) if !name.is_empty() && !name.contains(['.', '-']) => {
                    others.push((name.to_string(), PathBuf::from(path)));
                }
                _ => usage(),
            },
            _ => usage(),
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
    // The shim keeps its containers' state under /run/containerd/skiff/<the
    // containerd namespace>, and leaves that directory when its last
    // container goes.
    let _outside = skiff_e2e::CreatedOutside::watch(&[
        "/run/containerd",
        "/run/containerd/skiff",
        "/run/containerd/skiff/skiff-bench",
        "/run/skiff-shim",
    ]);
    let work = Workdir::new("bench-shim");
    let (bin, skiff) = if in_place {
        (engines::shim_dir(&work, &shim), exe.with_file_name("skiff"))
    } else {
        install(&work, &shim, &exe.with_file_name("skiff"))
    };
    for (name, path) in &others {
        let installed = bin.join(format!("containerd-shim-{name}-v2"));
        std::fs::copy(path, installed).unwrap();
    }
    let archive = skiff_e2e::busybox_image(&work, IMAGE).archive;
    let daemon = engines::start_containerd(&work, Some(Path::new(&bin)));
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(work.join("containerd.sock"));
        c.args(["--namespace", "skiff-bench"]).args(args);
        c
    };
    timed(&mut ctr(&["images", "import", archive.to_str().unwrap()]));
    let named: Vec<(String, String, String)> = others
        .iter()
        .map(|(name, _)| {
            (
                name.clone(),
                format!("io.containerd.{name}.v2"),
                format!("containerd-shim-{name}-v2"),
            )
        })
        .collect();
    let mut shims = vec![(
        "skiff shim",
        "io.containerd.skiff.v2",
        "containerd-shim-skiff-v2",
    )];
    shims.extend(
        named
            .iter()
            .map(|(n, r, b)| (n.as_str(), r.as_str(), b.as_str())),
    );
    shims.push((
        "runc shim + runc",
        "io.containerd.runc.v2",
        "containerd-shim-runc-v2",
    ));
    // Latency also of the stock shim calling skiff: what the shim itself
    // adds, apart from the runtime it calls.
    let skiff = skiff.display().to_string();
    let mut ways: Vec<(&str, Vec<&str>)> = vec![
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
    ways.extend(
        named
            .iter()
            .map(|(n, r, _)| (n.as_str(), vec!["--runtime", r.as_str()])),
    );
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
    let address = work.join("containerd.sock").display().to_string();
    let mut kib = vec![Vec::new(); shims.len()];
    for round in 0..rounds {
        for (s, (_, runtime, binary)) in shims.iter().enumerate() {
            kib[s].push(shim_memory(
                &ctr, runtime, binary, &address, containers, round,
            ));
        }
    }
    for ((name, _, _), rounds) in shims.iter().zip(kib) {
        let per = |kib: u64| kib as f64 / 1024.0 / containers as f64;
        let (mut rss, mut pss): (Vec<f64>, Vec<f64>) =
            rounds.iter().map(|&(r, p)| (per(r), per(p))).unzip();
        let range = |v: &[f64]| (v[0], v[v.len() - 1]);
        let (rss_med, pss_med) = (median_p90(&mut rss).0, median_p90(&mut pss).0);
        let ((rss_lo, rss_hi), (pss_lo, pss_hi)) = (range(&rss), range(&pss));
        println!(
            "  {name:<18} RSS {rss_med:6.2} MiB ({rss_lo:.2}-{rss_hi:.2})  \
             PSS {pss_med:6.2} MiB ({pss_lo:.2}-{pss_hi:.2}) per container"
        );
    }
    drop(daemon);
    skiff_e2e::remove_parent_cgroup("skiff-bench");
}

/// Runs `containers` containers under one shim, sums its shims' memory
/// (KiB of Rss, Pss), and removes the containers.
fn shim_memory(
    ctr: &impl Fn(&[&str]) -> Command,
    runtime: &str,
    binary: &str,
    address: &str,
    containers: usize,
    round: usize,
) -> (u64, u64) {
    let ids: Vec<String> = (0..containers)
        .map(|i| format!("rss-{binary}-{round}-{i}"))
        .collect();
    for id in &ids {
        timed(&mut ctr(&[
            "run",
            "-d",
            "--runtime",
            runtime,
            IMAGE,
            id,
            "sleep",
            "1000",
        ]));
    }
    let kib = memory_kib(binary, address);
    for id in &ids {
        let _ = ctr(&["task", "kill", "-s", "SIGKILL", id]).output();
    }
    for id in &ids {
        for _ in 0..50 {
            if ctr(&["task", "delete", id])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = ctr(&["container", "delete", id]).output();
    }
    kib
}
