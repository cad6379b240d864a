//! What can go wrong on a node, each kind with the message an operator reads in the
//! installer pod's log.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A containerd config (or template) that wasmpod cannot read or edit.
    #[error("containerd config: {0}")]
    Config(String),
    /// A table wasmpod would write is already someone else's.
    #[error("containerd config: {0}")]
    Conflict(String),
    /// The node looks like more than one distribution, or like none the installer handles.
    #[error("{0}")]
    Detect(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A command run on the host failed.
    #[error("{0}")]
    Command(String),
    /// containerd refused the edited config; the original was kept.
    #[error("containerd refused the edited config (the original is unchanged): {0}")]
    Rejected(String),
    /// containerd did not come back after the restart.
    #[error("{0}")]
    Restart(String),
    /// The Kubernetes API call (the node label) failed.
    #[error("labelling the node: {0}")]
    Label(String),
}

impl NodeError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.into();
        move |source| NodeError::Io { path, source }
    }
}
