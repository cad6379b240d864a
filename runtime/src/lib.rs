//! Everything Wasm in wasmpod: the Wasmtime engine configuration, compiling a workload, building
//! its WASI context, running it to an exit code, and stopping it on SIGTERM.
//!
//! This crate knows Wasmtime and nothing of containerd. It runs *inside* the container process,
//! after the container's namespaces, cgroup and rootfs are in place:
//! 1. [`signals::TerminationWatch::block`] first, before any thread exists, and
//!    [`signals::StopSignalsBlocked::start_watcher`] once the process's privileges are final.
//! 2. [`Prepared::compile`] turns the Wasm bytes into a module or component whose imports
//!    are known to be satisfiable (done at create time, so bad Wasm fails `Create`).
//! 3. [`Prepared::run`] runs it with a [`GuestSetup`] and returns a [`GuestOutcome`], whose
//!    [`GuestOutcome::exit_code`] is the container's exit status. A `wasi:http` proxy
//!    component is served ([`http`]) until a stop signal instead.
#![deny(missing_docs)]

pub mod cache;
pub mod cpu_limit;
pub mod engine;
pub mod error;
pub mod http;
pub mod limits;
pub mod outcome;
pub mod run;
pub mod signals;
pub mod spin;
pub mod state;
pub mod telemetry;
pub mod trigger;
pub mod wasi;
pub mod wasip3_rc;
pub mod world;

pub use error::RuntimeError;
pub use outcome::GuestOutcome;
pub use run::Prepared;
pub use wasi::GuestSetup;

#[cfg(test)]
pub(crate) mod test_env {
    /// A container environment of `pairs`.
    pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}
