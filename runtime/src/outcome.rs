//! How a guest ended, and the exit status that reports it.

use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// The guest finished: `proc_exit(n)`, a return from `_start` (0), or a component's
    /// `wasi:cli/run` result (0 or 1).
    Exited(i32),
    /// The guest trapped; the string is a one-line reason.
    Trapped(String),
    /// The container was told to stop with this signal.
    Terminated(i32),
    /// The guest used up its CPU time limit (`wasmpod.dev/cpu-time-limit`) of this many
    /// seconds, and was stopped.
    OutOfCpuTime(u64),
}

/// The status a trap is reported with: 134 (SIGABRT's status), never 137, which operators
/// read as "OOM killed".
pub const TRAP_EXIT_CODE: i32 = 134;

/// The status when the guest could not be started at all in the container (its WASI setup
/// failed, or an HTTP service could not listen); the reason is on the container's stderr.
pub const SETUP_FAILED_EXIT_CODE: i32 = 1;

impl GuestOutcome {
    /// The container's exit status for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            GuestOutcome::Exited(code) => *code,
            GuestOutcome::Trapped(_) => TRAP_EXIT_CODE,
            GuestOutcome::Terminated(signal) => 128 + signal,
            // What the kernel's own CPU limit (SIGXCPU) reports.
            GuestOutcome::OutOfCpuTime(_) => 128 + libc::SIGXCPU,
        }
    }

    /// Classifies the error a guest call returned.
    pub fn from_error(err: &wasmtime::Error, terminated_by: Option<i32>) -> GuestOutcome {
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            return GuestOutcome::Exited(exit.0);
        }
        if let Some(signal) = terminated_by {
            return GuestOutcome::Terminated(signal);
        }
        if let Some(trap) = err.downcast_ref::<Trap>() {
            return GuestOutcome::Trapped(format!("{trap}"));
        }
        // Host errors and anything else: the first line of the chain, plus the root cause
        // (the top is often Wasmtime's multi-line "error while executing at wasm backtrace:").
        let first_line = |s: String| s.lines().next().unwrap_or("").trim().to_string();
        let root = first_line(err.root_cause().to_string());
        let top = first_line(err.to_string());
        let reason = match (top.is_empty(), root.is_empty()) {
            (true, true) => "unknown error".to_string(),
            (false, true) => top,
            (true, false) => root,
            (false, false) if top == root => top,
            (false, false) => format!("{}: {root}", top.trim_end_matches(':')),
        };
        if reason.contains("shared memory support is disabled") {
            return GuestOutcome::Trapped(format!(
                "the guest makes a shared memory, which needs the threads proposal turned on \
                 (wasmpod.dev/wasm-features=threads, or the WasmFeatures runtime option): {reason}"
            ));
        }
        GuestOutcome::Trapped(reason)
    }

    /// The line written to the container's stderr for a trap, if any.
    pub fn stderr_line(&self) -> Option<String> {
        match self {
            GuestOutcome::Trapped(reason) => {
                Some(format!("wasmpod: the Wasm guest trapped: {reason}"))
            }
            GuestOutcome::OutOfCpuTime(secs) => Some(format!(
                "wasmpod: the Wasm guest used up its CPU time limit of {secs} s \
                 (wasmpod.dev/cpu-time-limit or the CpuTimeLimitSeconds runtime option) and was \
                 stopped"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(GuestOutcome::Exited(42).exit_code(), 42);
        assert_eq!(GuestOutcome::Trapped("x".into()).exit_code(), 134);
        assert_eq!(GuestOutcome::Terminated(15).exit_code(), 143);
        assert_eq!(GuestOutcome::Terminated(2).exit_code(), 130);
    }

    #[test]
    fn classifies_errors() {
        let exit = wasmtime::Error::new(I32Exit(7));
        assert_eq!(
            GuestOutcome::from_error(&exit, None),
            GuestOutcome::Exited(7)
        );
        // An explicit exit wins over a stop request that raced with it.
        assert_eq!(
            GuestOutcome::from_error(&exit, Some(15)),
            GuestOutcome::Exited(7)
        );
        let trap = wasmtime::Error::new(Trap::UnreachableCodeReached);
        assert_eq!(
            GuestOutcome::from_error(&trap, Some(15)),
            GuestOutcome::Terminated(15)
        );
        match GuestOutcome::from_error(&trap, None) {
            GuestOutcome::Trapped(r) => assert!(r.contains("unreachable"), "{r}"),
            other => panic!("{other:?}"),
        }
        let line = GuestOutcome::Trapped("boom".into()).stderr_line().unwrap();
        assert!(!line.contains('\n'));
        // A host error under Wasmtime's multi-line context keeps its own message.
        let host = wasmtime::Error::msg("unknown import: `a:b/c#d` has not been defined")
            .context("error while executing at wasm backtrace:\n    0: 0x1 - f");
        assert_eq!(
            GuestOutcome::from_error(&host, None),
            GuestOutcome::Trapped(
                "error while executing at wasm backtrace: unknown import: `a:b/c#d` has not \
                 been defined"
                    .into()
            )
        );
    }
}
