//! The error type of the `runtime` crate.

/// Errors that keep a workload from starting. Errors while it runs are a
/// [`crate::GuestOutcome`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The Wasmtime engine could not be created.
    #[error("cannot create the Wasm engine: {0}")]
    Engine(String),
    /// The bytes are not a valid module or component (truncated, corrupt, unsupported feature).
    #[error("invalid Wasm {what}: {reason}")]
    Compile {
        /// "module" or "component".
        what: &'static str,
        /// Wasmtime's explanation.
        reason: String,
    },
    /// The workload imports something wasmpod does not provide.
    #[error("cannot link the Wasm {what}: {reason}")]
    Link {
        /// "module" or "component".
        what: &'static str,
        /// Wasmtime's explanation (names the import).
        reason: String,
    },
    /// A core module without a `_start` export.
    #[error("the Wasm module has no `_start` function to run (is it a WASI command?)")]
    NoStart,
    /// The module's `_start` is not a `() -> ()` function.
    #[error(
        "the Wasm module's `_start` has the type {0}; a WASI command's `_start` takes no \
         parameters and returns nothing"
    )]
    BadStart(String),
    /// A component that does not export `wasi:cli/run`.
    #[error("the Wasm component does not export wasi:cli/run: {0}")]
    NotACommand(String),
    /// A component that exports `wasi:http/incoming-handler` but not in a usable form.
    #[error("the Wasm component cannot be served as a wasi:http proxy: {0}")]
    NotAProxy(String),
    /// The HTTP server could not start (bad listen address, port in use).
    #[error("cannot serve HTTP: {0}")]
    Serve(String),
    /// Setting up the guest's WASI context failed (a preopen could not be opened, ...).
    #[error("cannot set up WASI for the guest: {0}")]
    Wasi(String),
    /// A Spin app that cannot start (its components, routes, variables, stores or runtime
    /// config), with what is wrong.
    #[error("Spin app {app}: {reason}")]
    SpinApp {
        /// The app's name.
        app: String,
        /// What is wrong.
        reason: String,
    },
    /// The compile cache could not be used.
    #[error("compile cache: {0}")]
    Cache(String),
    /// Reading the Wasm file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
