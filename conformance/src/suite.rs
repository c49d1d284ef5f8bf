//! Cases, and running them against a runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::ctx::{Ctx, Failure, Runtime};

/// How binding the requirement a case checks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A MUST of the runtime spec.
    Must,
    /// A SHOULD of the runtime spec.
    Should,
    /// Not in the spec (or departing from it), but runc does it and
    /// managers depend on it.
    Runc,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::Runc => "runc",
        }
    }
}

/// One conformance case.
pub struct Case {
    /// Unique name, `area.what`.
    pub name: &'static str,
    /// Where the requirement is, e.g. `config.md#process`.
    pub section: &'static str,
    pub level: Level,
    pub run: fn(&mut Ctx) -> Result<(), Failure>,
}

/// Shorthand to declare a case.
pub fn case(
    name: &'static str,
    section: &'static str,
    level: Level,
    run: fn(&mut Ctx) -> Result<(), Failure>,
) -> Case {
    Case {
        name,
        section,
        level,
        run,
    }
}

/// A case's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

impl Outcome {
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skip(_) => "skip",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Fail(d) | Outcome::Skip(d) => d,
        }
    }
}

/// Runs `cases` against `runtime` on `jobs` threads; outcomes in case order.
pub fn run_all(runtime: &Runtime, cases: &[&Case], jobs: usize) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![Outcome::Skip("not run".into()); cases.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let outcome = run_one(runtime, case);
                if let Ok(mut r) = results.lock() {
                    r[i] = outcome;
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}

fn run_one(runtime: &Runtime, case: &Case) -> Outcome {
    let mut ctx = Ctx::new(runtime, crate::fixture::work(), case.name);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(&mut ctx)));
    ctx.cleanup();
    match result {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(Failure::Fail(d))) => Outcome::Fail(d),
        Ok(Err(Failure::Skip(d))) => Outcome::Skip(d),
        Err(_) => Outcome::Fail("the case panicked".into()),
    }
}
