//! Tests that cannot run here say so, loudly: a line on stderr and in the file named by
//! `WASMPOD_SKIP_LOG`, which `test/e2e.sh` prints at the end of the run (cargo shows a
//! passing test's stderr to nobody). A test the suite does not apply to (Wasm layers on
//! containerd 1.6, Docker where no dockerd is started) is skipped; one whose prerequisite is
//! missing fails under CI (`CI` set), where every prerequisite is installed, and is skipped
//! elsewhere.

use std::io::Write;

/// Why a test does not run.
pub enum Skip {
    /// The test does not apply to this suite (this containerd, no dockerd by design).
    NotApplicable(String),
    /// Something the test needs is not there.
    Missing(String),
}

/// Records that the current test does not run, or fails it under CI for a missing
/// prerequisite.
pub fn skip(why: Skip) {
    let test = std::thread::current()
        .name()
        .unwrap_or("an e2e test")
        .to_string();
    let reason = match why {
        Skip::NotApplicable(reason) => reason,
        Skip::Missing(reason) => {
            if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                panic!("{test}: {reason}; CI installs every prerequisite, so this is a failure");
            }
            reason
        }
    };
    let line = format!("SKIPPED {test}: {reason}");
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("WASMPOD_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}
