//! One container served by this shim: its identity, rootfs mount and cgroup, its init
//! [`Process`], and the exec'd processes. Exits are published from the process, under its
//! lifecycle lock, so that TaskStart / TaskExecStarted always come before TaskExit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use containerd_shim::protos::events::task::{TaskExecStarted, TaskExit, TaskStart};
use containerd_shim::protos::topics::{
    TASK_EXEC_STARTED_EVENT_TOPIC, TASK_EXIT_EVENT_TOPIC, TASK_START_EVENT_TOPIC,
};
use std::sync::Arc;
use tokio::sync::watch;

use wasmpod_oci::filesystem::GuestFilesystem;
use wasmpod_oci::settings::Settings;

use crate::cgroup::ContainerCgroup;
use crate::events::timestamp;
use crate::events::EventSink;
use crate::lifecycle::{ExitEffect, ExitInfo, Lifecycle, LifecycleError};
use crate::sandbox::protocol::CacheConfig;
use crate::tty::Console;

/// containerd's stdio for a process.
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    /// stdin FIFO path, or empty.
    pub stdin: String,
    /// stdout FIFO path, or empty.
    pub stdout: String,
    /// stderr FIFO path, or empty.
    pub stderr: String,
    /// Whether a terminal was asked for.
    pub terminal: bool,
}

/// A process of a task: its init, or an exec'd process.
pub struct Process {
    /// The container id.
    pub container_id: String,
    /// The exec id; empty for the init process.
    pub exec_id: String,
    /// The process's stdio.
    pub stdio: Stdio,
    /// For an exec: the OCI `Process` (JSON) containerd sent.
    pub exec_spec: Vec<u8>,
    /// The lifecycle; only the methods below change it.
    lifecycle: Mutex<Lifecycle>,
    /// Guards the terminal, for processes started with one.
    console: Mutex<Option<Console>>,
    /// Resolves once the process has exited (for Wait).
    exited: watch::Sender<Option<ExitInfo>>,
}

impl Process {
    /// A process in the Created state (`pid` 0 for an exec that has not started).
    pub fn new(container_id: String, exec_id: String, stdio: Stdio, pid: i32) -> Process {
        Process {
            container_id,
            exec_id,
            stdio,
            exec_spec: Vec::new(),
            lifecycle: Mutex::new(Lifecycle::Created { pid }),
            console: Mutex::new(None),
            exited: watch::channel(None).0,
        }
    }

    /// An exec'd process, not started yet.
    pub fn new_exec(container_id: String, exec_id: String, stdio: Stdio, spec: Vec<u8>) -> Process {
        let mut p = Process::new(container_id, exec_id, stdio, 0);
        p.exec_spec = spec;
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id containerd knows this process by: the exec id, or the container id for init.
    pub fn id(&self) -> &str {
        if self.exec_id.is_empty() {
            &self.container_id
        } else {
            &self.exec_id
        }
    }

    /// A copy of the current state.
    pub fn lifecycle(&self) -> Lifecycle {
        *self.lock()
    }

    /// Created -> Starting.
    pub fn begin_start(&self) -> Result<i32, LifecycleError> {
        self.lock().begin_start()
    }

    /// Running -> Paused.
    pub fn pause(&self) -> Result<i32, LifecycleError> {
        self.lock().pause()
    }

    /// Paused -> Running.
    pub fn resume(&self) -> Result<i32, LifecycleError> {
        self.lock().resume()
    }

    /// Records the pid of an exec once its helper has created it.
    pub fn set_pid(&self, pid: i32) {
        self.lock().set_pid(pid);
    }

    /// Starting -> Running: publishes TaskStart (or TaskExecStarted), then a held-back exit.
    pub fn finish_start(&self, events: &EventSink) {
        let mut l = self.lock();
        let pid = l.pid();
        if self.exec_id.is_empty() {
            events.send(
                TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: self.container_id.clone(),
                    pid: pid as u32,
                    ..Default::default()
                },
            );
        } else {
            events.send(
                TASK_EXEC_STARTED_EVENT_TOPIC,
                TaskExecStarted {
                    container_id: self.container_id.clone(),
                    exec_id: self.exec_id.clone(),
                    pid: pid as u32,
                    ..Default::default()
                },
            );
        }
        if let Some(exit) = l.finish_start() {
            self.publish_exit(pid, exit, events);
        }
    }

    /// Starting -> Created after Start failed.
    pub fn abort_start(&self, events: &EventSink) {
        let mut l = self.lock();
        let pid = l.pid();
        if let Some(exit) = l.abort_start() {
            self.publish_exit(pid, exit, events);
        }
    }

