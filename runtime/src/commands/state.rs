//! `skiff state`: the OCI state, pretty-printed without a trailing newline
//! (byte for byte what runc prints).

use std::io::Write;

use crate::container::Container;
use crate::error::Error;
use crate::state::Root;

pub fn run(root: &Root, id: &str) -> Result<i32, Error> {
    let c = Container::load(root, id)?;
    let json = c.state_json(c.status(), "", true);
    let _ = std::io::stdout().write_all(json.as_bytes());
    Ok(0)
}
