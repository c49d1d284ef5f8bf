//! What can go wrong in a shim request, and the ttrpc status code each
//! failure reaches containerd with (containerd maps the codes back to its
//! errdefs: NotFound, AlreadyExists, FailedPrecondition, ...).

use crate::ttrpc::Code;

/// A failed shim request.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("task {0}: not found")]
    TaskNotFound(String),
    #[error("task {id}: exec {exec_id}: not found")]
    ExecNotFound { id: String, exec_id: String },
    #[error("task {0}: already exists")]
    TaskExists(String),
    #[error("task {id}: exec {exec_id}: already exists")]
    ExecExists { id: String, exec_id: String },
    /// containerd expects NotFound for a signal to a finished process.
    #[error("task {id}: process {exec_id:?} already finished")]
    Finished { id: String, exec_id: String },
    #[error("task {id}: {what}")]
    Precondition { id: String, what: String },
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    /// The skiff binary failed; `message` is its own one-line error.
    #[error("skiff {op} {id}: {message}")]
    Runtime {
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("task {id}: {source}")]
    Container {
        id: String,
        source: Box<skiff::container::ContainerError>,
    },
}

impl ShimError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
        let what = what.into();
        move |source| ShimError::Io { what, source }
    }

    pub fn container(id: &str) -> impl FnOnce(skiff::container::ContainerError) -> ShimError {
        let id = id.to_string();
        move |source| ShimError::Container {
            id,
            source: Box::new(source),
        }
    }

    pub fn code(&self) -> Code {
        use skiff::container::ContainerError as C;
        match self {
            ShimError::TaskNotFound(_) | ShimError::ExecNotFound { .. } => Code::NotFound,
            ShimError::Finished { .. } => Code::NotFound,
            ShimError::TaskExists(_) | ShimError::ExecExists { .. } => Code::AlreadyExists,
            ShimError::Precondition { .. } => Code::FailedPrecondition,
            ShimError::Invalid { .. } => Code::InvalidArgument,
            ShimError::Container { source, .. } => match **source {
                C::NotRunning => Code::NotFound,
                C::NotStartable(_)
                | C::NotPausable(_)
                | C::NotPaused
                | C::ExecStopped
                | C::ExecPaused
                | C::NotStopped { .. } => Code::FailedPrecondition,
                _ => Code::Unknown,
            },
            ShimError::Runtime { .. } | ShimError::Io { .. } => Code::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: ShimError) -> Code {
        e.code()
    }

    #[test]
    fn codes_are_the_ones_containerd_maps() {
        assert_eq!(code_of(ShimError::TaskNotFound("a".into())), Code::NotFound);
        assert_eq!(
            code_of(ShimError::Finished {
                id: "a".into(),
                exec_id: String::new()
            }),
            Code::NotFound
        );
        assert_eq!(
            code_of(ShimError::ExecExists {
                id: "a".into(),
                exec_id: "e".into()
            }),
            Code::AlreadyExists
        );
    }

    #[test]
    fn message_names_task_and_exec() {
        let e = ShimError::ExecNotFound {
            id: "web".into(),
            exec_id: "sh1".into(),
        };
        assert_eq!(e.to_string(), "task web: exec sh1: not found");
    }
}
