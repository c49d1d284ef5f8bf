//! The fuzzing harness of skiff's tests: proptest with a fixed seed and a
//! fixed number of cases per target, so CI sees the same inputs every run,
//! and `SKIFF_FUZZ_CASES=N` for a longer hunt on demand. A failure is
//! shrunk and printed with the input that caused it; the fix then gets a
//! unit test of its own beside the code it changed. Each case runs under a
//! watchdog, so a hang fails with its input instead of stalling the run.
//!
//! Only ever a dev-dependency: nothing here reaches a skiff binary.

pub use proptest;

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

/// Longer than any one case takes on a busy machine in a debug build; a
/// case that runs past it is a hang.
const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Runs `test` on `default_cases` inputs drawn from `strategy` (or
/// SKIFF_FUZZ_CASES of them), and panics with the smallest failing input.
pub fn fuzz<S>(
    target: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = std::env::var("SKIFF_FUZZ_CASES")
        .ok()
        .map(|c| c.parse().expect("SKIFF_FUZZ_CASES: a number"))
        .unwrap_or(default_cases);
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5eed_f022),
        // A failure becomes a unit test beside the code, not a file here.
        failure_persistence: None,
        ..Config::default()
    });
    let watchdog = Watchdog::start(target);
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        watchdog.begin(&input);
        let outcome = test(input);
        watchdog.end();
        outcome
    });
    eprintln!("{target}: {cases} cases in {:.1?}", started.elapsed());
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
}

/// Aborts the test process, naming the input, when one case runs longer
/// than CASE_LIMIT: without it a hang would stall `cargo test` silently.
struct Watchdog {
    current: Arc<Mutex<Option<(Instant, String)>>>,
}

impl Watchdog {
    fn start(target: &str) -> Watchdog {
        let target = target.to_string();
        let current = Arc::new(Mutex::new(None::<(Instant, String)>));
        let watched = Arc::downgrade(&current);
        std::thread::spawn(move || {
            while let Some(current) = watched.upgrade() {
                if let Some((since, input)) = &*current.lock().unwrap() {
                    if since.elapsed() > CASE_LIMIT {
                        eprintln!("{target}: one case ran over {CASE_LIMIT:?}: {input}");
                        std::process::abort();
                    }
                }
                drop(current);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Watchdog { current }
    }

    fn begin(&self, input: &impl Debug) {
        *self.current.lock().unwrap() = Some((Instant::now(), format!("{input:?}")));
    }

    fn end(&self) {
        *self.current.lock().unwrap() = None;
    }
}
