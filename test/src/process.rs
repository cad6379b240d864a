//! Ending the servers the tests start (PostgreSQL, MariaDB): a signal that shuts the server
//! down cleanly, up to 20 s for it to exit, then SIGKILL.

use std::process::Child;
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
