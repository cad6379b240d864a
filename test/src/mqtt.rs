//! A private MQTT broker for the Spin MQTT tests: Debian's `mosquitto` (`make setup-test`) on
//! a free loopback port, anonymous clients allowed, nothing persisted, stopped when dropped;
//! `mosquitto_sub` collects what is published.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running broker.
pub struct Mosquitto {
    child: Child,
    _config: tempfile::NamedTempFile,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// A `mosquitto_sub` subscribed to a topic, its lines read as they come.
pub struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Mosquitto {
    /// Starts one, or says why the test cannot run (and fails under CI).
    pub fn start() -> Option<Mosquitto> {
        if Command::new("mosquitto_sub")
            .arg("--help")
            .output()
            .is_err()
            || !std::path::Path::new("/usr/sbin/mosquitto").exists()
        {
            crate::skip::skip(crate::skip::Skip::Missing(
                "mosquitto is not installed (`make setup-test` installs it)".into(),
            ));
            return None;
        }
        let port = crate::ctr::free_port();
        let config = tempfile::NamedTempFile::new().expect("a broker config");
        std::fs::write(
            config.path(),
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("write the broker config");
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(config.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let broker = Mosquitto {
            child,
            _config: config,
            port,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(broker)
    }

    /// A subscriber to `topic` (QoS 2), returned once the broker has confirmed it.
    pub fn subscribe(&self, topic: &str) -> Subscriber {
        // Line-buffered: its debug lines (the SUBACK) come as they are printed.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-t", topic, "-q", "2", "-v", "-d"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let (tx, lines) = mpsc::channel();
        let out: ChildStdout = child.stdout.take().expect("its stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let sub = Subscriber { child, lines };
        let confirmed = sub.next_matching(|l| l.contains("SUBACK"), Duration::from_secs(10));
        assert!(
            confirmed.is_some(),
            "mosquitto_sub was not subscribed to {topic}"
        );
        sub
    }
}

impl Subscriber {
    fn next_matching(&self, want: impl Fn(&str) -> bool, wait: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if want(&line) {
                return Some(line);
            }
        }
    }

    /// The next message (`topic payload`, as `mosquitto_sub -v` prints it), skipping its
    /// debug lines, within 10 s.
    pub fn next_message(&self) -> Option<String> {
        let debug = |l: &str| l.starts_with("Client ") || l.starts_with("Subscribed ");
        self.next_matching(|l| !debug(l), Duration::from_secs(10))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
