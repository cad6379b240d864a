//! The containerd task service (ttrpc `containerd.task.v2.Task`, also served as `v3`). Each
//! handler looks the task up, checks its lifecycle, delegates (to the container helper, the
//! reaper or the cgroup), maps errors and queues events. The `task_*` methods take no ttrpc
//! context so they can be called directly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim::protos::api::{
    self, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, KillRequest, PidsRequest, PidsResponse, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, WaitRequest,
    WaitResponse,
};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskIO, TaskOOM, TaskPaused, TaskResumed,
};
use containerd_shim::protos::shim_async::Task as TaskApi;
use containerd_shim::protos::topics::{
    TASK_CREATE_EVENT_TOPIC, TASK_DELETE_EVENT_TOPIC, TASK_EXEC_ADDED_EVENT_TOPIC,
    TASK_OOM_EVENT_TOPIC, TASK_PAUSED_EVENT_TOPIC, TASK_RESUMED_EVENT_TOPIC,
};
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::Result as TtrpcResult;
use containerd_shim::protos::types::task::Status;
use containerd_shim::ExitSignal;
use libcontainer::oci_spec;
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;
use wasmpod_oci::locate::{locate, locate_exec, Located};
use wasmpod_oci::{Program, Workload, WorkloadSpec};

use crate::cgroup::{self, CgroupDriver, ContainerCgroup};
use crate::content::{ContentStore, LayerLookup};
use crate::error::{ShimError, ShimResult};
use crate::events::timestamp;
use crate::events::EventSink;
use crate::lifecycle::Lifecycle;
use crate::oom;
use crate::ops::ContainerOps;
use crate::options::RuntimeOptions;
use crate::reaper::Reaper;
use crate::sandbox::protocol::{CacheConfig, HelperRequest, Launch, DEFAULT_COMPILE_TIMEOUT_SECS};
use crate::task::{Process, Stdio, Task, TaskConfig};
use crate::tty::{Console, ConsoleSocket};

/// How long an init's exit waits for its exec'd processes' exits to be published first.
const EXEC_DRAIN: Duration = Duration::from_secs(2);

/// How long Kill waits for a Start in progress.
const START_WAIT: Duration = Duration::from_secs(5);

/// How long Delete waits for a created-but-never-started init to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A Create in progress, as a Delete of the same id finds it.
#[derive(Clone)]
struct InFlight {
    /// Cancelled to give the Create up (it stops its compile and removes what it made).
    give_up: CancellationToken,
    /// Cancelled once the Create has ended (succeeded, failed, or rolled back).
    done: CancellationToken,
}

/// How long a shim that serves nothing after a given-up Create waits for new work before it
/// exits on its own (containerd, stopping, may never send the Shutdown it would otherwise).
const IDLE_AFTER_GIVE_UP: Duration = Duration::from_secs(1);

/// How long after it starts a shim that serves no task (and creates none) exits on its own:
/// containerd may fail after starting it (writing the bundle's `address` or
/// `shim-binary-path` file, on a full disk) and never send a Create, nor a Shutdown.
pub const NO_TASK_AFTER_START: Duration = Duration::from_secs(30);

/// An id whose Create is in progress; released when dropped.
struct Reservation<'a> {
    service: &'a TaskService,
    id: String,
    give_up: CancellationToken,
    done: CancellationToken,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut creating = self
            .service
            .creating
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        creating.remove(&self.id);
        let idle = self.service.idle(&creating);
        drop(creating);
        self.done.cancel();
        // A Shutdown that came while this Create was in flight is honoured once nothing is
        // left (a failed Create leaves no task for a later Delete and Shutdown).
        if idle && self.service.shutdown_requested.load(Ordering::SeqCst) {
            log::info!("no tasks left after a Create: shutting down");
            self.service.exit.signal();
        } else if idle && self.give_up.is_cancelled() {
            self.service.exit_if_still_idle(
                IDLE_AFTER_GIVE_UP,
                "a given-up Create left nothing to serve",
            );
        }
    }
}

/// The task service of one shim process (one pod, or one container outside Kubernetes).
pub struct TaskService {
    /// Guards the task table (id -> task).
    tasks: Mutex<HashMap<String, Arc<Task>>>,
    /// Guards the ids whose Create is in progress.
    creating: Mutex<HashMap<String, InFlight>>,
    /// Set by a Shutdown that found Creates in flight.
    shutdown_requested: AtomicBool,
    events: EventSink,
    reaper: Arc<Reaper>,
    ops: Arc<dyn ContainerOps>,
    /// libcontainer's state directory for this namespace.
    state_root: PathBuf,
    exit: Arc<ExitSignal>,
    /// containerd's image and content services, for Wasm carried in image layers.
    content: ContentStore,
    /// This service, for the work a handler hands to a task of its own.
    me: std::sync::Weak<TaskService>,
}

impl TaskService {
    /// A service that queues events on `events` and reaps through `reaper`.
    pub fn new(
        events: EventSink,
        reaper: Arc<Reaper>,
        ops: Arc<dyn ContainerOps>,
        state_root: PathBuf,
        exit: Arc<ExitSignal>,
        content: ContentStore,
    ) -> Arc<TaskService> {
        Arc::new_cyclic(|me| TaskService {
            tasks: Mutex::new(HashMap::new()),
            creating: Mutex::new(Default::default()),
            shutdown_requested: AtomicBool::new(false),
            events,
            reaper,
            ops,
            state_root,
            exit,
            content,
            me: me.clone(),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Task>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(&self, id: &str, give_up: &CancellationToken) -> ShimResult<Reservation<'_>> {
        let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if self.table().contains_key(id) || creating.contains_key(id) {
            return Err(ShimError::AlreadyExists(id.to_string()));
        }
        let done = CancellationToken::new();
        creating.insert(
            id.to_string(),
            InFlight {
                give_up: give_up.clone(),
                done: done.clone(),
            },
        );
        Ok(Reservation {
            service: self,
            id: id.to_string(),
            give_up: give_up.clone(),
            done,
        })
    }

    /// Whether the shim serves no task and creates none (`creating` is the locked set of
    /// Creates in flight: the lock is taken before the table's, as everywhere).
    fn idle(&self, creating: &HashMap<String, InFlight>) -> bool {
        creating.is_empty() && self.table().is_empty()
    }

    /// Exits the shim if it still serves no task and creates none `after` from now, logging
    /// `why`.
    pub fn exit_if_still_idle(&self, after: Duration, why: &'static str) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let creating = me.creating.lock().unwrap_or_else(|e| e.into_inner());
            if me.idle(&creating) {
                log::info!("{why}: shutting down");
                me.exit.signal();
            }
        });
    }

