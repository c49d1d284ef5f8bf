//! Property-based fuzzing of what skiff reads from the outside world:
//! config.json (loading and validation) and mount option lists. The
//! harness (fixed seed, fixed case counts, `SKIFF_FUZZ_CASES=N` for more)
//! is `skiff-fuzzing`.

mod config;
mod mount_options;
