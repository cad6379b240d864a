//! The libcontainer [`Executor`] that runs inside the container's init process, after its
//! namespaces, cgroup, rootfs (`pivot_root`), capabilities and seccomp are in place:
//! - `validate` (at create time) compiles the Wasm, so a corrupt module or an unsatisfiable
//!   import fails `Create` with a clear message;
//! - `exec` (at start) runs the guest and ends the process with the guest's exit status.
//!
//! Native programs are `execve`d, like any container's process.

use std::ffi::CString;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use wasmpod_oci::workload::{CapabilitySet, Confinement};
use wasmpod_oci::{Program, Workload};
use wasmpod_runtime::signals::{StopSignalsBlocked, TerminationWatch};
use wasmpod_runtime::{GuestSetup, Prepared};

/// Empties the capability sets the spec leaves out.
///
/// A pod that drops ALL capabilities reaches us as `"capabilities": {}`: containerd omits the
/// empty sets. runc reads an omitted set as empty; libcontainer leaves it as it was (full,
/// for a root parent). A native program loses them anyway at `execve` when it runs as a
/// non-root user, but a Wasm guest runs without an `execve`, so it would keep every
/// capability the shim had. Bounding is always applied by libcontainer.
fn clear_omitted_capabilities(confinement: &Confinement) -> Result<(), ExecutorError> {
    for set in &confinement.omitted_capability_sets {
        let caps_set = match set {
            CapabilitySet::Ambient => caps::CapSet::Ambient,
            CapabilitySet::Inheritable => caps::CapSet::Inheritable,
            CapabilitySet::Effective => caps::CapSet::Effective,
            CapabilitySet::Permitted => caps::CapSet::Permitted,
        };
        caps::clear(None, caps_set).map_err(|e| {
            ExecutorError::Other(format!("cannot clear the {set:?} capabilities: {e}"))
        })?;
    }
    Ok(())
}

/// Confines a Wasm guest with the container's AppArmor profile now.
///
/// libcontainer asks AppArmor to switch profiles at the next `execve` (`exec PROFILE`), which
/// a Wasm guest never makes, so it would run unconfined. Switching at once
/// (`changeprofile PROFILE`) gives it the profile a native process would get. A profile that
/// cannot be applied fails the start rather than running the guest unconfined.
fn apply_apparmor_profile_now(confinement: &Confinement) -> Result<(), ExecutorError> {
    let Some(profile) = confinement.apparmor_profile.as_deref() else {
        return Ok(());
    };
    if !libcontainer::apparmor::is_enabled().unwrap_or(false) {
        return Ok(());
    }
    let request = format!("changeprofile {profile}");
    let mut last_error = None;
    for attr in [
        "/proc/self/attr/apparmor/current",
        "/proc/self/attr/current",
    ] {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(attr)
            .and_then(|mut f| f.write_all(request.as_bytes()));
        match written {
            Ok(()) => return Ok(()),
            Err(e) => last_error = Some(format!("{attr}: {e}")),
        }
    }
    Err(ExecutorError::Other(format!(
        "cannot confine the Wasm guest with AppArmor profile {profile:?}: {}",
        last_error.unwrap_or_default()
    )))
}

/// State carried from `validate` to `exec` inside the init process.
struct Compiled {
    prepared: Prepared,
    /// The watcher thread starts in `exec`, once the process's privileges are final.
    signals: StopSignalsBlocked,
}

/// Runs the container's workload. Everything it runs with comes from the [`Workload`] the
/// shim located; libcontainer's `Spec` is not read here.
#[derive(Clone)]
pub struct WasmpodExecutor {
    workload: Arc<Workload>,
    /// Compiled and linked by the helper before the container process was cloned from it.
    prepared: Arc<Mutex<Option<Prepared>>>,
    /// Filled by `validate`, taken by `exec`; both run in the init process, one after the other.
    compiled: Arc<Mutex<Option<Compiled>>>,
}

impl WasmpodExecutor {
    /// An executor for `workload`, with its Wasm already prepared (`None`: compile it from
    /// the program's path in the container).
    pub fn new(workload: Workload, prepared: Option<Prepared>) -> WasmpodExecutor {
        WasmpodExecutor {
            workload: Arc::new(workload),
            prepared: Arc::new(Mutex::new(prepared)),
            compiled: Arc::new(Mutex::new(None)),
        }
    }

