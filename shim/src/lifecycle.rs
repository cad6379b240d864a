//! A task's lifecycle as a state machine. Every transition is one method; an illegal move is a
//! [`LifecycleError`] that the service reports as `FailedPrecondition`.

use std::time::SystemTime;

/// How and when the task's init process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit status (128 + signal for a signal death).
    pub code: u32,
    /// When the shim saw the exit.
    pub at: SystemTime,
}

/// Where a task is in its life. Deletion removes the task, so there is no `Deleted` state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// The container exists; its init waits for Start.
    Created {
        /// Init's pid.
        pid: i32,
    },
    /// Start is in progress. An exit seen meanwhile is held back so that TaskStart is
    /// always published before TaskExit.
    Starting {
        /// Init's pid.
        pid: i32,
        /// An exit that arrived during Start.
        early_exit: Option<ExitInfo>,
    },
    /// The payload runs.
    Running {
        /// Init's pid.
        pid: i32,
    },
    /// The container's processes are frozen (freezer cgroup).
    Paused {
        /// Init's pid.
        pid: i32,
    },
    /// Init has exited.
    Stopped {
        /// Init's pid (kept for State and Delete).
        pid: i32,
        /// The exit.
        exit: ExitInfo,
    },
}

/// An operation the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op} a task in {state} state")]
pub struct LifecycleError {
    /// The refused operation.
    pub op: &'static str,
    /// The state it was refused in.
    pub state: &'static str,
}

/// What the caller must do after an exit was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitEffect {
    /// Publish TaskExit and wake waiters.
    Publish(ExitInfo),
    /// Held until Start finishes.
    Deferred,
    /// Already stopped; nothing to do.
    Ignored,
}

