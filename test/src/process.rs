//! The servers the tests start (PostgreSQL, MariaDB): running their clients, and ending
//! them with a signal that shuts the server down cleanly, up to 20 s for it to exit, then
//! SIGKILL.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Sends `signal` to `child` and waits for it to exit, killing it after 20 s.
pub fn stop_gracefully(child: &mut Child, signal: libc::c_int) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child this process has not reaped yet.
        unsafe { libc::kill(pid, signal) };
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a client `cmd` (named `what` in errors): its output trimmed, or its error output.
pub fn client_output(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("run {what}: {e}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}
