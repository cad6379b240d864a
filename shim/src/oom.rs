//! Watching a container's cgroup for OOM kills, so the shim can publish TaskOOM.
//!
//! - cgroup v1: an eventfd registered on `memory.oom_control` through `cgroup.event_control`;
//!   the kernel signals it on every OOM in the cgroup (and once more when the cgroup is
//!   removed, which ends the watch).
//! - cgroup v2: the `oom_kill` counter of `memory.events`, read whenever the file changes
//!   (polled; the file is tiny).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const V2_POLL: Duration = Duration::from_millis(200);

/// The `oom_kill` count in the text of a v2 `memory.events` file.
pub fn oom_kills(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Calls `on_oom` (from a thread of its own) each time the cgroup at `fs_path` (relative to
/// the controller's mount) OOM-kills, until the cgroup is removed.
pub fn watch(fs_path: &str, on_oom: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let cgroups_path = fs_path;
    let rel = fs_path.trim_start_matches('/');
    let v1 = Path::new(CGROUP_ROOT).join("memory").join(rel);
    if v1.join("memory.oom_control").exists() {
        return watch_v1(v1, on_oom);
    }
    let v2 = Path::new(CGROUP_ROOT).join(rel).join("memory.events");
    if v2.exists() {
        return watch_v2(v2, on_oom);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no memory cgroup for {cgroups_path}"),
    ))
}

fn watch_v1(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let control = File::open(dir.join("memory.oom_control"))?;
    // SAFETY: eventfd returns a new descriptor (or -1), which we own from here on.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: efd is a valid descriptor we own.
    let mut event = unsafe { File::from_raw_fd(efd) };
    let mut register = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))?;
    register.write_all(format!("{} {}", event.as_raw_fd(), control.as_raw_fd()).as_bytes())?;
    std::thread::Builder::new()
        .name("oom-v1".into())
        .spawn(move || {
            let _control = control;
            let mut buf = [0u8; 8];
            while event.read_exact(&mut buf).is_ok() {
                // The last event comes when the cgroup goes away.
                if !dir.exists() {
                    break;
                }
                on_oom();
            }
        })?;
    Ok(())
}

fn watch_v2(events: PathBuf, on_oom: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let mut seen = oom_kills(&std::fs::read_to_string(&events)?);
    std::thread::Builder::new()
        .name("oom-v2".into())
        .spawn(move || loop {
            std::thread::sleep(V2_POLL);
            let Ok(text) = std::fs::read_to_string(&events) else {
                break;
            };
            let now = oom_kills(&text);
            if now > seen {
                seen = now;
                on_oom();
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memory_events() {
        let text = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(text), 1);
        assert_eq!(oom_kills(""), 0);
    }

    #[test]
    fn a_missing_cgroup_is_an_error() {
        assert!(watch("/wasmpod-no-such-cgroup/x", || {}).is_err());
    }
}
