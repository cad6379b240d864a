//! A private Redis for the Spin Redis tests: Debian's `redis-server` (`make setup-test`) on
//! a free loopback port, nothing saved, stopped when dropped; `redis-cli` to look inside.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct Redis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Redis {
    /// Starts one, or says why the test cannot run (and fails under CI).
    pub fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            crate::skip::skip(crate::skip::Skip::Missing(
                "redis-server is not installed (`make setup-test` installs it)".into(),
            ));
            return None;
        }
        let port = crate::ctr::free_port();
        let redis = Redis {
            child: spawn(port),
            port,
        };
        redis.wait_ready();
        Some(redis)
    }

    /// Stops it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port (after [`Redis::stop`]), empty.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.port);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `channel` has `n` subscribers.
    pub fn wait_subscribers(&self, channel: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.cli(&["PUBSUB", "NUMSUB", channel]);
            if out.lines().nth(1).map(str::trim) == Some(n.to_string().as_str()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{channel} never had {n} subscribers: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `key` holds `value`.
    pub fn wait_value(&self, key: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.cli(&["GET", key]);
            if got == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{key} is {got:?}, never {value:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cli ARGS` against it, its output trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        out
    }
}

fn spawn(port: u16) -> Child {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