    /// Attaches the process's terminal.
    pub fn set_console(&self, console: Console) {
        *self.console.lock().unwrap_or_else(|e| e.into_inner()) = Some(console);
    }

    /// Resizes the process's terminal.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), String> {
        match &*self.console.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(c) => c.resize(width, height).map_err(|e| e.to_string()),
            None => Err(format!("process {} has no terminal", self.id())),
        }
    }

    /// Records the exit status.
    pub fn exited(&self, code: i32, events: &EventSink) {
        if let Some(console) = self
            .console
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            console.finish();
        }
        let exit = ExitInfo {
            code: code as u32,
            at: SystemTime::now(),
        };
        let mut l = self.lock();
        let pid = l.pid();
        if let ExitEffect::Publish(exit) = l.exited(exit) {
            self.publish_exit(pid, exit, events);
        }
    }

    /// Marks a never-started exec as stopped without publishing anything.
    pub fn discard(&self) {
        let exit = ExitInfo {
            code: 0,
            at: SystemTime::now(),
        };
        let mut l = self.lock();
        if l.exited(exit) == ExitEffect::Publish(exit) {
            self.exited.send_replace(Some(exit));
        }
    }

    fn publish_exit(&self, pid: i32, exit: ExitInfo, events: &EventSink) {
        events.send(
            TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: self.container_id.clone(),
                id: self.id().to_string(),
                pid: pid as u32,
                exit_status: exit.code,
                exited_at: Some(timestamp(exit.at)).into(),
                ..Default::default()
            },
        );
        self.exited.send_replace(Some(exit));
    }

    /// The exit, if the process has exited.
    pub fn wait_now(&self) -> Option<ExitInfo> {
        *self.exited.borrow()
    }

    /// Waits until the process has exited.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exited.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                continue;
            }
        }
    }
}

/// What a task is made of, besides its init process.
pub struct TaskConfig {
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The rootfs the shim mounted, if it mounted one.
    pub mounted_rootfs: Option<PathBuf>,
    /// The rootfs as seen from the host.
    pub rootfs: PathBuf,
    /// The container's cgroup, when the spec names one.
    pub cgroup: Option<ContainerCgroup>,
    /// Whether Start must go through libcontainer.
    pub start_with_hooks: bool,
    /// The compile cache the task's Wasm uses.
    pub cache: CacheConfig,
    /// The container's memory limit, which its execs share.
    pub memory_limit: Option<u64>,
    /// What of the container's filesystem is read-only, which its execs share.
    pub filesystem: GuestFilesystem,
    /// The knobs the container runs with, which its execs share.
    pub settings: Settings,
}

/// A task (a container) and what it owns on the node.
pub struct Task {
    /// The container id.
    pub id: String,
    /// What the task was created with.
    pub config: TaskConfig,
    /// The init process.
    pub init: Arc<Process>,
    /// Guards the exec'd processes (exec id -> process).
    execs: Mutex<HashMap<String, Arc<Process>>>,
}

impl Task {
    /// A task whose init (`pid`) has been created.
    pub fn new(config: TaskConfig, stdio: Stdio, pid: i32) -> Task {
        Task {
            init: Arc::new(Process::new(config.id.clone(), String::new(), stdio, pid)),
            id: config.id.clone(),
            config,
            execs: Mutex::new(HashMap::new()),
        }
    }

    fn exec_table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Process>>> {
        self.execs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The init process (empty `exec_id`) or an exec'd process.
    pub fn process(&self, exec_id: &str) -> Option<Arc<Process>> {
        if exec_id.is_empty() {
            Some(self.init.clone())
        } else {
            self.exec_table().get(exec_id).cloned()
        }
    }

    /// Registers a new exec; false if the id is taken.
    pub fn add_exec(&self, process: Arc<Process>) -> bool {
        let mut execs = self.exec_table();
        if execs.contains_key(&process.exec_id) {
            return false;
        }
        execs.insert(process.exec_id.clone(), process);
        true
    }

    /// Forgets an exec.
    pub fn remove_exec(&self, exec_id: &str) -> Option<Arc<Process>> {
        self.exec_table().remove(exec_id)
    }

    /// The exec'd processes that have started and not yet exited.
    pub fn running_execs(&self) -> Vec<Arc<Process>> {
        self.exec_table()
            .values()
            .filter(|p| {
                matches!(
                    p.lifecycle(),
                    Lifecycle::Running { .. } | Lifecycle::Starting { .. }
                )
            })
            .cloned()
            .collect()
    }
}
