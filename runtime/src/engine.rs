//! The one place where the Wasmtime [`Engine`] is configured. Every compile and every run uses
//! [`new_engine`], so the configuration (and later the compile-cache key) cannot drift.

use wasmtime::{Config, Engine, OptLevel};

use crate::RuntimeError;

/// The Wasmtime configuration wasmpod runs guests with.
///
/// - async support: a guest blocked in a host call (`poll_oneoff`, a read) can be abandoned
///   when the container is told to stop;
/// - epoch interruption: a guest spinning in Wasm code is interrupted when the container is
///   told to stop (the epoch only moves on a signal, so it costs nothing otherwise);
/// - the Wasm proposals Wasmtime enables by default stay on (exception handling included).
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.wasm_component_model(true);
    config
}

/// Builds the engine from [`engine_config`].
pub fn new_engine() -> Result<Engine, RuntimeError> {
    Engine::new(&engine_config()).map_err(|e| RuntimeError::Engine(format!("{e:#}")))
}
