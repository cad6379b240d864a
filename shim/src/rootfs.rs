//! Mounting the rootfs containerd hands to Create at `<bundle>/rootfs`, and unmounting it on
//! Delete (or after a failed Create), so no mount outlives its task.

use std::path::{Path, PathBuf};

use containerd_shim::protos::api::Mount;
use nix::mount::{umount2, MntFlags};

use crate::error::{ShimError, ShimResult};

/// Mounts `mounts` in order at `<bundle>/rootfs`. Returns the target when something was
/// mounted; `None` when containerd sent no mounts (`ctr run --rootfs`, or a prepared bundle).
pub fn mount(bundle: &Path, mounts: &[Mount]) -> ShimResult<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target)
        .map_err(|e| ShimError::Internal(format!("create {}: {e}", target.display())))?;
    for (n, m) in mounts.iter().enumerate() {
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, &target) {
            for _ in 0..n {
                unmount(&target);
            }
            return Err(ShimError::Internal(format!(
                "mount rootfs ({} {}) at {}: {e}",
                m.type_,
                m.source,
                target.display()
            )));
        }
    }
    Ok(Some(target))
}

/// Unmounts everything stacked at `target` (lazily, so a busy mount cannot wedge Delete).
pub fn unmount(target: &Path) {
    for _ in 0..16 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(e) => {
                log::warn!("unmount {}: {e}", target.display());
                break;
            }
        }
    }
}
