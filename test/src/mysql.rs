//! A private MariaDB for the Spin MySQL tests: Debian's `mariadb-server` (`make setup-test`),
//! a fresh data directory owned by the `mysql` user in a temporary directory, on a free
//! loopback port, without grant tables (any user may connect, no password), stopped when
//! dropped. `mariadb` looks inside.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/sbin/mariadbd";

/// A running server.
pub struct Mariadb {
    child: Child,
    _dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Mariadb {
    /// Starts one with a database `app`, or says why the test cannot run (and fails under CI).
    pub fn start() -> Option<Mariadb> {
        Mariadb::start_with(None)
    }

    /// Starts one that also serves TLS, with a certificate for 127.0.0.1 that `ca` signs.
    pub fn start_tls(ca: &crate::tls::TestCa) -> Option<Mariadb> {
        Mariadb::start_with(Some(ca))
    }

    fn start_with(ca: Option<&crate::tls::TestCa>) -> Option<Mariadb> {
        if !Path::new(SERVER).exists() || Command::new("mariadb").arg("--version").output().is_err()
        {
            crate::skip::skip(crate::skip::Skip::Missing(
                "mariadb-server is not installed (`make setup-test` installs it)".into(),
            ));
            return None;
        }
        let dir = tempfile::tempdir().expect("a directory for the server");
        let status = Command::new("chown")
            .args(["mysql:mysql"])
            .arg(dir.path())
            .status()
            .expect("run chown");
        assert!(status.success(), "chown the server's directory");
        let data = dir.path().join("data");
        let init = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .expect("run mariadb-install-db");
        assert!(
            init.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = crate::ctr::free_port();
        let mut server = Command::new(SERVER);
        if let Some(ca) = ca {
            let issued = ca.server("mariadb");
            server
                .arg("--no-defaults")
                .arg(format!("--ssl-cert={}", issued.cert.display()))
                .arg(format!("--ssl-key={}", issued.key.display()))
                .arg(format!("--ssl-ca={}", ca.cert_file().display()));
        } else {
            server.arg("--no-defaults");
        }
        let child = server
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--port={port}"))
            .args([
                "--user=mysql",
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
            ])
            .args(["--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let db = Mariadb {
            child,
            _dir: dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while db.sql("SELECT 1").as_deref() != Ok("1") {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not answer on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        db.sql("CREATE DATABASE app").expect("create the database");
        Some(db)
    }

    /// `mariadb -N -e SQL` (database `app` once it exists): its output trimmed, or its error.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new("mariadb");
        cmd.args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &self.port.to_string(),
        ])
        .args(["-u", "root", "-N", "-B", "-e", sql]);
        crate::process::client_output(&mut cmd, "mariadb")
    }

    /// The URL of database `app` on it.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/app", self.port)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        // SIGTERM: a clean shutdown.
        crate::process::stop_gracefully(&mut self.child, libc::SIGTERM);
    }
}
