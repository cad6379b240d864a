//! containerd's side of the shim binary: the `start` action (find or spawn the serving shim and
//! print its address), the `delete` action (clean up after a shim that died), and the serving
//! daemon (the ttrpc task service, the reaper and the event forwarder).
//!
//! The address is printed as a plain `unix://` path and the task service answers as both
//! `containerd.task.v2.Task` and `containerd.task.v3.Task`, so containerd 1.6, 1.7 and 2.x
//! all talk to it.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim_async::{create_task, Task as TaskApi};
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::protos::ttrpc::r#async::{Server, Service};
use containerd_shim::{ExitSignal, Flags};
use sha2::{Digest, Sha256};
use wasmpod_oci::workload::{load_spec, ANNOTATION_SANDBOX_ID};

use crate::content::ContentStore;
use crate::events::timestamp;
use crate::events::{self, EventSink};
use crate::ops::HostOps;
use crate::reaper::Reaper;
use crate::rootfs;
use crate::sandbox::client::{ChildWait, HelperRunner};
use crate::sandbox::protocol::HelperRequest;
use crate::sandbox::zygote::{self, Zygote};
use crate::service::{TaskService, NO_TASK_AFTER_START};

const TASK_V3: &str = "containerd.task.v3.Task";
const TASK_V2: &str = "containerd.task.v2.Task";

/// Runs the action containerd asked for; returns the process exit code.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    if args
        .iter()
        .skip(1)
        .any(|a| a == "-v" || a == "--version" || a == "-version")
    {
        println!("wasmpod {} (containerd shim v2)", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("wasmpod: {e}");
            return 2;
        }
    };
    if flags.info {
        return print_info();
    }
    // The serving shim forks its zygote now, while it has one thread (see `zygote`).
    let zygote = match (flags.action.as_str(), flags.socket.is_empty()) {
        ("", false) => match zygote::fork(crate::container_setup::respond) {
            Ok(z) => Ok(Some(Arc::new(z))),
            Err(e) => Err(e),
        },
        _ => Ok(None),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasmpod: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = match flags.action.as_str() {
        "start" => rt.block_on(start(&flags)),
        "delete" => rt.block_on(delete(&flags)),
        "" => rt.block_on(serve(&flags, zygote)),
        other => Err(format!("unknown action {other:?}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wasmpod: {e}");
            1
        }
    }
}

fn print_info() -> i32 {
    let mut info = containerd_shim::protos::types::introspection::RuntimeInfo::new();
    info.name = "io.containerd.wasmpod.v1".into();
    match info.write_to_bytes() {
        Ok(bytes) => {
            let _ = std::io::stdout().write_all(&bytes);
            0
        }
        Err(e) => {
            eprintln!("wasmpod: {e}");
            1
        }
    }
}

/// libcontainer's state directory for a containerd (by its address) and namespace.
pub fn state_root(address: &str, namespace: &str) -> PathBuf {
    let hash = hex::encode(Sha256::digest(address.as_bytes()));
    PathBuf::from("/run/wasmpod")
        .join(&hash[..16])
        .join(namespace)
}

fn bundle_dir(flags: &Flags) -> PathBuf {
    if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    } else {
        PathBuf::from(&flags.bundle)
    }
}

