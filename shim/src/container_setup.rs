//! The container helper: does one [`HelperRequest`] with libcontainer and writes a
//! [`HelperResponse`] to stdout. It runs in a single-threaded process, the only kind in which
//! libcontainer may fork: a worker forked by the shim's zygote, or (for the `delete` action,
//! and when there is no zygote) a freshly exec'd copy of the binary reading stdin.

use std::cell::Cell;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;

use wasmpod_oci::settings::WasmFeatures;
use wasmpod_oci::spin::SpinApp;
use wasmpod_oci::{Program, WasmKind};
use wasmpod_runtime::cache::CompileCache;
use wasmpod_runtime::Prepared;

use crate::compile_cgroup::CompileCgroup;
use crate::compile_cmd::{compile_in_child, CompileBudget, CompileRequest};
use crate::executor::WasmpodExecutor;
use crate::sandbox::protocol::{HelperRequest, HelperResponse, Launch, WARNING_PREFIX};
use crate::sandbox::requester;

/// Entry point of helper mode (an exec'd helper): the request comes on stdin; never returns.
pub fn main() -> ! {
    let mut input = Vec::new();
    match std::io::stdin().read_to_end(&mut input) {
        Ok(_) => respond(&input),
        Err(e) => reply(HelperResponse::Error {
            message: format!("read request: {e}"),
        }),
    }
}

/// Does one request (JSON) and writes the response to stdout; never returns. Both helper
/// kinds end here: an exec'd helper and a zygote's worker (see `zygote`).
pub fn respond(input: &[u8]) -> ! {
    let response = match serde_json::from_slice::<HelperRequest>(input) {
        Err(e) => HelperResponse::Error {
            message: format!("bad request: {e}"),
        },
        Ok(request) => match handle(request) {
            Ok(pid) => HelperResponse::Ok { pid },
            Err(message) => HelperResponse::Error { message },
        },
    };
    reply(response)
}

fn reply(response: HelperResponse) -> ! {
    let out = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    std::process::exit(0)
}

fn handle(request: HelperRequest) -> Result<Option<i32>, String> {
    match request {
        HelperRequest::Create {
            root,
            id,
            bundle,
            launch,
            systemd_cgroup,
        } => {
            let cgroup = launch
                .cache
                .compile_in_container
                .then(|| create_cgroup(&bundle, systemd_cgroup))
                .flatten();
            let made = builder(id, &root, launch, cgroup.as_ref()).and_then(|b| {
                b.as_init(&bundle)
                    .with_systemd(systemd_cgroup)
                    .with_detach(true)
                    .build()
                    .map_err(|e| chain(&e))
            });
            match made {
                Ok(container) => Ok(container.pid().map(|p| p.as_raw())),
                Err(e) => {
                    if let Some(cgroup) = &cgroup {
                        cgroup.remove_if_made();
                    }
                    Err(e)
                }
            }
        }
        HelperRequest::Exec {
            root,
            id,
            process,
            launch,
        } => {
            let cgroup =
                mark_running(&root.join(&id))?.filter(|_| launch.cache.compile_in_container);
            let pid = builder(id, &root, launch, cgroup.as_ref())?
                .as_tenant()
                .with_process(Some(&process))
                .with_detach(true)
                .build()
                .map_err(|e| chain(&e))?;
            Ok(Some(pid.as_raw()))
        }
        HelperRequest::Start { root, id } => {
            let mut container = Container::load(root.join(&id)).map_err(|e| chain(&e))?;
            container.start().map_err(|e| chain(&e))?;
            Ok(None)
        }
        HelperRequest::Delete { root, id } => {
            let dir = root.join(&id);
            if !dir.exists() {
                return Ok(None);
            }
            let mut container = Container::load(dir).map_err(|e| chain(&e))?;
            container.delete(true).map_err(|e| chain(&e))?;
            Ok(None)
        }
    }
}

