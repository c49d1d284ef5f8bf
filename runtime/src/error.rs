//! The one error type commands return. The binary turns it into the single
//! line a user (or a manager parsing runc's log) sees, and exit status 1.

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
    Signal(#[from] UnknownSignal),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Message(String),
}
