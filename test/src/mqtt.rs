//! A private MQTT broker for the Spin MQTT tests: Debian's `mosquitto` (`make setup-test`) on
//! a free loopback port, anonymous clients allowed, nothing persisted, stopped when dropped;
//! `mosquitto_sub` collects what is published. [`Mosquitto::start_tls`] listens for TLS
//! clients too, with a certificate from a test CA.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running broker.
pub struct Mosquitto {
    child: Child,
    config: tempfile::NamedTempFile,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its TLS port on 127.0.0.1, when it has one.
    pub tls_port: Option<u16>,
}

/// A `mosquitto_sub` subscribed to a topic, its lines read as they come.
pub struct Subscriber {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Mosquitto {
    /// Starts one, or says why the test cannot run (and fails under CI).
    pub fn start() -> Option<Mosquitto> {
        Mosquitto::start_with(None)
    }

    /// Starts one that also listens for TLS clients on [`Mosquitto::tls_port`], with a
    /// certificate for 127.0.0.1 that `ca` signs.
    pub fn start_tls(ca: &crate::tls::TestCa) -> Option<Mosquitto> {
        Mosquitto::start_with(Some(ca))
    }

    fn start_with(ca: Option<&crate::tls::TestCa>) -> Option<Mosquitto> {
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
        let mut text = format!("per_listener_settings false\nallow_anonymous true\npersistence false\nlistener {port} 127.0.0.1\n");
        let tls_port = ca.map(|ca| {
            let tls_port = crate::ctr::free_port();
            let issued = ca.server("mosquitto");
            text += &format!(
                "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
                ca.cert_file().display(),
                issued.cert.display(),
                issued.key.display()
            );
            tls_port
        });
        std::fs::write(config.path(), text).expect("write the broker config");
        let broker = Mosquitto {
            child: spawn(config.path()),
            config,
            port,
            tls_port,
        };
        broker.wait_listening();
        Some(broker)
    }

    fn wait_listening(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it and starts it again on the same port, with no sessions or retained
    /// messages.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.config.path());
        self.wait_listening();
    }

    /// Publishes `message` on `topic` (QoS 1), `retained` for subscribers still to come.
    pub fn publish(&self, topic: &str, message: &str, retained: bool) {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", topic, "-m", message, "-q", "1"]);
        if retained {
            cmd.arg("-r");
        }
        let out = cmd.output().expect("run mosquitto_pub");
        assert!(
            out.status.success(),
            "mosquitto_pub: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

fn spawn(config: &std::path::Path) -> Child {
    Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto")
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
        self.next_message_within(Duration::from_secs(10))
    }

    /// The next message within `wait`.
    pub fn next_message_within(&self, wait: Duration) -> Option<String> {
        let debug = |l: &str| l.starts_with("Client ") || l.starts_with("Subscribed ");
        self.next_matching(|l| !debug(l), wait)
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