    /// The shim resolved the program already (with the container's `PATH` and cwd); check
    /// that it is still there and executable now that the rootfs is `/`.
    fn validate_native(path: &Path) -> Result<(), ExecutorValidationError> {
        nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).map_err(|e| {
            ExecutorValidationError::ArgValidationError(format!(
                "{} is not executable: {e}",
                path.display()
            ))
        })
    }

    /// `execve` of the resolved program with the workload's arguments and the process's
    /// environment.
    fn exec_native(&self, path: &Path) -> Result<(), ExecutorError> {
        let to_c = |s: &str| {
            CString::new(s).map_err(|_| ExecutorError::Other(format!("NUL byte in {s:?}")))
        };
        let program = to_c(&path.to_string_lossy())?;
        let argv = self
            .workload
            .args
            .iter()
            .map(|a| to_c(a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = process_env()
            .iter()
            .map(|(k, v)| to_c(&format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        let err = nix::unistd::execve(&program, &argv, &envp).unwrap_err();
        Err(ExecutorError::Other(format!(
            "exec {}: {err}",
            path.display()
        )))
    }
}

impl Executor for WasmpodExecutor {
    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        let wasm = match &self.workload.program {
            Program::Native { path, .. } => return Self::validate_native(path),
            Program::Wasm { kind, path, .. } => Some((*kind, path)),
            Program::Spin(_) => None,
        };
        // Handlers and the signal mask now, so a stop signal before Start is kept pending;
        // no thread yet: it would keep the capabilities `exec` clears.
        let signals = TerminationWatch::block().map_err(|e| {
            ExecutorValidationError::ArgValidationError(format!(
                "cannot watch for stop signals: {e}"
            ))
        })?;
        let ready = self.prepared.lock().ok().and_then(|mut p| p.take());
        let mut prepared = match (ready, wasm) {
            (Some(p), _) => p,
            (None, Some((kind, path))) => Prepared::from_file(
                path,
                kind,
                &self.workload.settings.wasm_features,
            )
            .map_err(|e| {
                ExecutorValidationError::ArgValidationError(format!("{}: {e}", path.display()))
            })?,
            (None, None) => {
                return Err(ExecutorValidationError::ArgValidationError(
                    "the Spin app was not prepared".into(),
                ))
            }
        };
        // What depends on the container's files and environment (a Spin app's runtime
        // config and variables) is checked now, so that it fails Create.
        prepared
            .check(&GuestSetup::for_workload(&self.workload))
            .map_err(|e| ExecutorValidationError::ArgValidationError(e.to_string()))?;
        if let Ok(mut slot) = self.compiled.lock() {
            *slot = Some(Compiled { prepared, signals });
        }
        Ok(())
    }

    fn exec(&self, _spec: &Spec) -> Result<(), ExecutorError> {
        let confinement = &self.workload.confinement;
        clear_omitted_capabilities(confinement)?;
        if let Program::Native { path, .. } = &self.workload.program {
            return self.exec_native(path);
        }
        apply_apparmor_profile_now(confinement)?;
        let compiled = self
            .compiled
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .ok_or_else(|| ExecutorError::Other("the Wasm guest was not prepared".into()))?;
        // Capabilities, no_new_privs, seccomp and AppArmor are all applied to this thread now:
        // threads started from here on inherit them.
        let watch = compiled
            .signals
            .start_watcher()
            .map_err(|e| ExecutorError::Other(format!("cannot watch for stop signals: {e}")))?;
        let setup = GuestSetup::for_workload(&Workload {
            env: process_env(),
            ..(*self.workload).clone()
        });
        // What execve would do: close-on-exec descriptors (libcontainer's sockets and pipes,
        // one of which tells `exec` callers that the process has started) go away now.
        close_cloexec_fds();
        let code = match compiled.prepared.run(&setup, &watch) {
            Ok(outcome) => {
                if let Some(line) = outcome.stderr_line() {
                    eprintln!("{line}");
                }
                outcome.exit_code()
            }
            // The guest never ran (its WASI setup or HTTP listener failed): a plain failure.
            Err(e) => {
                eprintln!("wasmpod: {e}");
                wasmpod_runtime::outcome::SETUP_FAILED_EXIT_CODE
            }
        };
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(code)
    }
}

/// The environment libcontainer gave this process: the workload's, plus `HOME` when it had
/// none (as runc does).
fn process_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

/// Closes every pipe and socket above stderr that has `FD_CLOEXEC` set: libcontainer's
/// channels. Regular files stay open: the compiled code mapped from the cache holds one.
fn close_cloexec_fds() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl/close on descriptors of this process; the read_dir handle is closed.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            let mut st: libc::stat = std::mem::zeroed();
            if flags < 0 || flags & libc::FD_CLOEXEC == 0 || libc::fstat(fd, &mut st) != 0 {
                continue;
            }
            let kind = st.st_mode & libc::S_IFMT;
            if kind == libc::S_IFIFO || kind == libc::S_IFSOCK {
                libc::close(fd);
            }
        }
    }
}
