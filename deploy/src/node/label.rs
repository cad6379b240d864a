//! The node label `wasmpod.dev/installed=<version>` that the RuntimeClasses select on, set
//! on the installer's own node once containerd serves wasmpod's handlers, and removed by
//! uninstall: one merge patch of the Node through the Kubernetes API, with the pod's
//! in-cluster credentials (the ServiceAccount may patch nodes and nothing else). One request
//! needs no Kubernetes client library: it is made here with hyper over rustls, trusting only
//! the cluster's CA.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::error::NodeError;

pub const LABEL: &str = "wasmpod.dev/installed";

/// Where a pod finds its ServiceAccount's token and the cluster's CA.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The API server and the credentials to call it with.
pub struct ApiServer {
    /// `host:port` (an IPv6 address in brackets).
    authority: String,
    host: String,
    port: u16,
    token: String,
    /// TLS trusting these roots, or plain HTTP (tests).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Where the API server is and who we are, or why labelling is skipped.
pub enum Cluster {
    /// In a pod: `KUBERNETES_SERVICE_HOST` and the ServiceAccount token.
    InCluster(Box<ApiServer>),
    /// Not in a pod (an operator running the installer by hand, or a test).
    Outside,
}

impl Cluster {
    pub fn from_env() -> Result<Cluster, NodeError> {
        let Some(host) = std::env::var_os("KUBERNETES_SERVICE_HOST") else {
            return Ok(Cluster::Outside);
        };
        let host = host.to_string_lossy().to_string();
        let port = match std::env::var("KUBERNETES_SERVICE_PORT") {
            Ok(p) => p.parse().map_err(|_| {
                NodeError::Label(format!("KUBERNETES_SERVICE_PORT={p:?} is not a port"))
            })?,
            Err(_) => 443,
        };
        let read = |name: &str| {
            let path = format!("{SERVICE_ACCOUNT_DIR}/{name}");
            std::fs::read(&path)
                .map_err(|e| NodeError::Label(format!("in-cluster credentials: read {path}: {e}")))
        };
        let token = String::from_utf8_lossy(&read("token")?).trim().to_string();
        let tls = tls_trusting(&read("ca.crt")?)?;
        Ok(Cluster::InCluster(Box::new(ApiServer::new(
            &host,
            port,
            token,
            Some(tls),
        ))))
    }
}

/// A TLS client configuration that trusts only the PEM certificates in `ca`.
fn tls_trusting(ca: &[u8]) -> Result<Arc<rustls::ClientConfig>, NodeError> {
    let bad = |e: String| NodeError::Label(format!("in-cluster credentials: the CA: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl ApiServer {
    /// The API server at `host`:`port` called with `token`, over TLS with `tls` or plain HTTP.
    pub fn new(
        host: &str,
        port: u16,
        token: String,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> ApiServer {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        ApiServer {
            authority,
            host: host.to_string(),
            port,
            token,
            tls,
        }
    }

    /// Sends a merge patch of `path` and returns the JSON the server answered with.
    async fn merge_patch(
        &self,
        path: &str,
        patch: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect to {}: {e}", self.authority))?;
        let io: Box<dyn Io> = match &self.tls {
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("{}: {e}", self.host))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.authority))?;
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP with {}: {e}", self.authority))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(Method::PATCH)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, "application/merge-patch+json")
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(patch.to_string())))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("read the answer: {e}"))?
            .to_bytes();
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status != StatusCode::OK {
            // The API server explains itself in a Status object.
            let message = json
                .as_ref()
                .and_then(|j| j.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).to_string());
            return Err(format!("{status}: {message}"));
        }
        json.ok_or_else(|| "the answer is not JSON".to_string())
    }
}

