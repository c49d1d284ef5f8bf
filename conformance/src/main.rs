//! skiff-conformance: the OCI runtime-spec conformance suite, runnable
//! against any runc-compatible runtime, several side by side.
//!
//!   skiff-conformance --runtime skiff=/usr/bin/skiff --runtime runc=/usr/sbin/runc
//!
//! Each case builds its own bundle (busybox-static plus the static
//! skiff-checker), drives the runtime only through its command line, and
//! checks from inside the container and from outside. Prints TAP per
//! runtime, a side-by-side table and `NAME: N passed, M failed, K skipped`
//! per runtime; exits 0 only when the first runtime failed nothing.

mod cases;
mod ctx;
mod fixture;
mod report;
mod suite;

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

use ctx::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "skiff-conformance",
    about = "OCI runtime-spec conformance suite for runc-compatible runtimes"
)]
struct Args {
    /// A runtime to test, NAME=PATH; repeat to compare (the first decides the exit status)
    #[arg(long = "runtime", value_name = "NAME=PATH", required = true)]
    runtimes: Vec<String>,
    /// Only run cases whose name contains this
    #[arg(long)]
    filter: Option<String>,
    /// Also write `case<TAB>runtime<TAB>pass|fail|skip<TAB>detail` rows here
    #[arg(long, value_name = "FILE")]
    tsv: Option<PathBuf>,
    /// Cases run at once per runtime
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// List the cases and exit
    #[arg(long)]
    list: bool,
}

fn parse_runtime(spec: &str) -> Result<Runtime, String> {
    let (name, path) = spec
        .split_once('=')
        .ok_or_else(|| format!("--runtime {spec}: expected NAME=PATH"))?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!(
            "--runtime {spec}: {} is not a file",
            path.display()
        ));
    }
    Ok(Runtime {
        name: name.to_string(),
        path,
    })
}

fn main() {
    let args = Args::parse();
    let all = cases::all();
    let selected: Vec<&suite::Case> = all
        .iter()
        .filter(|c| args.filter.as_deref().is_none_or(|f| c.name.contains(f)))
        .collect();
    if args.list {
        for c in &selected {
            println!("{}\t{}\t{}", c.name, c.level.as_str(), c.section);
        }
        return;
    }
    let runtimes: Vec<Runtime> = match args.runtimes.iter().map(|r| parse_runtime(r)).collect() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skiff-conformance: {e}");
            std::process::exit(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skiff-conformance: runtimes create namespaces, mounts and cgroups: run as root");
        std::process::exit(2);
    }
    if !std::path::Path::new(fixture::BUSYBOX).is_file() {
        eprintln!(
            "skiff-conformance: {} is missing (apt install busybox-static)",
            fixture::BUSYBOX
        );
        std::process::exit(2);
    }
    let checker = std::env::current_exe()
        .map(|e| e.with_file_name("skiff-checker"))
        .unwrap_or_default();
    if !checker.is_file() {
        eprintln!(
            "skiff-conformance: {} is missing (build the workspace)",
            checker.display()
        );
        std::process::exit(2);
    }
    let work = std::env::temp_dir().join(format!("skiff-conformance-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&work);
    fixture::init(work.clone(), checker);

    let mut outcomes = Vec::new();
    let stdout = std::io::stdout();
    for rt in &runtimes {
        let o = suite::run_all(rt, &selected, args.jobs);
        let _ = report::tap(&mut stdout.lock(), &rt.name, &selected, &o);
        outcomes.push(o);
    }
    let names: Vec<String> = runtimes.iter().map(|r| r.name.clone()).collect();
    println!();
    let _ = report::table(&mut stdout.lock(), &names, &selected, &outcomes);
    if let Some(path) = &args.tsv {
        match std::fs::File::create(path) {
            Ok(mut f) => {
                let _ = report::tsv(&mut f, &names, &selected, &outcomes);
                let _ = f.flush();
            }
            Err(e) => eprintln!("skiff-conformance: --tsv {}: {e}", path.display()),
        }
    }
    println!();
    for (name, o) in names.iter().zip(&outcomes) {
        println!("{}", report::summary(name, o));
    }
    let _ = std::fs::remove_dir_all(&work);
    let first_failed = outcomes
        .first()
        .is_some_and(|o| o.iter().any(|x| matches!(x, suite::Outcome::Fail(_))));
    std::process::exit(i32::from(first_failed));
}