/// Loads a Wasm program's compiled code (compiling it into the node's cache first, in a
/// child process, when needed) and links it, before the container process is cloned from
/// this one: the container maps the cached code instead of compiling it.
///
/// A cache that cannot be used (its directory read-only, full, or not a directory) does not
/// stop the container: the code is compiled into a scratch cache of this container's own
/// under `/run/wasmpod`, mapped, and the scratch files removed at once, with a warning in the
/// shim's log naming the cache's error.
///
/// Compiles run in the container's cgroup (`cgroup`), within the compile time limit.
fn prepare(launch: &Launch, cgroup: Option<&CompileCgroup>) -> Result<Option<Prepared>, String> {
    if matches!(launch.workload.program, Program::Native { .. }) {
        return Ok(None);
    }
    let stopped = Cell::new(false);
    let budget = CompileBudget {
        cgroup,
        timeout: launch.cache.compile_timeout(),
        stopped: &stopped,
    };
    let node_cache = (launch.cache.dir.as_path(), launch.cache.max_bytes);
    let cache_error = match prepare_with(launch, node_cache, budget) {
        Ok(prepared) => return Ok(Some(prepared)),
        Err(e) => e,
    };
    // Only a cache at fault is worth a second compile: not a compile that was stopped.
    if stopped.get() || requester::gone() {
        return Err(cache_error);
    }
    let scratch = scratch_dir();
    let prepared = prepare_with(launch, (&scratch, u64::MAX), budget);
    let _ = std::fs::remove_dir_all(&scratch);
    match prepared {
        Ok(prepared) => {
            eprintln!(
                "{WARNING_PREFIX}the compile cache {} cannot be used ({cache_error}); compiled for \
                 this container only",
                launch.cache.dir.display()
            );
            Ok(Some(prepared))
        }
        // The same failure without the node's cache (invalid Wasm, say): its first message.
        Err(_) => Err(cache_error),
    }
}

/// A directory of this process's own for a scratch compile cache.
fn scratch_dir() -> PathBuf {
    PathBuf::from(format!("/run/wasmpod/scratch-cache-{}", std::process::id()))
}

/// [`prepare`] through the compile cache at `dir` (bounded to `max_bytes`).
fn prepare_with(
    launch: &Launch,
    (dir, max_bytes): (&Path, u64),
    budget: CompileBudget<'_>,
) -> Result<Prepared, String> {
    let cache = CompileCache::open(dir, max_bytes).map_err(|e| e.to_string())?;
    let features = &launch.workload.settings.wasm_features;
    let request = |wasm: &Path, kind, spin| CompileRequest {
        cache_dir: dir.to_path_buf(),
        cache_max_bytes: max_bytes,
        wasm: wasm.to_path_buf(),
        kind,
        spin,
        features: features.clone(),
    };
    match &launch.workload.program {
        Program::Spin(app) => prepare_spin(app, &cache, features, request, budget),
        Program::Wasm {
            kind, host_path, ..
        } => {
            let shown = host_path.display().to_string();
            let bytes = std::fs::read(host_path).map_err(|e| format!("read {shown}: {e}"))?;
            Prepared::from_cache(&cache, &bytes, *kind, features, || {
                compile_in_child(&request(host_path, *kind, false), budget)
            })
            .map_err(|e| e.to_string())
        }
        Program::Native { .. } => Err("a native program has no Wasm to prepare".into()),
    }
}

/// [`prepare_with`] for a Spin app: each component compiled (componentized first if it is a
/// core module) through the cache, in a child process when needed, then the app linked.
fn prepare_spin(
    app: &SpinApp,
    cache: &CompileCache,
    features: &WasmFeatures,
    request: impl Fn(&Path, WasmKind, bool) -> CompileRequest,
    budget: CompileBudget<'_>,
) -> Result<Prepared, String> {
    Prepared::spin(app.clone(), cache, features, |component| {
        compile_in_child(&request(&component.host_path, component.kind, true), budget).map_err(
            |e| wasmpod_runtime::RuntimeError::SpinApp {
                app: app.name.clone(),
                reason: format!("component {}: {e}", component.id),
            },
        )
    })
    .map_err(|e| e.to_string())
}

/// A builder for a process running `launch`: its executor (with the Wasm prepared) and its
/// stdio (containerd's FIFOs, or a terminal sent to the console socket).
fn builder(
    id: String,
    root: &Path,
    launch: Launch,
    cgroup: Option<&CompileCgroup>,
) -> Result<ContainerBuilder, String> {
    let prepared = prepare(&launch, cgroup)?;
    // A shim that gave the request up while the Wasm compiled gets no container; one that
    // gives it up from here on gets the container in the answer, and removes it.
    if requester::gone() {
        return Err(requester::Gone.to_string());
    }
    requester::release();
    let Launch {
        workload,
        stdin,
        stdout,
        stderr,
        console_socket,
        ..
    } = launch;
    let executor = WasmpodExecutor::new(workload, prepared);
    let builder = ContainerBuilder::new(id, SyscallType::default())
        .with_executor(executor)
        .with_root_path(root)
        .map_err(|e| chain(&e))?;
    if let Some(socket) = console_socket {
        return Ok(builder.with_console_socket(Some(socket)));
    }
    Ok(builder
        .with_stdin(open_stdin(&stdin)?)
        .with_stdout(open_output(&stdout)?)
        .with_stderr(open_output(&stderr)?))
}

