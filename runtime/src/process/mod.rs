//! The container process itself: its limits and attributes, and the exec
//! that starts it.

pub mod attributes;
pub mod exec;
pub mod rlimits;
