//! The libcontainer [`Executor`] that runs inside the container's init process, after its
//! namespaces, cgroup, rootfs (`pivot_root`), capabilities and seccomp are in place:
//! - `validate` (at create time) compiles the Wasm, so a corrupt module or an unsatisfiable
//!   import fails `Create` with a clear message;
//! - `exec` (at start) runs the guest and ends the process with the guest's exit status.
//!
//! Native payloads are `execve`d, like any container's process.

use std::ffi::CString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use wasmpod_runtime::signals::TerminationWatch;
use wasmpod_runtime::{GuestSetup, Prepared};

use crate::helper::Payload;

/// Empties the capability sets the spec leaves out.
///
/// A pod that drops ALL capabilities reaches us as `"capabilities": {}`: containerd omits the
/// empty sets. runc reads an omitted set as empty; libcontainer leaves it as it was (full,
/// for a root parent). A native program loses them anyway at `execve` when it runs as a
/// non-root user, but a Wasm guest runs without an `execve`, so it would keep every
/// capability the shim had. Bounding is always applied by libcontainer.
fn clear_omitted_capabilities(spec: &Spec) -> Result<(), ExecutorError> {
    let Some(caps) = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    else {
        return Ok(());
    };
    // Effective before permitted: effective must stay a subset of permitted.
    let omitted = [
        (caps::CapSet::Ambient, caps.ambient().is_none()),
        (caps::CapSet::Inheritable, caps.inheritable().is_none()),
        (caps::CapSet::Effective, caps.effective().is_none()),
        (caps::CapSet::Permitted, caps.permitted().is_none()),
    ];
    for (set, is_omitted) in omitted {
        if is_omitted {
            caps::clear(None, set).map_err(|e| {
                ExecutorError::Other(format!("cannot clear the {set:?} capabilities: {e}"))
            })?;
        }
    }
    Ok(())
}

/// Confines a Wasm guest with the container's AppArmor profile now.
///
/// libcontainer asks AppArmor to switch profiles at the next `execve` (`exec PROFILE`), which
/// a Wasm guest never makes, so it would run unconfined. Switching at once
/// (`changeprofile PROFILE`) gives it the profile a native process would get. A profile that
/// cannot be applied fails the start rather than running the guest unconfined.
fn apply_apparmor_profile_now(spec: &Spec) -> Result<(), ExecutorError> {
    let Some(profile) = spec
        .process()
        .as_ref()
        .and_then(|p| p.apparmor_profile().as_deref())
        .filter(|p| !p.is_empty())
    else {
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
    watch: TerminationWatch,
}

/// Runs the container's payload.
#[derive(Clone)]
pub struct WasmpodExecutor {
    entrypoint: PathBuf,
    payload: Payload,
    /// Compiled and linked by the helper before the container process was cloned from it.
    prepared: Arc<Mutex<Option<Prepared>>>,
    /// Filled by `validate`, taken by `exec`; both run in the init process, one after the other.
    compiled: Arc<Mutex<Option<Compiled>>>,
}

impl WasmpodExecutor {
    /// An executor for `entrypoint` (a path inside the container), with the Wasm payload
    /// already prepared (`None`: compile it from `entrypoint` in the container).
    pub fn new(
        entrypoint: PathBuf,
        payload: Payload,
        prepared: Option<Prepared>,
    ) -> WasmpodExecutor {
        WasmpodExecutor {
            entrypoint,
            payload,
            prepared: Arc::new(Mutex::new(prepared)),
            compiled: Arc::new(Mutex::new(None)),
        }
    }
}

impl WasmpodExecutor {
    /// The shim resolved the program already (with the container's `PATH` and cwd); check
    /// that it is still there and executable now that the rootfs is `/`.
    fn validate_native(&self) -> Result<(), ExecutorValidationError> {
        nix::unistd::access(&self.entrypoint, nix::unistd::AccessFlags::X_OK).map_err(|e| {
            ExecutorValidationError::ArgValidationError(format!(
                "{} is not executable: {e}",
                self.entrypoint.display()
            ))
        })
    }

    /// `execve` of the resolved program with the container's arguments and environment.
    fn exec_native(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        let to_c = |s: &str| {
            CString::new(s).map_err(|_| ExecutorError::Other(format!("NUL byte in {s:?}")))
        };
        let path = to_c(&self.entrypoint.to_string_lossy())?;
        let argv = args
            .iter()
            .map(|a| to_c(a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = std::env::vars()
            .map(|(k, v)| to_c(&format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
        Err(ExecutorError::Other(format!(
            "exec {}: {err}",
            self.entrypoint.display()
        )))
    }
}

impl Executor for WasmpodExecutor {
    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        let kind = match self.payload {
            Payload::Native => return self.validate_native(),
            Payload::Wasm(kind) => kind,
        };
        let watch = TerminationWatch::install().map_err(|e| {
            ExecutorValidationError::ArgValidationError(format!(
                "cannot watch for stop signals: {e}"
            ))
        })?;
        let ready = self.prepared.lock().ok().and_then(|mut p| p.take());
        let prepared = match ready {
            Some(p) => p,
            None => Prepared::from_file(&self.entrypoint, kind).map_err(|e| {
                ExecutorValidationError::ArgValidationError(format!(
                    "{}: {e}",
                    self.entrypoint.display()
                ))
            })?,
        };
        if let Ok(mut slot) = self.compiled.lock() {
            *slot = Some(Compiled { prepared, watch });
        }
        Ok(())
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        clear_omitted_capabilities(spec)?;
        if self.payload == Payload::Native {
            return self.exec_native(spec);
        }
        apply_apparmor_profile_now(spec)?;
        let compiled = self
            .compiled
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .ok_or_else(|| ExecutorError::Other("the Wasm guest was not prepared".into()))?;
        let process = spec.process().as_ref();
        let args = process.and_then(|p| p.args().clone()).unwrap_or_default();
        // setup_envs has put the container's environment into this process.
        let env: Vec<(String, String)> = std::env::vars().collect();
        let cwd = process
            .map(|p| p.cwd().to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into());
        let mut setup = GuestSetup::for_container(args, env, cwd);
        setup.memory_limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|l| *l > 0)
            .map(|l| l as u64);
        // What execve would do: close-on-exec descriptors (libcontainer's sockets and pipes,
        // one of which tells `exec` callers that the process has started) go away now.
        close_cloexec_fds();
        let code = match compiled.prepared.run(&setup, &compiled.watch) {
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
