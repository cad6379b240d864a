//! A private PostgreSQL for the Spin Postgres tests: Debian's `postgresql` (`make
//! setup-test`), a fresh cluster ([`Cluster`]) in a temporary directory owned by the
//! `postgres` user (the server refuses to run as root), on a free loopback port with trust
//! authentication, fsync off; stopped (fast shutdown) and removed when dropped. `psql` looks
//! inside. [`Postgres::start_tls`] serves TLS too, with a certificate from a test CA. A cluster alone is what a containerized server ([`crate::native_images`]) mounts.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster.
pub struct Postgres {
    child: Child,
    cluster: Cluster,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// The directory of the newest installed server's programs.
fn server_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// A fresh cluster (trust authentication, user `postgres`, UTF-8, C locale, UTC) in a temporary directory
/// owned by the `postgres` user, for a server of the host's or of a container.
pub struct Cluster {
    /// The server's programs.
    pub bin: PathBuf,
    /// The cluster's data directory.
    pub data: PathBuf,
    /// The `postgres` user and group, who own it.
    pub uid: u32,
    pub gid: u32,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Makes one with `initdb`, or says why the test cannot run (and fails under CI).
    pub fn init() -> Option<Cluster> {
        let (Some(bin), Some((uid, gid))) = (server_bin(), postgres_user()) else {
            crate::skip::skip(crate::skip::Skip::Missing(
                "postgresql is not installed (`make setup-test` installs it)".into(),
            ));
            return None;
        };
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster");
        let cluster = Cluster {
            data: dir.path().join("data"),
            bin,
            uid,
            gid,
            dir,
        };
        let init = cluster
            .as_postgres("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&cluster.data)
            // What the configuration names must exist wherever the server runs: the C
            // locale and UTC are in every image.
            .env("TZ", "UTC")
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        Some(cluster)
    }

    /// `program` of the server, run as the `postgres` user.
    fn as_postgres(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.uid(self.uid).gid(self.gid).current_dir(self.dir.path());
        c
    }
}

impl Postgres {
    /// Starts one, or says why the test cannot run (and fails under CI).
    pub fn start() -> Option<Postgres> {
        Postgres::start_with(None)
    }

    /// Starts one that also serves TLS (`ssl = on`), with a certificate for 127.0.0.1 that
    /// `ca` signs.
    pub fn start_tls(ca: &crate::tls::TestCa) -> Option<Postgres> {
        Postgres::start_with(Some(ca))
    }

    fn start_with(ca: Option<&crate::tls::TestCa>) -> Option<Postgres> {
        let cluster = Cluster::init()?;
        let port = crate::ctr::free_port();
        let mut server = cluster.as_postgres("postgres");
        server
            .arg("-D")
            .arg(&cluster.data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(cluster.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        if let Some(ca) = ca {
            // The server wants its key private and its own.
            let issued = ca.server("postgres");
            let key = cluster.dir.path().join("server.key");
            std::fs::copy(&issued.key, &key).expect("copy the key");
            std::os::unix::fs::chown(&key, Some(cluster.uid), Some(cluster.gid)).expect("chown");
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod the key");
            server.args(["-c", "ssl=on", "-c"]);
            server.arg(format!("ssl_cert_file={}", issued.cert.display()));
            server
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        let child = server
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let pg = Postgres {
            child,
            cluster,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while pg.psql("SELECT 1").as_deref() != Ok("1") {
            assert!(
                Instant::now() < deadline,
                "postgres did not answer on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(pg)
    }

    /// `psql -At -c SQL` against database `postgres`: its output trimmed, or its error.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(self.cluster.bin.join("psql"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ]);
        crate::process::client_output(&mut cmd, "psql")
    }

    /// The URL of database `postgres` on it.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A fast shutdown: the server ends its backends and exits.
        crate::process::stop_gracefully(&mut self.child, libc::SIGINT);
    }
}
