//! `skiff features`: the runtime-spec features JSON, pretty-printed.

use std::io::Write;

use crate::error::Error;

pub fn run() -> Result<i32, Error> {
    let json = serde_json::to_string_pretty(&crate::features::features()).unwrap_or_default();
    let _ = writeln!(std::io::stdout(), "{json}");
    Ok(0)
}
