//! The error type of the `oci` crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading specs, finding entrypoints or writing images.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The bundle's `config.json` could not be read or parsed.
    #[error("cannot read OCI runtime spec {path}: {reason}")]
    Spec {
        /// The `config.json` path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// `process.args` is missing or empty.
    #[error(
        "the container has no command: process.args is empty (set an entrypoint or command; \
         a Spin app takes `/`, as in `ctr run IMAGE ID /`)"
    )]
    NoArgs,
    /// `args[0]` does not name a file in the rootfs.
    #[error("entrypoint {0:?} not found in the container's rootfs")]
    EntrypointNotFound(String),
    /// `args[0]` names something that is not a regular file.
    #[error("entrypoint {0:?} is not a regular file")]
    EntrypointNotAFile(String),
    /// `args[0]` is a file, but neither Wasm nor a native program.
    #[error(
        "entrypoint {path} is {what}: it must be a Wasm module or component (or a native program)"
    )]
    NotRunnable {
        /// The entrypoint as the container sees it.
        path: String,
        /// What it is instead.
        what: &'static str,
    },
    /// A native program built for another machine than the node's.
    #[error(
        "entrypoint {program} is a native program for {machine}, and this node is {host}: \
         use the image built for {host}"
    )]
    ForeignMachine {
        /// The program, as the container sees it.
        program: String,
        /// The machine it is built for.
        machine: String,
        /// The node's machine.
        host: String,
    },
    /// A `#!` script whose interpreter is not in the container.
    #[error("entrypoint {script} is a script for {interpreter}, which is not in the container")]
    MissingInterpreter {
        /// The script, as the container sees it.
        script: String,
        /// The interpreter its first line names.
        interpreter: String,
    },
    /// The process's working directory cannot be made.
    #[error("working directory {cwd:?}: {reason}")]
    Cwd {
        /// The working directory, as the spec gives it.
        cwd: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A symlink loop or a chain too long to follow.
    #[error("too many levels of symbolic links while resolving {0:?}")]
    SymlinkLoop(String),
    /// An I/O error with the path it happened on.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A Spin application (manifest, lock, or what they name) that cannot run.
    #[error("Spin app {file}: {reason}")]
    SpinApp {
        /// The manifest or lock file (or the layer it came from).
        file: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// Bad input to the image builder.
    #[error("image: {0}")]
    Image(String),
    /// A `wasmpod.dev/` annotation that is unknown or has a bad value.
    #[error("annotation {key}: {reason}")]
    Annotation {
        /// The annotation's key.
        key: String,
        /// What is wrong, with the value.
        reason: String,
    },
}

impl OciError {
    /// Wraps an I/O error with the operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| OciError::Io { op, path, source }
    }
}