/// The key that decides which containers share a shim: the pod under CRI, else the task.
fn grouping(bundle: &Path, id: &str) -> String {
    load_spec(bundle)
        .ok()
        .and_then(|spec| spec.annotations().clone())
        .and_then(|a| a.get(ANNOTATION_SANDBOX_ID).cloned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| id.to_string())
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn is_serving(address: &str) -> bool {
    UnixStream::connect(socket_path(address)).is_ok()
}

/// `start`: reuse the shim serving this grouping, or spawn one; print its address.
async fn start(flags: &Flags) -> Result<(), String> {
    let bundle = bundle_dir(flags);
    let group = grouping(&bundle, &flags.id);
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, &group);
    let mut spawned = None;
    if !is_serving(&address) {
        let mut cmd = Command::new("/proc/self/exe");
        // Keep the name containerd started us under, so `ps` shows which shim this is.
        let argv0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| "containerd-shim-wasmpod-v1".into());
        std::os::unix::process::CommandExt::arg0(&mut cmd, argv0);
        cmd.current_dir(&bundle)
            .args(["-namespace", &flags.namespace, "-id", &flags.id])
            .args(["-address", &flags.address, "-socket", &address])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if flags.debug {
            cmd.arg("-debug");
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| format!("spawn the shim: {e}"))?;
        // The daemon closes its stdout once it listens (or has found another shim serving).
        let mut out = child.stdout.take();
        tokio::task::spawn_blocking(move || {
            if let Some(o) = out.as_mut() {
                let _ = std::io::copy(o, &mut std::io::sink());
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() {
                return Err(format!("the shim daemon exited with {status}"));
            }
        }
        if !is_serving(&address) {
            return Err(format!("the shim daemon does not answer at {address}"));
        }
        spawned = Some(child);
    }
    if let Err(e) = std::fs::write(bundle.join("address"), &address) {
        // containerd gives the task up on this error: a daemon started for it would serve
        // nobody.
        if let Some(mut daemon) = spawned {
            let _ = daemon.kill();
            let _ = daemon.wait();
            let _ = std::fs::remove_file(socket_path(&address));
        }
        return Err(format!("write address: {e}"));
    }
    print!("{address}");
    let _ = std::io::stdout().flush();
    Ok(())
}

/// `delete`: containerd's cleanup after a shim died: kill what is left of the container,
/// remove its cgroup, state, rootfs mount and the dead shim's socket, and report it as
/// killed.
async fn delete(flags: &Flags) -> Result<(), String> {
    let bundle = bundle_dir(flags);
    let root = state_root(&flags.address, &flags.namespace);
    // containerd also runs `delete` after a clean shutdown; then nothing of the container is left.
    if root.join(&flags.id).exists() {
        let helper = HelperRunner::new(ChildWait::Direct);
        let request = HelperRequest::Delete {
            root,
            id: flags.id.clone(),
        };
        if let Err(e) = helper.run(&request).await {
            eprintln!("wasmpod: delete {}: {e}", flags.id);
        }
    }
    rootfs::unmount(&bundle.join("rootfs"));
    // A shim that was killed left its socket behind; nobody else removes it. A socket that
    // still answers is another container's shim (one shim serves a pod): it stays.
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        if !address.is_empty() && !is_serving(&address) {
            let _ = std::fs::remove_file(socket_path(&address));
        }
    }
    let resp = DeleteResponse {
        exit_status: 137,
        exited_at: Some(timestamp(std::time::SystemTime::now())).into(),
        ..Default::default()
    };
    let bytes = resp.write_to_bytes().map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| e.to_string())
}

/// Listens on `address`; `None` when another live shim already does.
fn listen(address: &str) -> Result<Option<UnixListener>, String> {
    let path = Path::new(socket_path(address));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if is_serving(address) {
                return Ok(None);
            }
            let _ = std::fs::remove_file(path);
            UnixListener::bind(path)
                .map(Some)
                .map_err(|e| format!("listen on {address}: {e}"))
        }
        Err(e) => Err(format!("listen on {address}: {e}")),
    }
}

/// Tells `start` that the daemon is ready by closing its stdout.
fn close_stdout() {
    // SAFETY: replaces fd 1 with /dev/null; no Rust object owns fd 1 exclusively.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
}

fn aliased(services: HashMap<String, Service>) -> HashMap<String, Service> {
    services
        .into_iter()
        .map(|(name, svc)| (name.replace(TASK_V3, TASK_V2), svc))
        .collect()
}

