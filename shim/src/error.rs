//! The shim's error type and its mapping to ttrpc status codes, so RPC handlers just use `?`.

use containerd_shim::protos::ttrpc::{self, Code};

use crate::lifecycle::LifecycleError;

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No such task or process.
    #[error("{0}")]
    NotFound(String),
    /// A task with this id exists already.
    #[error("task {0} already exists")]
    AlreadyExists(String),
    /// The request is malformed or names an unusable workload.
    #[error("{0}")]
    InvalidArgument(String),
    /// The task's state does not allow the operation.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// Other precondition failures (a workload that cannot run here).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Not provided by this version of wasmpod.
    #[error("{0} is not implemented by wasmpod yet")]
    Unimplemented(&'static str),
    /// A service the shim depends on (containerd's API) could not be reached or answered
    /// with an error.
    #[error("{0}")]
    Unavailable(String),
    /// The caller gave the operation up (containerd deleted the task being created, or
    /// dropped the call).
    #[error("{0}")]
    Cancelled(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl ShimError {
    /// The ttrpc code for this error.
    pub fn code(&self) -> Code {
        match self {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::Lifecycle(_) | ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Unavailable(_) => Code::UNAVAILABLE,
            ShimError::Cancelled(_) => Code::CANCELLED,
            ShimError::Internal(_) => Code::INTERNAL,
        }
    }
}

impl From<wasmpod_oci::OciError> for ShimError {
    fn from(e: wasmpod_oci::OciError) -> Self {
        use wasmpod_oci::OciError as E;
        match e {
            E::NoArgs | E::Spec { .. } | E::Annotation { .. } => {
                ShimError::InvalidArgument(e.to_string())
            }
            E::EntrypointNotFound(_) => ShimError::NotFound(e.to_string()),
            _ => ShimError::FailedPrecondition(e.to_string()),
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

/// The result type of the task service.
pub type ShimResult<T> = Result<T, ShimError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let e: ttrpc::Error = ShimError::NotFound("task x not found".into()).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::NOT_FOUND);
                assert_eq!(s.message(), "task x not found");
            }
            other => panic!("{other:?}"),
        }
        let l = LifecycleError {
            op: "start",
            state: "running",
        };
        assert_eq!(ShimError::from(l).code(), Code::FAILED_PRECONDITION);
        assert_eq!(ShimError::Unimplemented("Exec").code(), Code::UNIMPLEMENTED);
        assert!(ShimError::Unimplemented("Exec")
            .to_string()
            .contains("not implemented"));
    }
}
