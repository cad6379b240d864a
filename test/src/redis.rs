//! A private Redis for the Spin Redis tests: Debian's `redis-server` (`make setup-test`) on
//! a free loopback port, nothing saved, stopped when dropped; `redis-cli` to look inside.
//! [`Redis::start_tls`] listens for TLS clients too, with a certificate from a test CA.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct Redis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its TLS port on 127.0.0.1, and the server's certificate, when it has one.
    pub tls: Option<(u16, crate::tls::Issued, std::path::PathBuf)>,
}

impl Redis {
    /// Starts one, or says why the test cannot run (and fails under CI).
    pub fn start() -> Option<Redis> {
        Redis::start_with(None)
    }

    /// Starts one that also listens for TLS clients on a port of its own
    /// ([`Redis::tls_port`]), with a certificate for 127.0.0.1 that `ca` signs; clients may
    /// present a certificate.
    pub fn start_tls(ca: &crate::tls::TestCa) -> Option<Redis> {
        Redis::start_with(Some(ca))
    }

    /// The TLS port.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|t| t.0)
    }

    fn start_with(ca: Option<&crate::tls::TestCa>) -> Option<Redis> {
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
        let tls = ca.map(|ca| (crate::ctr::free_port(), ca.server("redis"), ca.cert_file()));
        let redis = Redis {
            child: spawn(port, tls.as_ref()),
            port,
            tls,
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
        self.child = spawn(self.port, self.tls.as_ref());
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

fn spawn(port: u16, tls: Option<&(u16, crate::tls::Issued, std::path::PathBuf)>) -> Child {
    let mut server = Command::new("redis-server");
    server
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
    if let Some((tls_port, issued, ca)) = tls {
        server
            .args([
                "--tls-port",
                &tls_port.to_string(),
                "--tls-auth-clients",
                "optional",
            ])
            .arg("--tls-cert-file")
            .arg(&issued.cert)
            .arg("--tls-key-file")
            .arg(&issued.key)
            .arg("--tls-ca-cert-file")
            .arg(ca);
    }
    server
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