impl Lifecycle {
    /// The state's name as containerd shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Lifecycle::Created { .. } => "created",
            Lifecycle::Starting { .. } => "starting",
            Lifecycle::Running { .. } => "running",
            Lifecycle::Paused { .. } => "paused",
            Lifecycle::Stopped { .. } => "stopped",
        }
    }

    /// Init's pid.
    pub fn pid(&self) -> i32 {
        match *self {
            Lifecycle::Created { pid }
            | Lifecycle::Starting { pid, .. }
            | Lifecycle::Running { pid }
            | Lifecycle::Paused { pid }
            | Lifecycle::Stopped { pid, .. } => pid,
        }
    }

    /// The exit, once stopped.
    pub fn exit(&self) -> Option<ExitInfo> {
        match *self {
            Lifecycle::Stopped { exit, .. } => Some(exit),
            _ => None,
        }
    }

    fn refuse(&self, op: &'static str) -> LifecycleError {
        LifecycleError {
            op,
            state: self.name(),
        }
    }

    /// Created -> Starting.
    pub fn begin_start(&mut self) -> Result<i32, LifecycleError> {
        match *self {
            Lifecycle::Created { pid } => {
                *self = Lifecycle::Starting {
                    pid,
                    early_exit: None,
                };
                Ok(pid)
            }
            _ => Err(self.refuse("start")),
        }
    }

    /// Sets the pid while Starting (an exec's pid is known only once it is created).
    pub fn set_pid(&mut self, new_pid: i32) {
        if let Lifecycle::Starting { pid, .. } = self {
            *pid = new_pid;
        }
    }

    /// Starting -> Running, or Stopped if the payload already exited. Returns the held exit.
    pub fn finish_start(&mut self) -> Option<ExitInfo> {
        if let Lifecycle::Starting { pid, early_exit } = *self {
            *self = match early_exit {
                Some(exit) => Lifecycle::Stopped { pid, exit },
                None => Lifecycle::Running { pid },
            };
            return early_exit;
        }
        None
    }

    /// Starting -> Created after a failed Start (or Stopped if init died meanwhile).
    pub fn abort_start(&mut self) -> Option<ExitInfo> {
        if let Lifecycle::Starting { pid, early_exit } = *self {
            *self = match early_exit {
                Some(exit) => Lifecycle::Stopped { pid, exit },
                None => Lifecycle::Created { pid },
            };
            return early_exit;
        }
        None
    }

    /// Records init's exit.
    pub fn exited(&mut self, exit: ExitInfo) -> ExitEffect {
        match *self {
            Lifecycle::Created { pid } | Lifecycle::Running { pid } | Lifecycle::Paused { pid } => {
                *self = Lifecycle::Stopped { pid, exit };
                ExitEffect::Publish(exit)
            }
            Lifecycle::Starting {
                pid,
                early_exit: None,
            } => {
                *self = Lifecycle::Starting {
                    pid,
                    early_exit: Some(exit),
                };
                ExitEffect::Deferred
            }
            Lifecycle::Starting { .. } | Lifecycle::Stopped { .. } => ExitEffect::Ignored,
        }
    }

    /// Running -> Paused.
    pub fn pause(&mut self) -> Result<i32, LifecycleError> {
        match *self {
            Lifecycle::Running { pid } => {
                *self = Lifecycle::Paused { pid };
                Ok(pid)
            }
            _ => Err(self.refuse("pause")),
        }
    }

    /// Paused -> Running.
    pub fn resume(&mut self) -> Result<i32, LifecycleError> {
        match *self {
            Lifecycle::Paused { pid } => {
                *self = Lifecycle::Running { pid };
                Ok(pid)
            }
            _ => Err(self.refuse("resume")),
        }
    }

    /// Whether a signal may be sent: not once stopped.
    pub fn check_kill(&self) -> Result<i32, LifecycleError> {
        match self {
            Lifecycle::Stopped { .. } => Err(self.refuse("kill")),
            _ => Ok(self.pid()),
        }
    }

    /// Whether Delete may proceed now: only once stopped (a created task is killed first).
    pub fn check_delete(&self) -> Result<ExitInfo, LifecycleError> {
        match *self {
            Lifecycle::Stopped { exit, .. } => Ok(exit),
            _ => Err(self.refuse("delete")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: u32) -> ExitInfo {
        ExitInfo {
            code,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn normal_life() {
        let mut l = Lifecycle::Created { pid: 7 };
        assert_eq!(l.begin_start(), Ok(7));
        assert_eq!(l.finish_start(), None);
        assert_eq!(l, Lifecycle::Running { pid: 7 });
        assert_eq!(l.check_delete().unwrap_err().state, "running");
        assert_eq!(l.exited(exit(3)), ExitEffect::Publish(exit(3)));
        assert_eq!(l.check_delete(), Ok(exit(3)));
        assert!(l.check_kill().is_err());
        assert_eq!(l.exited(exit(9)), ExitEffect::Ignored);
        assert_eq!(l.exit(), Some(exit(3)));
    }

    #[test]
    fn exit_during_start_is_held_back() {
        let mut l = Lifecycle::Created { pid: 7 };
        l.begin_start().unwrap();
        assert_eq!(l.exited(exit(0)), ExitEffect::Deferred);
        assert_eq!(l.finish_start(), Some(exit(0)));
        assert_eq!(
            l,
            Lifecycle::Stopped {
                pid: 7,
                exit: exit(0)
            }
        );
    }

    #[test]
    fn failed_start_goes_back_to_created() {
        let mut l = Lifecycle::Created { pid: 7 };
        l.begin_start().unwrap();
        assert_eq!(l.abort_start(), None);
        assert_eq!(l, Lifecycle::Created { pid: 7 });
        assert_eq!(l.begin_start(), Ok(7));
        assert_eq!(l.begin_start().unwrap_err().op, "start");
    }

    #[test]
    fn pause_and_resume() {
        let mut l = Lifecycle::Running { pid: 7 };
        assert_eq!(l.resume().unwrap_err().op, "resume");
        assert_eq!(l.pause(), Ok(7));
        assert_eq!(l.name(), "paused");
        assert!(l.check_delete().is_err());
        assert_eq!(l.pause().unwrap_err().state, "paused");
        assert_eq!(l.resume(), Ok(7));
        l.pause().unwrap();
        assert_eq!(l.exited(exit(137)), ExitEffect::Publish(exit(137)));
        assert!(l.pause().is_err());
    }

    #[test]
    fn an_exec_gets_its_pid_while_starting() {
        let mut l = Lifecycle::Created { pid: 0 };
        l.begin_start().unwrap();
        l.set_pid(42);
        l.finish_start();
        assert_eq!(l, Lifecycle::Running { pid: 42 });
    }

    #[test]
    fn created_tasks_can_be_killed_and_exit() {
        let mut l = Lifecycle::Created { pid: 7 };
        assert_eq!(l.check_kill(), Ok(7));
        assert_eq!(l.exited(exit(137)), ExitEffect::Publish(exit(137)));
        assert!(l.begin_start().is_err());
    }
}
