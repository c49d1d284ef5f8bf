//! `skiff-bench --systemd`: the systemd cgroup driver on a systemd host
//! (scripts/systemd-bench.sh runs it in the systemd guest). Interleaved, on
//! one busybox bundle with state on tmpfs, each runtime with its systemd
//! driver and with its cgroupfs one:
//! - `run` of /bin/true (the target: skiff's systemd `run` at most 0.6x
//!   crun's);
//! - the systemd life taken apart: `create`, `start` and `delete` timed
//!   each (the container's exit waited for in between, untimed), to show
//!   where the driver's time goes.

use std::path::Path;

use super::{build_bundle, print_header, print_scenario, private_namespace, runtime_cmd, timed};
use super::{Duration, Runtime};

/// The global options choosing a runtime's cgroup driver: crun spells
/// them its own way; skiff and runc take runc's flag, cgroupfs by default.
fn driver(rt: &Runtime, systemd: bool) -> &'static [&'static str] {
    match (rt.name.starts_with("crun"), systemd) {
        (true, true) => &["--cgroup-manager=systemd"],
        (true, false) => &["--cgroup-manager=cgroupfs"],
        (false, true) => &["--systemd-cgroup"],
        (false, false) => &[],
    }
}

/// `args` of runtime `rt` with its `systemd` or cgroupfs driver, timed.
fn timed_with(rt: &Runtime, state: &Path, systemd: bool, args: &[&str]) -> Duration {
    let mut all = driver(rt, systemd).to_vec();
    all.extend_from_slice(args);
    timed(runtime_cmd(rt, state, &all)).0
}

pub fn bench(runtimes: &[Runtime], runs: usize, busybox: &Path) {
    if !Path::new("/run/systemd/system").is_dir() {
        eprintln!(
            "skiff-bench: systemd is not running here (scripts/systemd-bench.sh runs --systemd in \
             a guest that is a systemd host)"
        );
        std::process::exit(1);
    }
    let work = std::env::temp_dir().join(format!("skiff-bench-systemd-{}", std::process::id()));
    let bundle = work.join("bundle");
    build_bundle(&bundle, busybox, &["/bin/true"], false);
    let b = bundle.to_str().unwrap();
    let state = work.join("state");
    private_namespace(&state);
    // The inits of `create` are reparented to us: their exit is waited
    // for, not polled for with `state`.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    let n = runtimes.len();
    let [mut run_sd, mut run_fs, mut create, mut start, mut delete] =
        std::array::from_fn(|_| vec![Vec::new(); n]);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let warmup = 3;
    let began = std::time::Instant::now();
    for i in 0..runs + warmup {
        // Under TCG a round takes a while: say how far it got.
        eprintln!(
            "round {}/{} at {:.0} s",
            i + 1,
            runs + warmup,
            began.elapsed().as_secs_f64()
        );
        for (r, rt) in runtimes.iter().enumerate() {
            let sd = timed_with(rt, &state, true, &["run", "--bundle", b, &format!("s{i}")]);
            let fs = timed_with(rt, &state, false, &["run", "--bundle", b, &format!("c{i}")]);
            let id = format!("l{i}");
            let pid_file = state.join(format!("{}-{id}.pid", rt.name));
            let args = ["create", "--bundle", b, "--pid-file"];
            let mut args = args.to_vec();
            args.extend([pid_file.to_str().unwrap(), &id]);
            let c = timed_with(rt, &state, true, &args);
            let pid: i32 = std::fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let s = timed_with(rt, &state, true, &["start", &id]);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            let d = timed_with(rt, &state, true, &["delete", &id]);
            if i >= warmup {
                run_sd[r].push(ms(sd));
                run_fs[r].push(ms(fs));
                create[r].push(ms(c));
                start[r].push(ms(s));
                delete[r].push(ms(d));
            }
        }
    }
    println!(
        "{runs} interleaved runs each (after {warmup} warm-up), state on tmpfs, busybox /bin/true"
    );
    print_header();
    print_scenario("run, systemd", runtimes, &mut run_sd);
    print_scenario("run, cgroupfs", runtimes, &mut run_fs);
    print_scenario("create, systemd", runtimes, &mut create);
    print_scenario("start, systemd", runtimes, &mut start);
    print_scenario("delete, systemd", runtimes, &mut delete);
    let _ = nix::mount::umount2(&state, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&work);
}
