//! The shim's only reaper. The shim is a child subreaper, so it inherits every container
//! process when libcontainer's setup process exits; one SIGCHLD-driven loop collects all exits
//! with `waitpid(-1)` and hands each to whoever watches that pid. An exit that arrives before
//! anybody watches its pid is kept (a bounded number of them) and handed over on [`Reaper::watch`].
//! Nothing else in the shim may wait for children.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How many unclaimed exits are remembered.
const UNCLAIMED_LIMIT: usize = 4096;

#[derive(Default)]
struct Inner {
    watchers: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: HashMap<i32, i32>,
    unclaimed_order: VecDeque<i32>,
}

/// Collects child exits and routes them by pid.
#[derive(Default)]
pub struct Reaper {
    /// Guards the watchers and the unclaimed exits.
    inner: Mutex<Inner>,
}

/// The exit status as a shell reports it: the code, or 128 + the signal.
pub fn status_code(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

impl Reaper {
    /// A receiver that resolves with `pid`'s exit status.
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(code) = inner.unclaimed.remove(&pid) {
            inner.unclaimed_order.retain(|p| *p != pid);
            let _ = tx.send(code);
        } else {
            inner.watchers.insert(pid, tx);
        }
        rx
    }

    /// Hands `pid`'s exit to its watcher, or keeps it for a later [`Reaper::watch`].
    pub fn deliver(&self, pid: i32, code: i32) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = inner.watchers.remove(&pid) {
            let _ = tx.send(code);
            return;
        }
        if inner.unclaimed.insert(pid, code).is_none() {
            inner.unclaimed_order.push_back(pid);
        }
        while inner.unclaimed_order.len() > UNCLAIMED_LIMIT {
            if let Some(old) = inner.unclaimed_order.pop_front() {
                inner.unclaimed.remove(&old);
            }
        }
    }

    /// Reaps every child that has exited so far.
    pub fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if let Some((pid, code)) = status_code(status) {
                        log::debug!("reaped pid {pid}: exit status {code}");
                        self.deliver(pid, code);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    break;
                }
            }
        }
    }

    /// Starts the SIGCHLD loop. Call before the first child is spawned.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = self.clone();
        tokio::spawn(async move {
            reaper.reap_all();
            while sigchld.recv().await.is_some() {
                reaper.reap_all();
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn early_and_late_exits_reach_their_watchers() {
        let r = Reaper::default();
        r.deliver(10, 3);
        assert_eq!(r.watch(10).await.unwrap(), 3);
        let rx = r.watch(11);
        r.deliver(11, 137);
        assert_eq!(rx.await.unwrap(), 137);
    }

    #[test]
    fn unclaimed_exits_are_bounded() {
        let r = Reaper::default();
        for pid in 0..(UNCLAIMED_LIMIT as i32 + 10) {
            r.deliver(pid, 0);
        }
        let inner = r.inner.lock().unwrap();
        assert_eq!(inner.unclaimed.len(), UNCLAIMED_LIMIT);
        assert!(!inner.unclaimed.contains_key(&0));
    }

    #[test]
    fn status_codes() {
        use nix::sys::signal::Signal;
        let p = Pid::from_raw(5);
        assert_eq!(status_code(WaitStatus::Exited(p, 42)), Some((5, 42)));
        assert_eq!(
            status_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some((5, 137))
        );
        assert_eq!(status_code(WaitStatus::StillAlive), None);
    }
}
