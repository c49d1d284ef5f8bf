//! `skiff pause ID`: freezes every process of the container.

use crate::container::Container;
use crate::error::Error;
use crate::state::Root;

pub fn run(root: &Root, id: &str) -> Result<i32, Error> {
    Container::load(root, id)?.pause()?;
    Ok(0)
}
