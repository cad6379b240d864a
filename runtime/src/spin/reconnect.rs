//! How a trigger keeps its connection to a server (Redis, an MQTT broker): each lost or
//! failed connection is a line in the log, then a wait that starts at 1 s and doubles up to
//! 30 s, reset once a connection is up again; a stop signal ends it.

use std::time::Duration;

use crate::signals::TerminationWatch;

/// The first wait after a failure.
const FIRST_WAIT: Duration = Duration::from_secs(1);

/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The wait before the next attempt.
#[derive(Debug)]
pub struct Backoff {
    wait: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { wait: FIRST_WAIT }
    }
}

impl Backoff {
    /// Called once a connection is up: the next failure waits the least again.
    pub fn connected(&mut self) {
        self.wait = FIRST_WAIT;
    }

    /// After a connection to `what` (`redis redis://cache:6379`) ended for `reason`: false
    /// if the app is stopping, else a line in the log and the wait, then true (try again).
    pub async fn retry(&mut self, what: &str, reason: &str, watch: &TerminationWatch) -> bool {
        if watch.signal().is_some() {
            return false;
        }
        eprintln!(
            "wasmpod: {what}: {reason}; trying again in {}s",
            self.wait.as_secs()
        );
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(MAX_WAIT);
        true
    }
}
