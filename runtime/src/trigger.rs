//! What a workload kind plugs into: a [`Trigger`] runs a linked workload in the container's
//! init process and reports how it ended. A command runs once (`run`); a server (the
//! `wasi:http` proxy, and Spin's triggers next) serves until the [`TerminationWatch`] sees a
//! stop signal, drains, and reports the signal. A new workload kind is one more
//! implementation, in a module of its own.

use wasmtime::Engine;

use crate::signals::TerminationWatch;
use crate::{GuestOutcome, GuestSetup, RuntimeError};

/// Runs one linked workload.
pub trait Trigger: Send {
    /// Checks, in the container's init at create time, what depends on the container (its
    /// environment and files): a failure fails Create. Most triggers have nothing to check.
    fn check(&mut self, _setup: &GuestSetup) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Runs it with `engine` (the one it was linked with) and the container's `setup`, until
    /// it ends or `watch` tells it to stop. An error means the guest never ran.
    fn run(
        self: Box<Self>,
        engine: &Engine,
        setup: &GuestSetup,
        watch: &TerminationWatch,
    ) -> Result<GuestOutcome, RuntimeError>;
}
