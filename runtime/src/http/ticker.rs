//! An epoch ticker for an HTTP service: a thread that moves the engine's epoch every
//! [`TICK`], so each request's instance can check its deadline (and yield its worker thread to
//! other requests) while it runs Wasm code. It stops and is joined when dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch moves.
pub const TICK: Duration = Duration::from_millis(10);

/// Moves `engine`'s epoch every [`TICK`] while it lives.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking.
    pub fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmpod-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_until_dropped() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let module =
            wasmtime::Module::new(&engine, r#"(module (func (export "spin") (loop br 0)))"#)
                .unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        // Trap after a few ticks: only a ticking epoch ends this loop.
        store.set_epoch_deadline(3);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        let ticker = EpochTicker::start(&engine).unwrap();
        assert!(spin.call(&mut store, ()).is_err());
        drop(ticker);
    }
}
