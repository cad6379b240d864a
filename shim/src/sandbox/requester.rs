//! Whether the shim still waits for the answer a zygote worker is working on. With each
//! request the shim sends the read end of a pipe whose write end it keeps while it waits; when
//! it gives the request up (containerd deleted the task whose Create this is, or went away) or
//! exits, the write end closes and the read end hangs up. A worker registers the read end
//! with [`watch`]; the long part of a Create (a compile in a child process) waits on it with
//! [`read_to_end_unless_gone`] and stops at once when the shim is gone, instead of running on
//! for nobody.
//!
//! Outside a worker (an exec'd helper, the compile mode) nothing is registered and the
//! requester is never gone.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The read end of this worker's requester pipe, when it serves one.
static REQUESTER: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// The shim no longer waits for this request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the shim gave up this request (the task was deleted, or the shim exited)")
    }
}

/// Registers `fd`, the read end of the requester pipe, for this process.
pub fn watch(fd: OwnedFd) {
    if let Ok(mut slot) = REQUESTER.lock() {
        *slot = Some(fd);
    }
}

/// Closes the registered pipe (before the container's processes are forked from this one, so
/// that they do not hold it).
pub fn release() {
    if let Ok(mut slot) = REQUESTER.lock() {
        slot.take();
    }
}

/// Whether the requester is gone (never, when nothing is registered).
pub fn gone() -> bool {
    let Ok(slot) = REQUESTER.lock() else {
        return false;
    };
    slot.as_ref().is_some_and(|fd| hung_up(fd.as_fd()))
}

/// Why a read stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The requester went away.
    Gone,
    /// The deadline passed.
    OutOfTime,
}

/// Reads `reader` to its end into `out`, unless the requester goes away or `deadline` passes
/// first.
pub fn read_to_end_unless_gone<R: Read + AsFd>(
    reader: &mut R,
    out: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), Stopped> {
    let requester = REQUESTER
        .lock()
        .ok()
        .and_then(|slot| slot.as_ref().and_then(|fd| fd.try_clone().ok()));
    read_until_hangup(reader, requester.as_ref().map(|r| r.as_fd()), out, deadline)
}

/// [`read_to_end_unless_gone`] with the requester pipe given (if there is one).
fn read_until_hangup<R: Read + AsFd>(
    reader: &mut R,
    requester: Option<BorrowedFd<'_>>,
    out: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), Stopped> {
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stopped::OutOfTime);
        }
        let timeout = PollTimeout::try_from(left.as_millis().clamp(1, 60_000) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        if let Some(requester) = requester {
            fds.push(PollFd::new(requester, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            // poll itself failing: read without watching rather than lose the answer.
            Err(_) => {
                let _ = reader.read_to_end(out);
                return Ok(());
            }
        }
        let requester_events = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        if requester_events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLIN)
        {
            return Err(Stopped::Gone);
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(()),
            }
        }
    }
}

/// Whether the pipe's write end is closed (or written to: the shim only ever closes it).
fn hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn far() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    fn pipe() -> (std::fs::File, std::fs::File) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (std::fs::File::from(r), std::fs::File::from(w))
    }

    #[test]
    fn reads_to_the_end_while_the_requester_waits() {
        let (requester_r, requester_w) = pipe();
        let (mut out_r, mut out_w) = pipe();
        let writer = std::thread::spawn(move || {
            out_w.write_all(b"compiled").unwrap();
        });
        let mut out = Vec::new();
        assert_eq!(
            read_until_hangup(&mut out_r, Some(requester_r.as_fd()), &mut out, far()),
            Ok(())
        );
        writer.join().unwrap();
        assert_eq!(out, b"compiled");
        assert!(!hung_up(requester_r.as_fd()));
        drop(requester_w);
        assert!(hung_up(requester_r.as_fd()));
    }

    #[test]
    fn stops_when_the_requester_closes_its_end() {
        let (requester_r, requester_w) = pipe();
        // A writer that never finishes: the answer would never come.
        let (mut out_r, _out_w) = pipe();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(requester_w);
        });
        let mut out = Vec::new();
        assert_eq!(
            read_until_hangup(&mut out_r, Some(requester_r.as_fd()), &mut out, far()),
            Err(Stopped::Gone)
        );
        closer.join().unwrap();
    }

    #[test]
    fn stops_at_the_deadline() {
        let (mut out_r, _out_w) = pipe();
        let mut out = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_millis(50);
        assert_eq!(
            read_until_hangup(&mut out_r, None, &mut out, deadline),
            Err(Stopped::OutOfTime)
        );
        assert!(Instant::now() >= deadline);
    }
}