/// The serving daemon.
async fn serve(flags: &Flags, zygote: Result<Option<Arc<Zygote>>, String>) -> Result<(), String> {
    if flags.socket.is_empty() {
        return Err("-socket is required".into());
    }
    if let Err(e) = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
    {
        eprintln!("wasmpod: no containerd log pipe ({e}); logging to stderr");
    }
    let zygote = zygote.unwrap_or_else(|e| {
        log::warn!("no zygote ({e}); every container helper will be exec'd");
        None
    });
    let result = serve_tasks(flags, zygote.clone()).await;
    if let Some(zygote) = zygote {
        tokio::task::spawn_blocking(move || zygote.stop())
            .await
            .ok();
    }
    result
}

async fn serve_tasks(flags: &Flags, zygote: Option<Arc<Zygote>>) -> Result<(), String> {
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "become a subreaper: {}",
            std::io::Error::last_os_error()
        ));
    }
    let reaper = Arc::new(Reaper::default());
    reaper.start().map_err(|e| format!("watch SIGCHLD: {e}"))?;
    let Some(listener) = listen(&flags.socket)? else {
        log::info!("another shim serves {}", flags.socket);
        close_stdout();
        return Ok(());
    };
    let ttrpc_address =
        std::env::var("TTRPC_ADDRESS").map_err(|_| "TTRPC_ADDRESS is not set".to_string())?;
    let root = state_root(&flags.address, &flags.namespace);
    std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;

    let (sink, queue) = EventSink::new();
    let forwarder = tokio::spawn(events::forward(
        events::TtrpcPublisher::new(ttrpc_address),
        flags.namespace.clone(),
        events::DeliveryPolicy::default(),
        queue,
    ));
    let exit = Arc::new(ExitSignal::default());
    let tasks = TaskService::new(
        sink,
        reaper.clone(),
        Arc::new(HostOps::new(
            HelperRunner::new(ChildWait::Reaper(reaper)).with_zygote(zygote),
        )),
        root,
        exit.clone(),
        ContentStore::new(&flags.address, &flags.namespace),
    );
    tasks.exit_if_still_idle(NO_TASK_AFTER_START, "no task came after the shim started");
    let service: Arc<dyn TaskApi + Send + Sync> = tasks;
    let listener = Listener::try_from(listener).map_err(|e| format!("ttrpc listener: {e}"))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(create_task(service.clone()))
        .register_service(aliased(create_task(service.clone())));
    drop(service);
    server
        .start()
        .await
        .map_err(|e| format!("start ttrpc: {e}"))?;
    close_stdout();
    log::info!(
        "wasmpod shim serving {} (pid {})",
        flags.socket,
        std::process::id()
    );
    tokio::spawn(ignore_stop_signals());

    exit.wait().await;
    let _ = server.shutdown().await;
    drop(server);
    // Deliver what is queued (TaskDelete of the last task) before exiting.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), forwarder).await;
    let _ = std::fs::remove_file(socket_path(&flags.socket));
    Ok(())
}

/// The shim outlives signals meant for a terminal or a process group; containerd stops it
/// with Shutdown.
async fn ignore_stop_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut pipe)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::pipe()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => log::info!("SIGTERM ignored: containerd stops the shim with Shutdown"),
            _ = int.recv() => log::info!("SIGINT ignored"),
            _ = pipe.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_root_depends_on_address_and_namespace() {
        let a = state_root("/run/containerd/containerd.sock", "default");
        let b = state_root("/tmp/x/containerd.sock", "default");
        assert_ne!(a, b);
        assert!(a.ends_with("default"));
        assert!(a.starts_with("/run/wasmpod"));
    }

    #[test]
    fn grouping_uses_the_sandbox_id() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(grouping(dir.path(), "c1"), "c1");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.sandbox-id":"pod9"}}"#,
        )
        .unwrap();
        assert_eq!(grouping(dir.path(), "c1"), "pod9");
    }
}
