//! Many containers at once while the host churns: every create, start and
//! exec must succeed, and concurrent creates of one id must leave exactly
//! one winner. Failures here are races (shared cgroup parents, state
//! directories, the init channel) that single runs never show.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use support::{assert_nothing_left, Bundle, Skiff};

/// Background load: mounts and unmounts in a loop, two CPU hogs, and a
/// writer that keeps the disk busy. Stops when dropped.
struct Churn {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl Churn {
    fn start() -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let dir = std::env::temp_dir().join(support::unique_id("churn"));
        std::fs::create_dir_all(dir.join("m")).unwrap();
        let mut threads = Vec::new();
        let s = stop.clone();
        let target = dir.join("m");
        threads.push(std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let flags = nix::mount::MsFlags::empty();
                if nix::mount::mount(Some("churn"), &target, Some("tmpfs"), flags, None::<&str>)
                    .is_ok()
                {
                    let _ = nix::mount::umount(&target);
                }
            }
        }));
        for _ in 0..2 {
            let s = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut x = 0u64;
                while !s.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }));
        }
        let s = stop.clone();
        let file = dir.join("disk");
        threads.push(std::thread::spawn(move || {
            let block = vec![0u8; 1 << 20];
            while !s.load(Ordering::Relaxed) {
                let mut f = std::fs::File::create(&file).unwrap();
                for _ in 0..32 {
                    std::io::Write::write_all(&mut f, &block).unwrap();
                }
                let _ = f.sync_all();
            }
        }));
        Churn { stop, threads, dir }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = nix::mount::umount(&self.dir.join("m"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One container's whole life; returns what went wrong, if anything.
fn life(skiff: &Skiff, bundle: &Bundle, id: &str) -> Result<(), String> {
    let dir = bundle.dir.to_str().unwrap();
    let step = |what: &str, args: &[&str]| {
        let run = skiff.run(args);
        if run.code == 0 {
            Ok(run)
        } else {
            Err(format!("{id}: {what}: {}", run.stderr.trim()))
        }
    };
    let result = step("create", &["create", "--bundle", dir, id])
        .and_then(|_| step("start", &["start", id]))
        .and_then(|_| step("exec", &["exec", id, "true"]))
        .and_then(|_| step("delete", &["delete", "--force", id]));
    if result.is_err() {
        skiff.cleanup(id);
    }
    result.map(drop)
}

#[test]
fn fifty_containers_in_parallel_while_the_host_churns() {
    require_root!();
    let skiff = Arc::new(Skiff::new());
    let _churn = Churn::start();
    let mut b = Bundle::new(&["sleep", "60"]);
    // Cgroup parents shared by ten containers each, which none of them
    // finds already made: creating them is part of the race.
    let parent = support::unique_id("stress");
    let rounds = 3;
    let mut failures = Vec::new();
    for round in 0..rounds {
        let mut lives = Vec::new();
        for i in 0..50 {
            let id = format!("{parent}-{round}-{i}");
            let group = format!("{parent}-{round}-{}", i % 5);
            b.config["linux"]["cgroupsPath"] = json!(format!("/{group}/{id}"));
            b.dir = b.dir.with_file_name(format!("bundle-{id}"));
            std::fs::create_dir_all(&b.dir).unwrap();
            b.write();
            let bundle = Bundle {
                dir: b.dir.clone(),
                rootfs: b.rootfs.clone(),
                config: b.config.clone(),
            };
            lives.push((bundle, id));
        }
        // All at once: the first create of the shared parent races the rest.
        let barrier = Arc::new(std::sync::Barrier::new(lives.len()));
        let threads: Vec<_> = lives
            .into_iter()
            .map(|(bundle, id)| {
                let (skiff, barrier) = (skiff.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (life(&skiff, &bundle, &id), id)
                })
            })
            .collect();
        for t in threads {
            let (result, id) = t.join().unwrap();
            if let Err(e) = result {
                failures.push(e);
            }
            assert_nothing_left(&skiff, &id);
        }
        for group in 0..5 {
            let group = format!("{parent}-{round}-{group}");
            for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
                let _ = std::fs::remove_dir(hierarchy.path().join(&group));
            }
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{group}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} lives failed:\n{}",
        failures.len(),
        rounds * 50,
        failures.join("\n")
    );
}

#[test]
fn concurrent_creates_of_one_id_have_one_winner() {
    require_root!();
    let skiff = Arc::new(Skiff::new());
    let b = Bundle::new(&["sleep", "60"]);
    b.write();
    let id = support::unique_id("one-id");
    let barrier = Arc::new(std::sync::Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (skiff, barrier) = (skiff.clone(), barrier.clone());
            let (dir, id) = (b.dir.clone(), id.clone());
            std::thread::spawn(move || {
                barrier.wait();
                skiff.run(&["create", "--bundle", dir.to_str().unwrap(), &id])
            })
        })
        .collect();
    let runs: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let winners = runs.iter().filter(|r| r.code == 0).count();
    for loser in runs.iter().filter(|r| r.code != 0) {
        assert!(
            loser.stderr.contains("exists"),
            "a loser must fail because the id exists: {}",
            loser.stderr
        );
    }
    assert_eq!(winners, 1);
    assert_eq!(skiff.state(&id)["status"], "created");
    skiff.run(&["delete", "--force", &id]).ok();
    assert_nothing_left(&skiff, &id);
}
