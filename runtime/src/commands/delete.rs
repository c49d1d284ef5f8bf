//! `skiff delete [--force] ID`.

use crate::cli::DeleteArgs;
use crate::container::{Container, ContainerError};
use crate::error::Error;
use crate::state::{Root, StateError};

pub fn run(root: &Root, args: &DeleteArgs) -> Result<i32, Error> {
    match Container::load(root, &args.id) {
        Ok(c) => c.delete(args.force)?,
        // A create that died before writing its state leaves only the
        // directory; --force cleans it up, as with runc.
        Err(ContainerError::State(StateError::NotExist)) if args.force => {
            let dir = root.dir(&args.id);
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir).map_err(|source| Error::Io { path: dir, source })?;
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(0)
}