/// The shim starts containers through the notify socket, so libcontainer's record may still
/// say `Created`; the shim only asks for an exec when its own state says the task runs.
/// Returns the container's cgroup, for compiles of the exec'd process.
fn mark_running(container_dir: &Path) -> Result<Option<CompileCgroup>, String> {
    let mut container = Container::load(container_dir.to_path_buf()).map_err(|e| chain(&e))?;
    if container.status() == ContainerStatus::Created {
        container
            .set_status(ContainerStatus::Running)
            .save()
            .map_err(|e| chain(&e))?;
    }
    let systemd = container.systemd();
    Ok(container
        .spec()
        .ok()
        .and_then(|config| CompileCgroup::for_exec(&config.cgroup_path.to_string_lossy(), systemd)))
}

/// The cgroup of the container the bundle's `config.json` describes, for its compiles.
fn create_cgroup(bundle: &Path, systemd: bool) -> Option<CompileCgroup> {
    let spec = Spec::load(bundle.join("config.json")).ok()?;
    let linux = spec.linux().as_ref()?;
    let path = linux
        .cgroups_path()
        .as_ref()?
        .to_string_lossy()
        .into_owned();
    CompileCgroup::for_create(Some(&path), systemd, linux.resources().clone())
}

/// The container's stdin: containerd's FIFO, opened without waiting for a writer, or
/// `/dev/null`.
fn open_stdin(path: &str) -> Result<OwnedFd, String> {
    if path.is_empty() {
        return dev_null();
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("open stdin {path}: {e}"))?;
    clear_nonblock(&file).map_err(|e| format!("stdin {path}: {e}"))?;
    Ok(file.into())
}

/// stdout or stderr: a FIFO is opened read-write, so that a guest keeps writing while
/// containerd's reader is away (a containerd restart), once that reader is there (see
/// [`wait_for_reader`]); a file is appended to; no path means `/dev/null`.
fn open_output(path: &str) -> Result<OwnedFd, String> {
    if path.is_empty() {
        return dev_null();
    }
    let is_fifo = std::fs::metadata(path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    let mut opts = OpenOptions::new();
    let _probe = if is_fifo {
        opts.read(true).write(true);
        wait_for_reader(Path::new(path), READER_WAIT)
    } else {
        opts.append(true).create(true);
        None
    };
    let file = opts
        .open(path)
        .map_err(|e| format!("open output {path}: {e}"))?;
    Ok(file.into())
}

/// How long a FIFO's reader is waited for before the guest is started without one.
const READER_WAIT: Duration = Duration::from_secs(10);

/// Waits until the FIFO at `path` has a reader and returns a write end that holds it open.
///
/// containerd (or `ctr`, or dockerd) opens its reader on its own schedule, sometimes after the
/// task has started. A FIFO's buffer lives only while one of its ends is open: a guest that
/// wrote and exited before the reader came would lose what it wrote. Waiting here makes the
/// reader be there first. `None` when no reader came within `limit` (or the requester left).
fn wait_for_reader(path: &Path, limit: Duration) -> Option<std::fs::File> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => return Some(file),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
            Err(_) => return None,
        }
        if start.elapsed() >= limit || requester::gone() {
            eprintln!(
                "{WARNING_PREFIX}no reader opened {} within {:?}; output written before one \
                 opens may be lost",
                path.display(),
                start.elapsed()
            );
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn dev_null() -> Result<OwnedFd, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new("/dev/null"))
        .map(Into::into)
        .map_err(|e| format!("open /dev/null: {e}"))
}

fn clear_nonblock(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An error and its sources on one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(dir: &Path) -> PathBuf {
        let path = dir.join("stdout");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        path
    }

    #[test]
    fn output_written_before_the_reader_opens_reaches_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fifo(dir.path());
        let reader_path = path.clone();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_to_string(reader_path).expect("read fifo")
        });
        let out = open_output(path.to_str().expect("utf-8 path")).expect("open output");
        let mut out = std::fs::File::from(out);
        out.write_all(b"hello\n").expect("write");
        drop(out);
        assert_eq!(reader.join().expect("reader thread"), "hello\n");
    }

    #[test]
    fn a_fifo_nobody_reads_is_given_up_after_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fifo(dir.path());
        assert!(wait_for_reader(&path, Duration::from_millis(30)).is_none());
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .expect("open reader");
        assert!(wait_for_reader(&path, Duration::from_millis(30)).is_some());
    }
}
