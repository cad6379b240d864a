//! Compile mode (`<exe> __wasmpod-compile`): compiles one Wasm file into the node's compile
//! cache and exits. The container helper runs it when the cache has no entry, so that the
//! helper itself stays single-threaded (Cranelift compiles on many threads) until it has
//! created the container, and the container process then maps the cached code.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmpod_oci::settings::WasmFeatures;
use wasmpod_oci::WasmKind;
use wasmpod_runtime::cache::CompileCache;
use wasmpod_runtime::run::compile_spin_component;
use wasmpod_runtime::{engine, RuntimeError};

use crate::compile_cgroup::CompileCgroup;
use crate::sandbox::client::self_command;
use crate::sandbox::protocol::{HelperResponse, COMPILE_ARG};
use crate::sandbox::requester::{self, Stopped};

/// What to compile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompileRequest {
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// The cache's size bound.
    pub cache_max_bytes: u64,
    /// The Wasm file.
    pub wasm: PathBuf,
    /// Module or component.
    pub kind: WasmKind,
    /// Whether it is a Spin component (a core module is componentized first).
    #[serde(default)]
    pub spin: bool,
    /// The Wasm proposals turned on or off for it.
    #[serde(default)]
    pub features: WasmFeatures,
}

/// Entry point of compile mode; never returns.
pub fn main() -> ! {
    let mut input = String::new();
    let result = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("read request: {e}"))
        .and_then(|_| {
            serde_json::from_str::<CompileRequest>(&input).map_err(|e| format!("bad request: {e}"))
        })
        .and_then(|req| compile(&req).map_err(|e| e.to_string()));
    let response = match result {
        Ok(()) => HelperResponse::Ok { pid: None },
        Err(message) => HelperResponse::Error { message },
    };
    let out = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
    let _ = std::io::stdout().write_all(out.as_bytes());
    std::process::exit(0)
}

fn compile(req: &CompileRequest) -> Result<(), RuntimeError> {
    let bytes = std::fs::read(&req.wasm).map_err(|source| RuntimeError::Read {
        path: req.wasm.display().to_string(),
        source,
    })?;
    let cache = CompileCache::open(&req.cache_dir, req.cache_max_bytes)?;
    let engine = engine::new_engine(&req.features)?;
    if req.spin {
        return compile_spin_component(&cache, &engine, &bytes, req.kind);
    }
    let key = CompileCache::key(&engine, &bytes, req.kind);
    cache.compile(&engine, &bytes, req.kind, &key)
}

/// What one compile may take: the cgroup it is charged to, and how long it may run.
#[derive(Clone, Copy)]
pub struct CompileBudget<'a> {
    /// The container's cgroup (none: the shim's, see `compile_cgroup`).
    pub cgroup: Option<&'a CompileCgroup>,
    /// How long one compile may take (the `CompileTimeoutSeconds` option).
    pub timeout: Duration,
    /// Set when a compile was stopped (out of time, killed, given up) rather than failing on
    /// its own: compiling it again elsewhere would only fail the same way.
    pub stopped: &'a Cell<bool>,
}

/// Runs compile mode as a child process and waits for it (for the helper, which has no
/// other children running and may wait directly). The child is moved into the container's
/// cgroup before it is given its request, so that its memory and CPU count against the
/// container's limits; it is killed when it runs out of time; it dies with the helper, and is
/// killed when the shim gives the request up (see `sandbox::requester`).
pub fn compile_in_child(
    req: &CompileRequest,
    budget: CompileBudget<'_>,
) -> Result<(), RuntimeError> {
    let input = serde_json::to_vec(req).map_err(|e| RuntimeError::Cache(e.to_string()))?;
    let mut command = self_command(Path::new("/proc/self/exe"), "wasmpod-compile", COMPILE_ARG);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: prctl with constant arguments, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    let deadline = Instant::now() + budget.timeout;
    let mut child = command
        .spawn()
        .map_err(|e| RuntimeError::Cache(format!("start the compiler: {e}")))?;
    // Stops the compile: compiling it again elsewhere would fail the same way.
    let stop = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
        budget.stopped.set(true);
    };
    // The child waits for its request on stdin, so it compiles nothing before it is in the
    // container's cgroup.
    if let Some(cgroup) = budget.cgroup {
        if let Err(e) = i32::try_from(child.id())
            .map_err(|e| e.to_string())
            .and_then(|pid| cgroup.join(pid))
        {
            stop(&mut child);
            return Err(RuntimeError::Cache(format!(
                "move the compile into the container's cgroup: {e}"
            )));
        }
    }
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input);
    }
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        match requester::read_to_end_unless_gone(&mut stdout, &mut out, deadline) {
            Ok(()) => {}
            Err(Stopped::Gone) => {
                stop(&mut child);
                return Err(RuntimeError::Cache(format!(
                    "compile stopped: {}",
                    requester::Gone
                )));
            }
            Err(Stopped::OutOfTime) => {
                stop(&mut child);
                return Err(RuntimeError::Cache(format!(
                    "compiling {} took longer than {} s, the compile time limit \
                     (CompileTimeoutSeconds in the runtime options)",
                    req.wasm.display(),
                    budget.timeout.as_secs()
                )));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| RuntimeError::Cache(format!("wait for the compiler: {e}")))?;
    match serde_json::from_slice::<HelperResponse>(&out) {
        Ok(HelperResponse::Ok { .. }) => Ok(()),
        Ok(HelperResponse::Error { message }) => Err(RuntimeError::Cache(message)),
        Err(_) => {
            budget.stopped.set(status.signal().is_some());
            Err(RuntimeError::Cache(died(
                status,
                budget.cgroup.and_then(|c| c.memory_limit()),
            )))
        }
    }
}

/// Why a compiler that gave no answer ended, as the user is told.
/// `memory_limit` is the limit of the cgroup it ran in.
fn died(status: std::process::ExitStatus, memory_limit: Option<u64>) -> String {
    match (status.signal(), memory_limit) {
        (Some(libc::SIGKILL), Some(limit)) => format!(
            "the compiler was killed ({status}), most likely for going past the container's \
             memory limit of {} MiB: compiling this Wasm needs more memory than that",
            limit >> 20
        ),
        _ => format!("the compiler failed ({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiler_killed_under_a_memory_limit_is_reported_as_such() {
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        let message = died(killed, Some(32 << 20));
        assert!(message.contains("memory limit of 32 MiB"), "{message}");
        assert!(died(killed, None).starts_with("the compiler failed"));
        let crashed = std::process::ExitStatus::from_raw(libc::SIGSEGV);
        assert!(died(crashed, Some(32 << 20)).starts_with("the compiler failed"));
    }
}
