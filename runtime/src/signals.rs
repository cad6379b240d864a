//! Stopping a guest when the container is told to stop.
//!
//! The guest runs as PID 1 of its PID namespace, where a signal with the default action is
//! dropped, so SIGTERM and SIGINT get a real (empty) handler, are blocked in every thread, and
//! are taken by one watcher thread with `sigwait`. On a signal the watcher records it (the
//! first one wins) and then, depending on what the process is running ([`Running`]):
//! - nothing yet: ends the process with `128 + signal` at once;
//! - a guest run once: bumps the engine's epoch, so a guest spinning in Wasm code traps at
//!   its next check, wakes the async runner, which abandons a guest blocked in a host call,
//!   and, as a last resort, ends the process if it is still alive after [`BACKSTOP`];
//! - an HTTP service: wakes the server, which stops accepting and lets the requests in
//!   flight finish (the container's stop timeout, then SIGKILL, bounds that).
//!
//! SIGXCPU is watched the same way: it is the kernel telling a command that it used up its
//! CPU time limit (see [`crate::cpu_limit`]).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use wasmtime::Engine;

/// How long the process may take to stop on its own after a stop signal.
pub const BACKSTOP: Duration = Duration::from_secs(2);

struct Shared {
    /// The first stop signal received, or 0.
    signal: AtomicI32,
    /// Wakes the runner on a stop signal.
    notify: Notify,
    /// What the process runs.
    running: Mutex<Running>,
}

/// What a stop signal has to stop.
enum Running {
    /// No guest yet.
    Nothing,
    /// A guest run once, by this engine.
    Guest(Engine),
    /// An HTTP service, which drains on its own.
    Server,
}

/// A handle on the watcher thread, made in two steps: [`TerminationWatch::block`] once,
/// before any other thread starts, then [`StopSignalsBlocked::start_watcher`] once the
/// process holds the privileges it will run with (capabilities, `no_new_privs`, seccomp and
/// the AppArmor profile are per thread, and a thread started earlier keeps the old ones).
#[derive(Clone)]
pub struct TerminationWatch {
    shared: Arc<Shared>,
}

/// The stop signals have handlers and are blocked; no watcher thread runs yet. A signal that
/// arrives now stays pending and is taken when the watcher starts.
pub struct StopSignalsBlocked {
    set: libc::sigset_t,
}

extern "C" fn ignore(_: libc::c_int) {}

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGXCPU];

impl TerminationWatch {
    /// Installs the handlers and blocks the stop signals in the calling thread (threads
    /// started later inherit the mask). Starts no thread.
    pub fn block() -> std::io::Result<StopSignalsBlocked> {
        // SAFETY: plain libc signal-mask calls on locals; the handler is async-signal-safe.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in STOP_SIGNALS {
                libc::sigaddset(&mut set, sig);
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = ignore as *const () as usize;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            set
        };
        Ok(StopSignalsBlocked { set })
    }

    /// [`TerminationWatch::block`] and [`StopSignalsBlocked::start_watcher`] at once, for a
    /// process whose privileges are final.
    pub fn install() -> std::io::Result<TerminationWatch> {
        Self::block()?.start_watcher()
    }

    /// Tells the watcher which engine runs the guest, so a stop signal can interrupt it.
    /// If a stop signal already arrived, the epoch is bumped at once.
    pub fn attach(&self, engine: &Engine) {
        if let Ok(mut slot) = self.shared.running.lock() {
            *slot = Running::Guest(engine.clone());
        }
        if self.signal().is_some() {
            engine.increment_epoch();
        }
    }

    /// Tells the watcher that an HTTP service runs: a stop signal only wakes
    /// [`TerminationWatch::stopped`], and the server drains its requests before it exits.
    pub fn attach_server(&self) {
        if let Ok(mut slot) = self.shared.running.lock() {
            *slot = Running::Server;
        }
    }

    /// The stop signal received so far, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.shared.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// Resolves with the stop signal once one arrives.
    pub async fn stopped(&self) -> i32 {
        loop {
            let notified = self.shared.notify.notified();
            if let Some(sig) = self.signal() {
                return sig;
            }
            notified.await;
        }
    }
}

impl StopSignalsBlocked {
    /// Starts the watcher thread (the process's first thread besides the caller's).
    pub fn start_watcher(self) -> std::io::Result<TerminationWatch> {
        let shared = Arc::new(Shared {
            signal: AtomicI32::new(0),
            notify: Notify::new(),
            running: Mutex::new(Running::Nothing),
        });
        let watcher = shared.clone();
        let set = self.set;
        std::thread::Builder::new()
            .name("wasmpod-signals".into())
            .spawn(move || watch(watcher, set))?;
        Ok(TerminationWatch { shared })
    }
}

fn watch(shared: Arc<Shared>, set: libc::sigset_t) {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid, initialised signal set.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            continue;
        }
        let first = shared
            .signal
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if !first {
            continue;
        }
        let engine = match shared.running.lock().as_deref() {
            Ok(Running::Guest(engine)) => Some(engine.clone()),
            Ok(Running::Server) => None,
            // No guest runs yet: nothing to drain.
            // SAFETY: ends the process; nothing is left to clean up.
            Ok(Running::Nothing) | Err(_) => unsafe { libc::_exit(128 + sig) },
        };
        shared.notify.notify_waiters();
        shared.notify.notify_one();
        if let Some(engine) = engine {
            engine.increment_epoch();
            std::thread::spawn(move || {
                std::thread::sleep(BACKSTOP);
                // SAFETY: as above.
                unsafe { libc::_exit(128 + sig) };
            });
        }
    }
}
