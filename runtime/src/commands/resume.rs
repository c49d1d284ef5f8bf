//! `skiff resume ID`: thaws a paused container.

use crate::container::Container;
use crate::error::Error;
use crate::state::Root;

pub fn run(root: &Root, id: &str) -> Result<i32, Error> {
    Container::load(root, id)?.resume()?;
    Ok(0)
}
