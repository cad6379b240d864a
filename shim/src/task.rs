//! One container served by this shim: its identity, stdio, rootfs mount, cgroup, and its
//! [`Lifecycle`] behind a lock. Exits are published from here so that TaskStart always comes
//! before TaskExit.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use containerd_shim::protos::events::task::{TaskExit, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::topics::{TASK_EXIT_EVENT_TOPIC, TASK_START_EVENT_TOPIC};
use tokio::sync::watch;

use crate::events::EventSink;
use crate::lifecycle::{ExitEffect, ExitInfo, Lifecycle, LifecycleError};

/// containerd's stdio for the task.
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

/// A task (a container's init process) and what it owns on the node.
pub struct Task {
    /// The container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The rootfs the shim mounted (to unmount on Delete), if it mounted one.
    pub mounted_rootfs: Option<PathBuf>,
    /// The task's stdio.
    pub stdio: Stdio,
    /// `linux.cgroupsPath` of the spec.
    pub cgroups_path: Option<String>,
    /// Whether Start must go through libcontainer (to run `poststart` hooks).
    pub start_with_hooks: bool,
    /// The lifecycle; only the methods below change it.
    lifecycle: Mutex<Lifecycle>,
    /// Resolves once init has exited (for Wait).
    exited: watch::Sender<Option<ExitInfo>>,
}

impl Task {
    /// A task whose init (`pid`) has been created.
    pub fn new(
        id: String,
        bundle: PathBuf,
        mounted_rootfs: Option<PathBuf>,
        stdio: Stdio,
        cgroups_path: Option<String>,
        start_with_hooks: bool,
        pid: i32,
    ) -> Task {
        Task {
            id,
            bundle,
            mounted_rootfs,
            stdio,
            cgroups_path,
            start_with_hooks,
            lifecycle: Mutex::new(Lifecycle::Created { pid }),
            exited: watch::channel(None).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current state.
    pub fn lifecycle(&self) -> Lifecycle {
        *self.lock()
    }

    /// Created -> Starting.
    pub fn begin_start(&self) -> Result<i32, LifecycleError> {
        self.lock().begin_start()
    }

    /// Starting -> Running: publishes TaskStart, then a held-back TaskExit.
    pub fn finish_start(&self, events: &EventSink) {
        let mut l = self.lock();
        let pid = l.pid();
        events.send(
            TASK_START_EVENT_TOPIC,
            TaskStart {
                container_id: self.id.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        );
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

    /// Records init's exit status.
    pub fn exited(&self, code: i32, events: &EventSink) {
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

    fn publish_exit(&self, pid: i32, exit: ExitInfo, events: &EventSink) {
        events.send(
            TASK_EXIT_EVENT_TOPIC,
            TaskExit {
                container_id: self.id.clone(),
                id: self.id.clone(),
                pid: pid as u32,
                exit_status: exit.code,
                exited_at: Some(timestamp(exit.at)).into(),
                ..Default::default()
            },
        );
        self.exited.send_replace(Some(exit));
    }

    /// Waits until init has exited.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exited.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as the task; this cannot happen while we hold &self.
                continue;
            }
        }
    }
}

/// A protobuf timestamp for `at`.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = since.as_secs() as i64;
    ts.nanos = since.subsec_nanos() as i32;
    ts
}
