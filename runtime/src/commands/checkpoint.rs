//! `skiff checkpoint` and `skiff restore`: accepted on the command line so
//! managers get a clear answer, and refused until CRIU support exists.

use crate::error::Error;

pub fn run(command: &str) -> Result<i32, Error> {
    Err(Error::Message(format!(
        "{command}: checkpoint/restore (CRIU) is not supported by skiff yet"
    )))
}