/// A connection to the API server, with TLS or without.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Sets the label to `value`, or removes it (`None`), on node `node`.
pub fn set(server: &ApiServer, node: &str, value: Option<&str>) -> Result<(), NodeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NodeError::Label(format!("tokio: {e}")))?;
    rt.block_on(async move {
        let patch = serde_json::json!({ "metadata": { "labels": { LABEL: value } } });
        let node_after = server
            .merge_patch(&format!("/api/v1/nodes/{node}"), &patch)
            .await
            .map_err(|e| NodeError::Label(format!("PATCH node {node}: {e}")))?;
        let now = node_after
            .pointer("/metadata/labels")
            .and_then(|l| l.get(LABEL))
            .and_then(|v| v.as_str());
        if now != value {
            return Err(NodeError::Label(format!(
                "the API server answered with {LABEL}={now:?}, not {value:?}"
            )));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// One request read off a connection: the request line, headers and body.
    struct Request {
        line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    /// Reads one request off `stream` and answers it with `status` and `answer`.
    fn serve_one(stream: impl Read + Write, status: &str, answer: &str) -> Request {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let stream = reader.get_mut();
        write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        )
        .unwrap();
        stream.flush().unwrap();
        Request {
            line: line.trim_end().to_string(),
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }

    /// An API server that answers one request with `answer` (status line and body, shaped as
    /// the Kubernetes API server answers) and hands the request it got to the test.
    fn api_server(
        status: &'static str,
        answer: &'static str,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            serve_one(stream, status, answer)
        });
        (url, handle)
    }

    fn plain(addr: &std::net::SocketAddr) -> ApiServer {
        ApiServer::new(
            &addr.ip().to_string(),
            addr.port(),
            "token-of-the-installer-sa".into(),
            None,
        )
    }

    #[test]
    fn labels_the_node_with_a_merge_patch() {
        let (url, server) = api_server("200 OK", include_str!("testdata/node-labelled.json"));
        set(&plain(&url), "worker-1", Some("0.1.0")).unwrap();
        let req = server.join().unwrap();
        assert_eq!(req.line, "PATCH /api/v1/nodes/worker-1 HTTP/1.1");
        let header = |k: &str| {
            req.headers
                .iter()
                .find(|(h, _)| h == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(header("content-type"), "application/merge-patch+json");
        assert_eq!(header("authorization"), "Bearer token-of-the-installer-sa");
        let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"metadata": {"labels": {"wasmpod.dev/installed": "0.1.0"}}})
        );
    }

    #[test]
    fn unlabelling_sends_null() {
        let (url, server) = api_server("200 OK", include_str!("testdata/node-unlabelled.json"));
        set(&plain(&url), "worker-1", None).unwrap();
        let body: serde_json::Value = serde_json::from_str(&server.join().unwrap().body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"metadata": {"labels": {"wasmpod.dev/installed": null}}})
        );
    }

    #[test]
    fn a_forbidden_answer_is_an_error_naming_the_node() {
        let (url, server) = api_server("403 Forbidden", include_str!("testdata/forbidden.json"));
        let err = set(&plain(&url), "worker-1", Some("0.1.0"))
            .unwrap_err()
            .to_string();
        server.join().unwrap();
        assert!(
            err.contains("worker-1") && err.contains("forbidden"),
            "{err}"
        );
    }

    /// Runs `openssl` with `args` in `dir`.
    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let made = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(made.status.success(), "openssl {args:?}: {made:?}");
    }

    const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

    /// A CA `name` (`name.crt`, `name.key` in `dir`), made by `openssl`; its certificate (PEM).
    fn ca(dir: &std::path::Path, name: &str) -> Vec<u8> {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=ca"];
        args.extend(EC);
        args.extend(["-keyout", &key, "-out", &crt]);
        openssl(dir, &args);
        std::fs::read(dir.join(crt)).unwrap()
    }

    /// A serving certificate for 127.0.0.1 signed by CA `ca`: (certificate, key), PEM.
    fn serving_cert(dir: &std::path::Path, ca: &str) -> (Vec<u8>, Vec<u8>) {
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let mut args = vec!["req", "-nodes", "-subj", "/CN=kube-apiserver"];
        args.extend(EC);
        args.extend(["-keyout", "srv.key", "-out", "srv.csr"]);
        openssl(dir, &args);
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "srv.csr",
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "ext",
                "-out",
                "srv.crt",
            ],
        );
        (
            std::fs::read(dir.join("srv.crt")).unwrap(),
            std::fs::read(dir.join("srv.key")).unwrap(),
        )
    }

    #[test]
    fn talks_tls_to_a_server_the_clusters_ca_vouches_for_and_to_no_other() {
        use rustls::pki_types::PrivateKeyDer;
        let dir = tempfile::tempdir().unwrap();
        let cluster_ca = ca(dir.path(), "cluster");
        let other_ca = ca(dir.path(), "other");
        let (cert, key) = serving_cert(dir.path(), "cluster");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_server = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from_pem_slice(&cert).unwrap()],
                    PrivateKeyDer::from_pem_slice(&key).unwrap(),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            // The first client does not trust the server and hangs up; the second does.
            for _ in 0..2 {
                let (mut tcp, _) = listener.accept().unwrap();
                let mut conn = rustls::ServerConnection::new(tls_server.clone()).unwrap();
                let mut shaken = true;
                while shaken && conn.is_handshaking() {
                    shaken = conn.complete_io(&mut tcp).is_ok();
                }
                if !shaken {
                    continue;
                }
                let stream = rustls::StreamOwned::new(conn, tcp);
                return serve_one(
                    stream,
                    "200 OK",
                    include_str!("testdata/node-labelled.json"),
                );
            }
            panic!("no client trusted the server");
        });
        let untrusting = ApiServer::new(
            "127.0.0.1",
            addr.port(),
            "t".into(),
            Some(tls_trusting(&other_ca).unwrap()),
        );
        let err = set(&untrusting, "worker-1", Some("0.1.0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TLS"), "{err}");
        let trusting = ApiServer::new(
            "127.0.0.1",
            addr.port(),
            "t".into(),
            Some(tls_trusting(&cluster_ca).unwrap()),
        );
        set(&trusting, "worker-1", Some("0.1.0")).unwrap();
        assert!(server
            .join()
            .unwrap()
            .line
            .starts_with("PATCH /api/v1/nodes/worker-1 "));
        assert!(tls_trusting(b"not a certificate").is_err());
    }
}
