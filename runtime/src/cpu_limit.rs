//! A command's CPU time limit (`wasmpod.dev/cpu-time-limit`), kept by the kernel: the guest's
//! process gets an `RLIMIT_CPU` that many seconds past the CPU time it has used so far
//! (loading the compiled code, setting up WASI), so the limit is the guest's own. At the soft
//! limit the kernel sends SIGXCPU, which [`crate::signals`] turns into a stop; the hard limit,
//! a little later, is SIGKILL for a guest that does not stop.

use crate::RuntimeError;

/// Seconds between the soft limit (SIGXCPU) and the hard one (SIGKILL): more than the
/// signal watcher's [`crate::signals::BACKSTOP`].
const GRACE_SECS: u64 = 3;

/// The `(soft, hard)` `RLIMIT_CPU` for a guest that may use `limit_secs` more seconds of CPU
/// in a process that has used `used` seconds and already has limits `current`: never above
/// the current ones (a limit the spec's `process.rlimits` set stays in force).
pub fn cpu_rlimit(used_secs: u64, limit_secs: u64, current: (u64, u64)) -> (u64, u64) {
    let soft = used_secs.saturating_add(limit_secs).min(current.0);
    let hard = soft.saturating_add(GRACE_SECS).min(current.1);
    (soft.min(hard), hard)
}

/// Limits this process to `limit_secs` more seconds of CPU time.
pub fn limit_cpu_time(limit_secs: u64) -> Result<(), RuntimeError> {
    let err = |what: &str| {
        RuntimeError::Wasi(format!(
            "cannot set the CPU time limit ({what}): {}",
            std::io::Error::last_os_error()
        ))
    };
    // SAFETY: getrusage/getrlimit/setrlimit on zeroed, correctly sized structs.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Err(err("getrusage"));
        }
        // Rounded up, so the guest gets at least its limit.
        let used = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) as u64 + 1;
        let mut current: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_CPU, &mut current) != 0 {
            return Err(err("getrlimit"));
        }
        let (soft, hard) = cpu_rlimit(used, limit_secs, (current.rlim_cur, current.rlim_max));
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        if libc::setrlimit(libc::RLIMIT_CPU, &new) != 0 {
            return Err(err("setrlimit"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_starts_from_what_was_used_and_stays_under_the_current_one() {
        let unlimited = (u64::MAX, u64::MAX);
        assert_eq!(cpu_rlimit(1, 5, unlimited), (6, 6 + GRACE_SECS));
        // A tighter limit from the spec stays.
        assert_eq!(cpu_rlimit(1, 50, (10, 12)), (10, 12));
        assert_eq!(cpu_rlimit(1, 50, (u64::MAX, 4)), (4, 4));
        assert_eq!(cpu_rlimit(u64::MAX, 5, unlimited), (u64::MAX, u64::MAX));
    }
}
