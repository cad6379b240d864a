//! The OS effects of the task service, behind one small trait: mounting and unmounting a
//! rootfs, running one container operation in a single-threaded helper (zygote worker or
//! exec'd helper), releasing a created init to run its payload, and signalling a process.
//! [`HostOps`] does them for real; the service's unit tests use an in-memory fake, so that
//! lifecycle, event order and Shutdown are tested without root.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use containerd_shim::protos::api::Mount;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use crate::error::ShimResult;
use crate::sandbox::client::HelperRunner;
use crate::sandbox::protocol::HelperRequest;
use crate::{rootfs, start_signal};

/// What the task service asks of the node.
#[async_trait]
pub trait ContainerOps: Send + Sync + 'static {
    /// Mounts `mounts` at `<bundle>/rootfs`; the target when something was mounted.
    fn mount_rootfs(&self, bundle: &Path, mounts: &[Mount]) -> ShimResult<Option<PathBuf>>;
    /// Unmounts everything at `target`.
    fn unmount_rootfs(&self, target: &Path);
    /// Runs one container operation; the new process's pid for Create and Exec.
    async fn helper(&self, request: &HelperRequest) -> Result<Option<i32>, String>;
    /// [`ContainerOps::helper`], told to stop early (a compile in flight) once `give_up` is
    /// cancelled; what the helper made before it noticed is still in the answer.
    async fn helper_unless_given_up(
        &self,
        request: &HelperRequest,
        give_up: &CancellationToken,
    ) -> Result<Option<i32>, String> {
        let _ = give_up;
        self.helper(request).await
    }
    /// Lets the created init whose libcontainer state is in `container_dir` run its payload.
    async fn release(&self, container_dir: &Path) -> Result<(), String>;
    /// Sends `signal` to `pid`.
    fn signal(&self, pid: i32, signal: Signal) -> nix::Result<()>;
}

/// The real effects: mounts, the container helper, the start socket, `kill(2)`.
pub struct HostOps {
    helper: HelperRunner,
}

impl HostOps {
    /// Effects that run container operations through `helper`.
    pub fn new(helper: HelperRunner) -> HostOps {
        HostOps { helper }
    }
}

#[async_trait]
impl ContainerOps for HostOps {
    fn mount_rootfs(&self, bundle: &Path, mounts: &[Mount]) -> ShimResult<Option<PathBuf>> {
        rootfs::mount(bundle, mounts)
    }

    fn unmount_rootfs(&self, target: &Path) {
        rootfs::unmount(target)
    }

    async fn helper(&self, request: &HelperRequest) -> Result<Option<i32>, String> {
        self.helper.run(request).await
    }

    async fn helper_unless_given_up(
        &self,
        request: &HelperRequest,
        give_up: &CancellationToken,
    ) -> Result<Option<i32>, String> {
        self.helper.run_unless_given_up(request, give_up).await
    }

    async fn release(&self, container_dir: &Path) -> Result<(), String> {
        start_signal::send(container_dir).await
    }

    fn signal(&self, pid: i32, signal: Signal) -> nix::Result<()> {
        kill(Pid::from_raw(pid), signal)
    }
}
