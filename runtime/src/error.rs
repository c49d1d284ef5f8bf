//! The one error type commands return. The binary turns it into the single
//! line a user (or a manager parsing runc's log) sees, and exit status 1
//! (255 for `exec`, as runc).

use std::path::PathBuf;

use crate::bundle::BundleError;
use crate::container::ContainerError;
use crate::signals::UnknownSignal;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Criu(#[from] crate::criu::CriuError),
    #[error(transparent)]
    Signal(#[from] UnknownSignal),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Message(String),
    /// `exec` failed before its process could report a status: runc exits
    /// 255 then, so a caller can tell it from the process's own status.
    #[error(transparent)]
    Exec(Box<Error>),
}

impl Error {
    /// The exit status the binary ends with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec(_) => 255,
            _ => 1,
        }
    }
}
