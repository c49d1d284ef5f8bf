//! oci-spec validates `process.execCPUAffinity` with one regular expression
//! and pulls in the full `regex` crate for it: about half a megabyte of
//! automata, Unicode tables and literal optimizers in a runtime that must
//! stay small. This crate replaces `regex` in skiff's build
//! (`[patch.crates-io]` in the workspace) with `regex-lite`, which has the
//! same `Regex` API for what oci-spec calls and none of that weight.

pub use regex_lite::{Error, Regex, RegexBuilder};