    /// Gives up the Create of `id` in flight, if there is one, and waits until it has ended
    /// (with what it made removed).
    async fn give_up_create(&self, id: &str) {
        let in_flight = self
            .creating
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(in_flight) = in_flight {
            log::warn!("{id}: deleted while its Create is in flight: giving the Create up");
            in_flight.give_up.cancel();
            in_flight.done.cancelled().await;
        }
    }

    fn get(&self, id: &str) -> ShimResult<Arc<Task>> {
        self.table()
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("task {id} not found")))
    }

    /// Create: mount the rootfs, find and classify the entrypoint, create the container.
    #[cfg(test)]
    pub async fn task_create(&self, req: CreateTaskRequest) -> ShimResult<CreateTaskResponse> {
        self.task_create_unless_given_up(req, CancellationToken::new())
            .await
    }

    /// Create as the ttrpc handler runs it: in a task of its own, to its end or its roll-back,
    /// even when containerd drops the call (it closed the connection: it is stopping, or
    /// gave up). Dropping this future gives the Create up instead of leaving it half done:
    /// a mounted rootfs, a compile running for nobody, a container no one will delete.
    pub async fn task_create_detached(
        &self,
        req: CreateTaskRequest,
    ) -> ShimResult<CreateTaskResponse> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| ShimError::Internal("the task service is gone".into()))?;
        let give_up = CancellationToken::new();
        let dropped = give_up.clone().drop_guard();
        let create =
            tokio::spawn(async move { me.task_create_unless_given_up(req, give_up).await });
        let result = create.await;
        dropped.disarm();
        result.map_err(|e| ShimError::Internal(format!("create: {e}")))?
    }

    /// [`TaskService::task_create`], given up when `give_up` is cancelled (or a Delete of
    /// the id comes): a compile in flight stops, and what the Create made is removed.
    pub async fn task_create_unless_given_up(
        &self,
        req: CreateTaskRequest,
        give_up: CancellationToken,
    ) -> ShimResult<CreateTaskResponse> {
        let id = req.id.clone();
        if id.is_empty() {
            return Err(ShimError::InvalidArgument("task id is empty".into()));
        }
        // Reserve the id for the whole Create, so a concurrent Create of the same id fails
        // instead of racing this one.
        let _reservation = self.reserve(&id, &give_up)?;
        let bundle = PathBuf::from(&req.bundle);
        let mounted = self.ops.mount_rootfs(&bundle, &req.rootfs)?;
        match self
            .create_container(&req, &bundle, mounted.clone(), &give_up)
            .await
        {
            Ok(resp) => Ok(resp),
            Err(e) => {
                log::warn!("create {id} failed: {e}");
                if let Err(cleanup) = self.ops.helper(&self.delete_request(&id)).await {
                    log::warn!("cleanup of {id} after failed create: {cleanup}");
                }
                if let Some(target) = mounted {
                    self.ops.unmount_rootfs(&target);
                }
                Err(e)
            }
        }
    }

    async fn create_container(
        &self,
        req: &CreateTaskRequest,
        bundle: &Path,
        mounted: Option<PathBuf>,
        give_up: &CancellationToken,
    ) -> ShimResult<CreateTaskResponse> {
        let mut spec = WorkloadSpec::from_bundle(bundle)?;
        let options =
            RuntimeOptions::from_any(req.options.as_ref()).map_err(ShimError::InvalidArgument)?;
        // The handler's knobs, with the container's annotations on top.
        spec.settings = options.settings.clone().overlaid(&spec.settings);
        let (cache_dir, cache_max) = options.cache();
        let cache = CacheConfig {
            dir: PathBuf::from(cache_dir),
            max_bytes: cache_max,
            compile_timeout_secs: options
                .compile_timeout_secs
                .unwrap_or(DEFAULT_COMPILE_TIMEOUT_SECS),
            compile_in_container: !options.compile_in_shim,
        };
        let driver = if options.systemd_cgroup {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        };
        let cgroup = spec
            .cgroups_path
            .as_deref()
            .map(|p| ContainerCgroup::new(p, driver))
            .transpose()
            .map_err(ShimError::InvalidArgument)?;
        // A working directory the image lacks is made, as runc makes it.
        if spec.cwd.starts_with('/') {
            wasmpod_oci::resolve::ensure_dir(&spec.rootfs, Path::new(&spec.cwd))?;
        }
        let workload = match locate(&spec)? {
            Located::Found(workload) => workload,
            // Not a file in the rootfs: the image may carry the Wasm as a layer.
            Located::NotInRootfs(missing) => {
                let layers = cache.dir.join("layers");
                match self.content.wasm_layer(&req.id, &layers).await? {
                    LayerLookup::Found(layer) if layer.spin_package => {
                        log::info!(
                            "{}: runs Wasm package {} as a Spin app",
                            req.id,
                            layer.digest
                        );
                        let app =
                            wasmpod_oci::spin::app::SpinApp::of_package(&layer.digest, layer.path)?;
                        missing.spin_app(app)?
                    }
                    LayerLookup::Found(layer) => {
                        log::info!("{}: runs Wasm layer {}", req.id, layer.digest);
                        refuse_precompiled(&layer.path, Path::new(&spec.args[0]))?;
                        missing.in_layer(layer.path)?
                    }
                    LayerLookup::SpinApp(spin) => {
                        log::info!("{}: runs the Spin app of {}", req.id, spin.image);
                        let app = spin
                            .lock
                            .into_app(
                                &format!("image {}", spin.image),
                                &spin.blobs,
                                &layers,
                                &spec.rootfs,
                            )
                            .map_err(|reason| {
                                ShimError::FailedPrecondition(format!(
                                    "Spin app {}: {reason}",
                                    spin.image
                                ))
                            })?;
                        missing.spin_app(app)?
                    }
                    LayerLookup::NoWasmLayers => return Err(missing.into_error().into()),
                    LayerLookup::NoImage => {
                        return Err(ShimError::NotFound(format!(
                            "{}; the container record names no image (as under dockerd \
                             or `ctr run --rootfs`), so Wasm carried in image layers cannot be \
                             read: put the .wasm in the image's filesystem \
                             (wasmpod image build --shape rootfs)",
                            missing.into_error()
                        )))
                    }
                }
            }
        };
        refuse_precompiled_program(&workload)?;
        let terminal = spec.terminal || req.terminal;
        check_terminal(terminal, &workload.program)?;
        log::info!("create {}: {:?}", req.id, workload.program);
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let console = self.console_socket(terminal)?;
        let request = HelperRequest::Create {
            root: self.state_root.clone(),
            id: req.id.clone(),
            bundle: bundle.to_path_buf(),
            launch: launch(workload, &stdio, console.as_ref(), &cache),
            systemd_cgroup: driver == CgroupDriver::Systemd,
        };
        let (pid, console) = self
            .run_with_console(&request, console, &stdio, give_up)
            .await?;
        if give_up.is_cancelled() {
            // The failed Create's clean-up removes the container the helper made.
            return Err(ShimError::Cancelled(format!(
                "the Create of {} was given up",
                req.id
            )));
        }
        let task = Arc::new(Task::new(
            TaskConfig {
                id: req.id.clone(),
                bundle: bundle.to_path_buf(),
                mounted_rootfs: mounted,
                rootfs: spec.rootfs.clone(),
                cgroup: cgroup.clone(),
                start_with_hooks: spec.has_poststart_hooks,
                cache: cache.clone(),
                memory_limit: spec.memory_limit,
                filesystem: spec.filesystem.clone(),
                settings: spec.settings.clone(),
            },
            stdio.clone(),
            pid,
        ));
        if let Some(console) = console {
            task.init.set_console(console);
        }
        // TaskCreate is queued before anything can queue the init's TaskExit: the exit
        // watcher only starts below, whenever the init dies.
        let exit = self.reaper.watch(pid);
        self.table().insert(req.id.clone(), task.clone());
        self.events.send(
            TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: stdio.stdin,
                    stdout: stdio.stdout,
                    stderr: stdio.stderr,
                    terminal: stdio.terminal,
                    ..Default::default()
                })
                .into(),
                pid: pid as u32,
                ..Default::default()
            },
        );
        self.watch_exit(task.clone(), pid, exit);
        self.watch_oom(&task);
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn watch_exit(&self, task: Arc<Task>, pid: i32, rx: tokio::sync::oneshot::Receiver<i32>) {
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Ok(code) = rx.await {
                log::info!("task {} (pid {pid}) exited with status {code}", task.id);
                // The init's exit is published last: exec'd processes die with its PID
                // namespace, and their exits come first.
                for exec in task.running_execs() {
                    let _ = tokio::time::timeout(EXEC_DRAIN, exec.wait()).await;
                }
                task.init.exited(code, &events);
            }
        });
    }

    fn watch_oom(&self, task: &Task) {
        let Some(path) = task.config.cgroup.as_ref().map(|c| c.fs_path()) else {
            return;
        };
        let events = self.events.clone();
        let id = task.id.clone();
        let watched = oom::watch(&path, move || {
            log::warn!("task {id}: the cgroup OOM-killed a process");
            events.send(
                TASK_OOM_EVENT_TOPIC,
                TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                },
            );
        });
        if let Err(e) = watched {
            log::warn!("task {}: no OOM events: {e}", task.id);
        }
    }

    fn watch_exec_exit(&self, process: Arc<Process>, pid: i32) {
        let rx = self.reaper.watch(pid);
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Ok(code) = rx.await {
                log::info!(
                    "exec {} of {} (pid {pid}) exited with status {code}",
                    process.exec_id,
                    process.container_id
                );
                process.exited(code, &events);
            }
        });
    }

    fn delete_request(&self, id: &str) -> HelperRequest {
        HelperRequest::Delete {
            root: self.state_root.clone(),
            id: id.to_string(),
        }
    }

    /// Start: let the created init run its payload.
    pub async fn task_start(&self, req: StartRequest) -> ShimResult<StartResponse> {
        let task = self.get(&req.id)?;
        if !req.exec_id.is_empty() {
            return self.start_exec(&task, &req.exec_id).await;
        }
        let pid = task.init.begin_start()?;
        let started = if task.config.start_with_hooks {
            self.ops
                .helper(&HelperRequest::Start {
                    root: self.state_root.clone(),
                    id: req.id.clone(),
                })
                .await
                .map(|_| ())
        } else {
            self.ops.release(&self.state_root.join(&req.id)).await
        };
        match started {
            Ok(_) => {
                task.init.finish_start(&self.events);
                Ok(StartResponse {
                    pid: pid as u32,
                    ..Default::default()
                })
            }
            Err(message) => {
                task.init.abort_start(&self.events);
                Err(ShimError::FailedPrecondition(message))
            }
        }
    }

    /// Exec: register a process to run in the container; Start runs it.
    pub async fn task_exec(&self, req: api::ExecProcessRequest) -> ShimResult<()> {
        let task = self.get(&req.id)?;
        if req.exec_id.is_empty() {
            return Err(ShimError::InvalidArgument("exec id is empty".into()));
        }
        match task.init.lifecycle() {
            Lifecycle::Running { .. } => {}
            other => {
                return Err(ShimError::FailedPrecondition(format!(
                    "cannot exec in a task in {} state",
                    other.name()
                )))
            }
        }
        let spec = req
            .spec
            .as_ref()
            .map(|any| any.value.clone())
            .ok_or_else(|| ShimError::InvalidArgument("exec has no process spec".into()))?;
        let process = Arc::new(Process::new_exec(
            req.id.clone(),
            req.exec_id.clone(),
            Stdio {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            spec,
        ));
        if !task.add_exec(process) {
            return Err(ShimError::AlreadyExists(format!("exec {}", req.exec_id)));
        }
        self.events.send(
            TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(())
    }

    async fn start_exec(&self, task: &Arc<Task>, exec_id: &str) -> ShimResult<StartResponse> {
        let process = task
            .process(exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id} not found")))?;
        process.begin_start()?;
        match self.run_exec(task, &process).await {
            Ok(pid) => {
                process.finish_start(&self.events);
                Ok(StartResponse {
                    pid: pid as u32,
                    ..Default::default()
                })
            }
            Err(e) => {
                process.abort_start(&self.events);
                Err(e)
            }
        }
    }

    async fn run_exec(&self, task: &Arc<Task>, process: &Arc<Process>) -> ShimResult<i32> {
        let spec: oci_spec::runtime::Process = serde_json::from_slice(&process.exec_spec)
            .map_err(|e| ShimError::InvalidArgument(format!("exec process spec: {e}")))?;
        let workload = locate_exec(
            &spec,
            &task.config.rootfs,
            task.config.memory_limit,
            &task.config.filesystem,
            &task.config.settings,
        )?;
        refuse_precompiled_program(&workload)?;
        check_terminal(process.stdio.terminal, &workload.program)?;
        let file = self
            .state_root
            .join(&task.id)
            .join(format!("exec-{}.json", process.exec_id));
        std::fs::write(&file, &process.exec_spec)
            .map_err(|e| ShimError::Internal(format!("write {}: {e}", file.display())))?;
        let console = self.console_socket(process.stdio.terminal)?;
        let request = HelperRequest::Exec {
            root: self.state_root.clone(),
            id: task.id.clone(),
            process: file.clone(),
            launch: launch(
                workload,
                &process.stdio,
                console.as_ref(),
                &task.config.cache,
            ),
        };
        let result = self
            .run_with_console(&request, console, &process.stdio, &CancellationToken::new())
            .await;
        let _ = std::fs::remove_file(&file);
        let (pid, console) = result?;
        if let Some(console) = console {
            process.set_console(console);
        }
        process.set_pid(pid);
        self.watch_exec_exit(process.clone(), pid);
        Ok(pid)
    }

    fn console_socket(&self, terminal: bool) -> ShimResult<Option<ConsoleSocket>> {
        if !terminal {
            return Ok(None);
        }
        let dir = self.state_root.with_file_name("tty");
        ConsoleSocket::bind(&dir)
            .map(Some)
            .map_err(|e| ShimError::Internal(format!("console socket in {}: {e}", dir.display())))
    }

    /// Runs a create or exec request; with a console socket, also receives the terminal
    /// the new process sends and starts copying it to containerd's FIFOs.
    async fn run_with_console(
        &self,
        request: &HelperRequest,
        console: Option<ConsoleSocket>,
        stdio: &Stdio,
        give_up: &CancellationToken,
    ) -> ShimResult<(i32, Option<Console>)> {
        let master = console.map(|c| tokio::task::spawn_blocking(move || c.receive_master()));
        let pid = self
            .ops
            .helper_unless_given_up(request, give_up)
            .await
            .map_err(ShimError::FailedPrecondition)?
            .ok_or_else(|| ShimError::Internal("the container helper returned no pid".into()))?;
        let Some(master) = master else {
            return Ok((pid, None));
        };
        let fail = |e: String| {
            let _ = self.ops.signal(pid, Signal::SIGKILL);
            ShimError::Internal(format!("terminal: {e}"))
        };
        let master = master
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        let console =
            Console::start(master, &stdio.stdin, &stdio.stdout).map_err(|e| fail(e.to_string()))?;
        Ok((pid, Some(console)))
    }

    /// ResizePty: set a process's terminal size.
    pub async fn task_resize_pty(&self, req: api::ResizePtyRequest) -> ShimResult<()> {
        let task = self.get(&req.id)?;
        self.process(&task, &req.exec_id)?
            .resize(req.width, req.height)
            .map_err(ShimError::FailedPrecondition)
    }

    /// Pause: freeze the container's cgroup.
    pub async fn task_pause(&self, req: api::PauseRequest) -> ShimResult<()> {
        self.set_frozen(&req.id, true)
    }

    /// Resume: thaw the container's cgroup.
    pub async fn task_resume(&self, req: api::ResumeRequest) -> ShimResult<()> {
        self.set_frozen(&req.id, false)
    }

    /// Moves the lifecycle first (refusing illegal moves), then the freezer; undoes the
    /// lifecycle move if the freezer fails; publishes TaskPaused or TaskResumed.
    fn set_frozen(&self, id: &str, frozen: bool) -> ShimResult<()> {
        let task = self.get(id)?;
        type Move = fn(&Process) -> Result<i32, crate::lifecycle::LifecycleError>;
        let (forward, back): (Move, Move) = if frozen {
            (Process::pause, Process::resume)
        } else {
            (Process::resume, Process::pause)
        };
        forward(&task.init)?;
        if let Err(e) = cgroup::freeze(task_cgroup(&task)?, frozen) {
            let _ = back(&task.init);
            let op = if frozen { "pause" } else { "resume" };
            return Err(ShimError::Internal(format!("{op} {id}: {e}")));
        }
        let container_id = id.to_string();
        if frozen {
            let event = TaskPaused {
                container_id,
                ..Default::default()
            };
            self.events.send(TASK_PAUSED_EVENT_TOPIC, event);
        } else {
            let event = TaskResumed {
                container_id,
                ..Default::default()
            };
            self.events.send(TASK_RESUMED_EVENT_TOPIC, event);
        }
        Ok(())
    }

    /// Update: apply new resource limits to the container's cgroup.
    pub async fn task_update(&self, req: api::UpdateTaskRequest) -> ShimResult<()> {
        let task = self.get(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .ok_or_else(|| ShimError::InvalidArgument("update has no resources".into()))?;
        cgroup::update(task_cgroup(&task)?, &resources.value)
            .map_err(|e| ShimError::InvalidArgument(format!("update {}: {e}", req.id)))
    }

    /// Kill: signal the init (and with `all`, every process of the container's cgroup).
    pub async fn task_kill(&self, req: KillRequest) -> ShimResult<()> {
        let task = self.get(&req.id)?;
        let process = self.process(&task, &req.exec_id)?;
        let signal = Signal::try_from(req.signal as i32)
            .map_err(|_| ShimError::InvalidArgument(format!("invalid signal {}", req.signal)))?;
        // A signal that races with Start waits for it to finish (it is quick).
        let deadline = tokio::time::Instant::now() + START_WAIT;
        while matches!(process.lifecycle(), Lifecycle::Starting { .. })
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pid = process.lifecycle().check_kill().map_err(|_| {
            ShimError::NotFound(format!("process {} already finished", process.id()))
        })?;
        if pid == 0 {
            return Err(ShimError::FailedPrecondition(format!(
                "process {} has not started",
                process.id()
            )));
        }
        if req.all && req.exec_id.is_empty() {
            let pids = task
                .config
                .cgroup
                .as_ref()
                .and_then(|c| cgroup::pids(c).ok());
            for p in pids.unwrap_or_default() {
                let _ = self.ops.signal(p, signal);
            }
        }
        match self.ops.signal(pid, signal) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Err(ShimError::NotFound(format!(
                "process of task {} already finished",
                req.id
            ))),
            Err(e) => Err(ShimError::Internal(format!("kill {pid}: {e}"))),
        }
    }

    /// Wait: until the init exits.
    pub async fn task_wait(&self, req: WaitRequest) -> ShimResult<WaitResponse> {
        let task = self.get(&req.id)?;
        let exit = self.process(&task, &req.exec_id)?.wait().await;
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    /// Delete: remove a stopped (or never started) task and everything it owns on the node.
    pub async fn task_delete(&self, req: DeleteRequest) -> ShimResult<DeleteResponse> {
        // containerd deletes a task whose Create it gave up (its call timed out, or containerd
        // is stopping): that Create stops and removes what it made before this answers, so
        // that containerd removes the bundle only once nothing uses it.
        if req.exec_id.is_empty() {
            self.give_up_create(&req.id).await;
        }
        let task = self.get(&req.id)?;
        if !req.exec_id.is_empty() {
            return self.delete_exec(&task, &req.exec_id);
        }
        if let Lifecycle::Created { pid } = task.init.lifecycle() {
            let _ = self.ops.signal(pid, Signal::SIGKILL);
            if tokio::time::timeout(KILL_WAIT, task.init.wait())
                .await
                .is_err()
            {
                return Err(ShimError::Internal(format!(
                    "task {} did not die after SIGKILL",
                    req.id
                )));
            }
        }
        let exit = task.init.lifecycle().check_delete()?;
        if let Err(e) = self.ops.helper(&self.delete_request(&req.id)).await {
            log::error!("delete {}: {e}", req.id);
        }
        if let Some(target) = &task.config.mounted_rootfs {
            self.ops.unmount_rootfs(target);
        }
        self.table().remove(&req.id);
        let pid = task.init.lifecycle().pid() as u32;
        self.events.send(
            TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid,
                exit_status: exit.code,
                exited_at: Some(timestamp(exit.at)).into(),
                ..Default::default()
            },
        );
        Ok(DeleteResponse {
            pid,
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    fn delete_exec(&self, task: &Arc<Task>, exec_id: &str) -> ShimResult<DeleteResponse> {
        let process = self.process(task, exec_id)?;
        let exit = match process.lifecycle() {
            Lifecycle::Created { .. } => {
                process.discard();
                process.wait_now().unwrap_or(crate::lifecycle::ExitInfo {
                    code: 0,
                    at: std::time::SystemTime::now(),
                })
            }
            l => l.check_delete()?,
        };
        task.remove_exec(exec_id);
        Ok(DeleteResponse {
            pid: process.lifecycle().pid() as u32,
            exit_status: exit.code,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    fn process(&self, task: &Task, exec_id: &str) -> ShimResult<Arc<Process>> {
        task.process(exec_id).ok_or_else(|| {
            ShimError::NotFound(format!("exec {exec_id} not found in task {}", task.id))
        })
    }

    /// State: the task (or one of its execs) as it is now.
    pub async fn task_state(&self, req: StateRequest) -> ShimResult<StateResponse> {
        let task = self.get(&req.id)?;
        let process = self.process(&task, &req.exec_id)?;
        let l = process.lifecycle();
        let status = match l {
            Lifecycle::Created { .. } => Status::CREATED,
            Lifecycle::Starting { .. } => Status::CREATED,
            Lifecycle::Running { .. } => Status::RUNNING,
            Lifecycle::Paused { .. } => Status::PAUSED,
            Lifecycle::Stopped { .. } => Status::STOPPED,
        };
        let mut resp = StateResponse {
            id: process.id().to_string(),
            exec_id: process.exec_id.clone(),
            bundle: task.config.bundle.display().to_string(),
            pid: l.pid() as u32,
            status: status.into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            ..Default::default()
        };
        if let Some(exit) = l.exit() {
            resp.exit_status = exit.code;
            resp.exited_at = Some(timestamp(exit.at)).into();
        }
        Ok(resp)
    }

    /// Pids: the processes in the container's cgroup.
    pub async fn task_pids(&self, req: PidsRequest) -> ShimResult<PidsResponse> {
        let task = self.get(&req.id)?;
        let pids = cgroup::pids(task_cgroup(&task)?)
            .map_err(|e| ShimError::Internal(format!("list pids of {}: {e}", req.id)))?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| api::ProcessInfo {
                    pid: pid as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    /// Stats: the container cgroup's metrics in containerd's cgroups metrics types.
    pub async fn task_stats(&self, req: StatsRequest) -> ShimResult<StatsResponse> {
        let task = self.get(&req.id)?;
        let stats = cgroup::metrics(task_cgroup(&task)?)
            .map_err(|e| ShimError::Internal(format!("stats of {}: {e}", req.id)))?;
        Ok(StatsResponse {
            stats: Some(stats).into(),
            ..Default::default()
        })
    }

    /// Connect: the shim's and the task's pids; it answers
    /// for an id it serves no task for, too (task pid 0), as runc's shim does: a containerd
    /// that reloads a shim whose Create never finished (it was stopped meanwhile) connects,
    /// finds no pids, and then deletes the task and shuts the shim down. A shim that failed
    /// Connect would be taken for dead and left running, holding the id's socket.
    pub async fn task_connect(&self, req: ConnectRequest) -> ShimResult<ConnectResponse> {
        let task_pid = self
            .get(&req.id)
            .map_or(0, |task| task.init.lifecycle().pid() as u32);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    /// Shutdown: the shim exits once it serves no task and creates none. A Shutdown that
    /// finds a Create in flight is remembered: if that Create fails, the shim exits then.
    pub async fn task_shutdown(&self, _req: ShutdownRequest) -> ShimResult<()> {
        let creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if !self.table().is_empty() {
            return Ok(());
        }
        if !creating.is_empty() {
            log::info!("shutdown deferred: {} create(s) in flight", creating.len());
            self.shutdown_requested.store(true, Ordering::SeqCst);
            return Ok(());
        }
        log::info!("no tasks left: shutting down");
        self.exit.signal();
        Ok(())
    }
}

/// What the helper needs to start `workload`: where its compiled Wasm comes from, and its
/// stdio (or console socket).
fn launch(
    workload: Workload,
    stdio: &Stdio,
    console: Option<&ConsoleSocket>,
    cache: &CacheConfig,
) -> Launch {
    Launch {
        workload,
        cache: cache.clone(),
        stdin: stdio.stdin.clone(),
        stdout: stdio.stdout.clone(),
        stderr: stdio.stderr.clone(),
        console_socket: console.map(|c| c.path().to_path_buf()),
    }
}

/// The task's cgroup, or an error for a container without one.
fn task_cgroup(task: &Task) -> ShimResult<&ContainerCgroup> {
    task.config
        .cgroup
        .as_ref()
        .ok_or_else(|| ShimError::FailedPrecondition(format!("task {} has no cgroup", task.id)))
}

/// Terminals exist for native processes only: a Wasm guest has no tty to attach.
fn check_terminal(terminal: bool, program: &Program) -> ShimResult<()> {
    if terminal && program.is_wasm() {
        return Err(ShimError::FailedPrecondition(
            "a terminal (tty) is not supported for Wasm workloads; run without -t".into(),
        ));
    }
    Ok(())
}

/// A "native" program that is Wasmtime's precompiled code (an ELF `.cwasm`) is refused:
/// wasmpod never runs compiled code it did not compile itself.
fn refuse_precompiled_program(workload: &Workload) -> ShimResult<()> {
    match &workload.program {
        Program::Native { path, host_path } => refuse_precompiled(host_path, path),
        Program::Wasm { .. } | Program::Spin(_) => Ok(()),
    }
}

/// An error naming `shown` if the file at `on_host` is precompiled Wasm.
fn refuse_precompiled(on_host: &Path, shown: &Path) -> ShimResult<()> {
    if wasmpod_runtime::cache::is_precompiled(on_host) {
        return Err(ShimError::FailedPrecondition(format!(
            "entrypoint {} is precompiled Wasm (.cwasm): wasmpod only runs code it compiled itself; ship the .wasm",
            shown.display()
        )));
    }
    Ok(())
}

#[async_trait]
impl TaskApi for TaskService {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        Ok(self.task_create_detached(req).await?)
    }
    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        Ok(self.task_start(req).await?)
    }
    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        self.task_kill(req).await?;
        Ok(Empty::new())
    }
    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        Ok(self.task_wait(req).await?)
    }
    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        Ok(self.task_delete(req).await?)
    }
    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        Ok(self.task_state(req).await?)
    }
    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        Ok(self.task_pids(req).await?)
    }
    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        Ok(self.task_stats(req).await?)
    }
    async fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        Ok(self.task_connect(req).await?)
    }
    async fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.task_shutdown(req).await?;
        Ok(Empty::new())
    }
    async fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        // The container holds containerd's FIFOs directly; the shim keeps no copy of stdin,
        // so there is nothing for it to close: the writer (containerd) closes its end.
        let task = self.get(&req.id)?;
        self.process(&task, &req.exec_id)?;
        Ok(Empty::new())
    }
    async fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        self.task_exec(req).await?;
        Ok(Empty::new())
    }
    async fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<Empty> {
        self.task_resize_pty(req).await?;
        Ok(Empty::new())
    }
    async fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        self.task_pause(req).await?;
        Ok(Empty::new())
    }
    async fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        self.task_resume(req).await?;
        Ok(Empty::new())
    }
    async fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        self.task_update(req).await?;
        Ok(Empty::new())
    }
    async fn checkpoint(
        &self,
        _: &TtrpcContext,
        _: api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(ShimError::Unimplemented("Checkpoint").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::QueuedEvent;
    use std::sync::atomic::AtomicI32;
    use tokio::sync::{mpsc, Semaphore};

    /// Container operations that fork nothing: a Create hands out the next pid, a signal
    /// "kills" the pid by delivering `128 + signal` to the reaper, as the real reaper would.
    struct FakeOps {
        reaper: Arc<Reaper>,
        next_pid: AtomicI32,
        /// A new init that dies with this code before the helper returns.
        dies_at_once: Mutex<Option<i32>>,
        /// When set, each Create (and Exec) waits for a permit of its own first.
        create_gate: Option<Arc<Semaphore>>,
        /// Whether a gated Create stops when given up (a compile in flight), or goes on
        /// waiting for its permit (the container was being made when the shim gave up).
        stops_when_given_up: AtomicBool,
        /// The helper operations and releases, in order.
        calls: Mutex<Vec<String>>,
    }

    impl FakeOps {
        fn new(reaper: Arc<Reaper>, create_gate: Option<Arc<Semaphore>>) -> FakeOps {
            FakeOps {
                reaper,
                next_pid: AtomicI32::new(1000),
                dies_at_once: Mutex::new(None),
                create_gate,
                stops_when_given_up: AtomicBool::new(true),
                calls: Mutex::new(Vec::new()),
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl ContainerOps for FakeOps {
        fn mount_rootfs(&self, _: &Path, _: &[api::Mount]) -> ShimResult<Option<PathBuf>> {
            Ok(None)
        }
        fn unmount_rootfs(&self, _: &Path) {}
        async fn helper(&self, request: &HelperRequest) -> Result<Option<i32>, String> {
            self.calls.lock().unwrap().push(request.op().to_string());
            match request {
                HelperRequest::Create { .. } | HelperRequest::Exec { .. } => {
                    if let Some(gate) = &self.create_gate {
                        // Each permit admits one Create.
                        gate.acquire().await.map_err(|e| e.to_string())?.forget();
                    }
                    let pid = self.next_pid.fetch_add(1, Ordering::SeqCst);
                    if let Some(code) = *self.dies_at_once.lock().unwrap() {
                        self.reaper.deliver(pid, code);
                    }
                    Ok(Some(pid))
                }
                _ => Ok(None),
            }
        }
        async fn helper_unless_given_up(
            &self,
            request: &HelperRequest,
            give_up: &CancellationToken,
        ) -> Result<Option<i32>, String> {
            if !self.stops_when_given_up.load(Ordering::SeqCst) {
                return self.helper(request).await;
            }
            tokio::select! {
                answer = self.helper(request) => answer,
                () = give_up.cancelled() => Err("compile stopped: given up".into()),
            }
        }
        async fn release(&self, _: &Path) -> Result<(), String> {
            self.calls.lock().unwrap().push("release".into());
            Ok(())
        }
        fn signal(&self, pid: i32, signal: Signal) -> nix::Result<()> {
            self.reaper.deliver(pid, 128 + signal as i32);
            Ok(())
        }
    }

    struct Harness {
        service: Arc<TaskService>,
        ops: Arc<FakeOps>,
        events: mpsc::UnboundedReceiver<QueuedEvent>,
        _dir: tempfile::TempDir,
        bundle: PathBuf,
    }

    impl Harness {
        fn new(create_gate: Option<Arc<Semaphore>>) -> Harness {
            let (events, rx) = EventSink::new();
            let reaper = Arc::new(Reaper::default());
            let ops = Arc::new(FakeOps::new(reaper.clone(), create_gate));
            let dir = tempfile::tempdir().unwrap();
            let bundle = dir.path().join("bundle");
            std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
            // The magic and version of a core module: enough to classify the entrypoint.
            std::fs::write(bundle.join("rootfs/app.wasm"), b"\0asm\x01\0\0\0").unwrap();
            let config = serde_json::json!({
                "ociVersion": "1.0.2",
                "process": {
                    "args": ["/app.wasm"],
                    "cwd": "/",
                    "env": ["PATH=/"],
                    "user": {"uid": 0, "gid": 0}
                },
                "root": {"path": "rootfs"}
            });
            std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
            let service = TaskService::new(
                events,
                reaper,
                ops.clone(),
                dir.path().join("state"),
                Arc::new(ExitSignal::default()),
                ContentStore::new("/nonexistent/containerd.sock", "default"),
            );
            Harness {
                service,
                ops,
                events: rx,
                _dir: dir,
                bundle,
            }
        }

        fn create_request(&self, id: &str) -> CreateTaskRequest {
            CreateTaskRequest {
                id: id.into(),
                bundle: self.bundle.display().to_string(),
                ..Default::default()
            }
        }

        /// A Create of `id` in a task of its own.
        fn spawn_create(
            &self,
            id: &str,
        ) -> tokio::task::JoinHandle<ShimResult<CreateTaskResponse>> {
            let service = self.service.clone();
            let request = self.create_request(id);
            tokio::spawn(async move { service.task_create(request).await })
        }

        async fn create(&self, id: &str) -> ShimResult<CreateTaskResponse> {
            self.service.task_create(self.create_request(id)).await
        }

        async fn state(&self, id: &str) -> ShimResult<StateResponse> {
            self.service
                .task_state(StateRequest {
                    id: id.into(),
                    ..Default::default()
                })
                .await
        }

        async fn status(&self, id: &str) -> Status {
            self.state(id).await.unwrap().status.enum_value_or_default()
        }

        async fn delete(&self, id: &str) -> ShimResult<DeleteResponse> {
            self.service
                .task_delete(DeleteRequest {
                    id: id.into(),
                    ..Default::default()
                })
                .await
        }

        async fn shutdown(&self) {
            self.service
                .task_shutdown(ShutdownRequest::default())
                .await
                .unwrap();
        }

        /// The topics queued so far.
        fn topics(&mut self) -> Vec<&'static str> {
            let mut topics = Vec::new();
            while let Ok(event) = self.events.try_recv() {
                topics.push(event.topic);
            }
            topics
        }

        async fn exited(&self) -> bool {
            tokio::time::timeout(Duration::from_millis(300), self.service.exit.wait())
                .await
                .is_ok()
        }
    }

    fn id(id: &str) -> (String, String) {
        (id.to_string(), String::new())
    }

    fn wait(task: &str) -> WaitRequest {
        let (id, exec_id) = id(task);
        WaitRequest {
            id,
            exec_id,
            ..Default::default()
        }
    }

    #[test]
    fn concurrent_creates_of_one_id_conflict() {
        let h = Harness::new(None);
        let s = &h.service;
        let first = s.reserve("c1", &CancellationToken::new()).unwrap();
        assert!(matches!(
            s.reserve("c1", &CancellationToken::new()),
            Err(ShimError::AlreadyExists(_))
        ));
        assert!(s.reserve("c2", &CancellationToken::new()).is_ok());
        drop(first);
        assert!(s.reserve("c1", &CancellationToken::new()).is_ok());
    }

    #[tokio::test]
    async fn unknown_tasks_are_not_found() {
        let h = Harness::new(None);
        let err = h.state("nope").await.unwrap_err();
        assert_eq!(err.code(), containerd_shim::protos::ttrpc::Code::NOT_FOUND);
        let err = h
            .service
            .task_create(CreateTaskRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ShimError::InvalidArgument(_)));
    }

    #[tokio::test]
    async fn a_task_lives_through_create_start_kill_delete_with_events_in_order() {
        let mut h = Harness::new(None);
        let pid = h.create("c1").await.unwrap().pid;
        assert!(pid >= 1000);
        assert_eq!(h.status("c1").await, Status::CREATED);
        h.service
            .task_start(StartRequest {
                id: "c1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(h.status("c1").await, Status::RUNNING);
        // A running task cannot be deleted.
        let early = h.delete("c1").await;
        assert!(early.is_err());
        h.service
            .task_kill(KillRequest {
                id: "c1".into(),
                signal: 15,
                ..Default::default()
            })
            .await
            .unwrap();
        let exit = h.service.task_wait(wait("c1")).await.unwrap();
        assert_eq!(exit.exit_status, 143);
        assert_eq!(h.status("c1").await, Status::STOPPED);
        let deleted = h.delete("c1").await.unwrap();
        assert_eq!(deleted.exit_status, 143);
        assert_eq!(
            h.topics(),
            [
                TASK_CREATE_EVENT_TOPIC,
                containerd_shim::protos::topics::TASK_START_EVENT_TOPIC,
                containerd_shim::protos::topics::TASK_EXIT_EVENT_TOPIC,
                TASK_DELETE_EVENT_TOPIC
            ]
        );
        assert_eq!(h.ops.calls(), ["create", "release", "delete"]);
        // The table is empty again: Shutdown ends the shim.
        h.shutdown().await;
        assert!(h.exited().await);
    }

    // Worker threads, so that an exit watcher started too early would race TaskCreate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_init_that_dies_at_once_is_created_before_it_exits() {
        let mut h = Harness::new(None);
        *h.ops.dies_at_once.lock().unwrap() = Some(1);
        for n in 0..50 {
            let id = format!("early{n}");
            h.create(&id).await.unwrap();
            let exit = h.service.task_wait(wait(&id)).await.unwrap();
            assert_eq!(exit.exit_status, 1);
            assert_eq!(
                h.topics(),
                [
                    TASK_CREATE_EVENT_TOPIC,
                    containerd_shim::protos::topics::TASK_EXIT_EVENT_TOPIC
                ],
                "round {n}"
            );
        }
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_last_task() {
        let h = Harness::new(None);
        h.create("a").await.unwrap();
        h.shutdown().await;
        assert!(!h.exited().await, "a shim with a task must not exit");
        h.delete("a").await.unwrap();
        h.shutdown().await;
        assert!(h.exited().await, "an empty shim exits on Shutdown");
    }

    #[tokio::test]
    async fn shutdown_does_not_cut_off_a_create_in_flight() {
        let gate = Arc::new(Semaphore::new(0));
        let h = Harness::new(Some(gate.clone()));
        let create = h.spawn_create("late");
        while h.ops.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Another task's Delete made containerd send Shutdown while "late" is being created.
        h.shutdown().await;
        assert!(!h.exited().await, "Shutdown cut off a Create in flight");
        gate.add_permits(1);
        create.await.unwrap().unwrap();
        assert!(!h.exited().await, "the created task must be served");
        h.state("late").await.unwrap();
    }

    #[tokio::test]
    async fn a_deferred_shutdown_ends_the_shim_when_the_create_fails() {
        let gate = Arc::new(Semaphore::new(0));
        let h = Harness::new(Some(gate.clone()));
        let service = h.service.clone();
        let request = h.create_request("broken");
        let create = tokio::spawn(async move { service.task_create(request).await.map(|_| ()) });
        while h.ops.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.shutdown().await;
        // The container helper fails: the Create fails after the Shutdown.
        gate.close();
        assert!(create.await.unwrap().is_err());
        assert!(
            h.exited().await,
            "nothing is left: the deferred Shutdown applies"
        );
    }

    /// Waits until the Create of `id` is in flight (the fake helper was called for it).
    async fn until_creating(h: &Harness) {
        while h.ops.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_delete_gives_up_the_create_in_flight_and_answers_once_it_is_undone() {
        let gate = Arc::new(Semaphore::new(0));
        let h = Harness::new(Some(gate.clone()));
        let create = h.spawn_create("slow");
        until_creating(&h).await;
        // containerd's Create call timed out: it deletes the task and shuts the shim down.
        let deleted = h.delete("slow").await;
        assert!(
            matches!(deleted, Err(ShimError::NotFound(_))),
            "{deleted:?}"
        );
        assert!(
            create.is_finished(),
            "Delete answered before the Create it gave up had ended"
        );
        assert!(create.await.unwrap().is_err());
        assert_eq!(h.ops.calls(), ["create", "delete"]);
        h.shutdown().await;
        assert!(h.exited().await);
    }

    #[tokio::test]
    async fn a_container_made_after_the_give_up_is_removed() {
        let gate = Arc::new(Semaphore::new(0));
        let h = Harness::new(Some(gate.clone()));
        h.ops.stops_when_given_up.store(false, Ordering::SeqCst);
        let create = h.spawn_create("late");
        until_creating(&h).await;
        let service = h.service.clone();
        let delete = tokio::spawn(async move {
            service
                .task_delete(DeleteRequest {
                    id: "late".into(),
                    ..Default::default()
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!delete.is_finished(), "Delete must wait for the Create");
        // The helper made the container before it noticed.
        gate.add_permits(1);
        assert!(matches!(
            create.await.unwrap(),
            Err(ShimError::Cancelled(_))
        ));
        assert!(matches!(delete.await.unwrap(), Err(ShimError::NotFound(_))));
        assert_eq!(h.ops.calls(), ["create", "delete"]);
        assert!(h.state("late").await.is_err());
    }

    #[tokio::test]
    async fn a_dropped_create_call_is_given_up_and_undone() {
        let gate = Arc::new(Semaphore::new(0));
        let h = Harness::new(Some(gate.clone()));
        let service = h.service.clone();
        let request = h.create_request("dropped");
        let call = tokio::spawn(async move { service.task_create_detached(request).await });
        until_creating(&h).await;
        // containerd closed the connection: ttrpc drops the handler's future.
        call.abort();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while h.ops.calls().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "{:?}", h.ops.calls());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(h.ops.calls(), ["create", "delete"]);
        assert!(h.state("dropped").await.is_err());
        // The id is free again.
        gate.add_permits(1);
        h.create("dropped").await.unwrap();
    }

    #[tokio::test]
    async fn a_create_call_that_is_answered_is_not_given_up() {
        let h = Harness::new(None);
        h.service
            .task_create_detached(h.create_request("kept"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(h.status("kept").await, Status::CREATED);
        assert_eq!(h.ops.calls(), ["create"]);
    }

    #[tokio::test]
    async fn connect_answers_for_an_id_with_no_task_and_pids_says_not_found() {
        let h = Harness::new(None);
        let connected = h
            .service
            .task_connect(ConnectRequest {
                id: "never-created".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            (connected.shim_pid, connected.task_pid),
            (std::process::id(), 0)
        );
        let pids = h
            .service
            .task_pids(PidsRequest {
                id: "never-created".into(),
                ..Default::default()
            })
            .await;
        assert!(matches!(pids, Err(ShimError::NotFound(_))), "{pids:?}");
    }

    #[tokio::test]
    async fn a_shim_left_with_nothing_by_a_given_up_create_exits_on_its_own() {
        let gate = Arc::new(Semaphore::new(0));
        let h = Harness::new(Some(gate.clone()));
        let create = h.spawn_create("given-up");
        until_creating(&h).await;
        // containerd stops after its Delete, and never sends Shutdown.
        assert!(h.delete("given-up").await.is_err());
        assert!(create.await.unwrap().is_err());
        assert!(!h.exited().await, "the Delete's answer goes out first");
        tokio::time::sleep(IDLE_AFTER_GIVE_UP).await;
        assert!(h.exited().await);
    }

    #[tokio::test]
    async fn a_given_up_create_leaves_a_shim_with_other_tasks_serving() {
        let gate = Arc::new(Semaphore::new(1));
        let h = Harness::new(Some(gate.clone()));
        h.create("pause").await.unwrap();
        let create = h.spawn_create("given-up");
        while h.ops.calls().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(h.delete("given-up").await.is_err());
        assert!(create.await.unwrap().is_err());
        tokio::time::sleep(IDLE_AFTER_GIVE_UP).await;
        assert!(!h.exited().await, "the pod's other task is still served");
        assert_eq!(h.status("pause").await, Status::CREATED);
    }
}
