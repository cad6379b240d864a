//! A certificate authority of the tests' own, made with `openssl` (`make setup-test`) in a
//! temporary directory: certificates it signs for servers on 127.0.0.1 and for clients, so
//! that the TLS tests trust it and nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA: its key and certificate in a directory of its own.
pub struct TestCa {
    dir: tempfile::TempDir,
}

/// A certificate the CA signed and its private key (PEM files, readable by all: they are a
/// test's).
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA.
    pub fn new() -> TestCa {
        let ca = TestCa {
            dir: tempfile::tempdir().expect("a directory for the CA"),
        };
        // Servers that drop to a user of their own read their certificates here.
        readable_dir(ca.dir.path());
        ca.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=wasmpod e2e CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        ca
    }

    /// The CA's certificate file.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA's certificate (PEM).
    pub fn pem(&self) -> String {
        std::fs::read_to_string(self.cert_file()).expect("read ca.crt")
    }

    /// A certificate for a server on 127.0.0.1, named `name` in the CA's directory.
    pub fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(
            name,
            &format!("/CN={name}"),
            "extendedKeyUsage=clientAuth\n",
        )
    }

    fn issue(&self, name: &str, subject: &str, extensions: &str) -> Issued {
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        std::fs::write(self.dir.path().join(&ext), extensions).expect("write the extensions");
        self.openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
        let issued = Issued {
            cert: self.dir.path().join(cert),
            key: self.dir.path().join(key),
        };
        readable(&issued.key);
        issued
    }

    fn openssl(&self, args: &[&str]) {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(self.dir.path());
        if let Err(e) = crate::process::client_output(&mut cmd, "openssl") {
            panic!("openssl {args:?} (`make setup-test` installs it): {e}");
        }
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

fn readable_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `openssl s_server -www` on a free loopback port: an HTTPS server with a certificate from
/// a test CA that answers every request with a status page (`200`), and asks for a client
/// certificate from that CA; killed when dropped.
pub struct HttpsServer {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl HttpsServer {
    /// Starts one whose clients must present a certificate `ca` signed.
    pub fn start(ca: &TestCa) -> HttpsServer {
        let issued = ca.server("https");
        let port = crate::ctr::free_port();
        let child = Command::new("openssl")
            .args(["s_server", "-www", "-quiet", "-Verify", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&issued.cert)
            .arg("-key")
            .arg(&issued.key)
            .arg("-CAfile")
            .arg(ca.cert_file())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "openssl s_server did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        HttpsServer { child, port }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets servers that drop to a user of their own read a test's key.
fn readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}
