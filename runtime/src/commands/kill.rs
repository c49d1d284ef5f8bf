//! `skiff kill [--all] ID [SIGNAL]`.

use crate::cli::KillArgs;
use crate::container::Container;
use crate::error::Error;
use crate::signals;
use crate::state::Root;

pub fn run(root: &Root, args: &KillArgs) -> Result<i32, Error> {
    let signal = signals::parse(&args.signal)?;
    Container::load(root, &args.id)?.kill(signal, args.all)?;
    Ok(0)
}
