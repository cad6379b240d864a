//! The node label `wasmpod.dev/installed=<version>` that the RuntimeClasses select on, set
//! on the installer's own node once containerd serves wasmpod's handlers, and removed by
//! uninstall: one merge patch of the Node through the Kubernetes API, with the pod's
//! in-cluster credentials (the ServiceAccount may patch nodes and nothing else).

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

use super::error::NodeError;

pub const LABEL: &str = "wasmpod.dev/installed";

/// Where the API server is and who we are, or why labelling is skipped.
pub enum Cluster {
    /// In a pod: `KUBERNETES_SERVICE_HOST` and the ServiceAccount token.
    InCluster(Box<kube::Config>),
    /// Not in a pod (an operator running the installer by hand, or a test).
    Outside,
}

impl Cluster {
    pub fn from_env() -> Result<Cluster, NodeError> {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            return Ok(Cluster::Outside);
        }
        kube::Config::incluster()
            .map(|c| Cluster::InCluster(Box::new(c)))
            .map_err(|e| NodeError::Label(format!("in-cluster credentials: {e}")))
    }
}

/// Sets the label to `value`, or removes it (`None`), on node `node`.
pub fn set(config: kube::Config, node: &str, value: Option<&str>) -> Result<(), NodeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NodeError::Label(format!("tokio: {e}")))?;
    rt.block_on(async move {
        let client = kube::Client::try_from(config).map_err(|e| NodeError::Label(e.to_string()))?;
        let nodes: Api<Node> = Api::all(client);
        let patch = serde_json::json!({ "metadata": { "labels": { LABEL: value } } });
        let node_after = nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| NodeError::Label(format!("PATCH node {node}: {e}")))?;
        let now = node_after
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL))
            .map(String::as_str);
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

    /// An API server that answers one request with `answer` (status line and body, shaped as
    /// the Kubernetes API server answers) and hands the request it got to the test.
    fn api_server(
        status: &'static str,
        answer: &'static str,
    ) -> (String, std::thread::JoinHandle<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
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
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
            Request {
                line: line.trim_end().to_string(),
                headers,
                body: String::from_utf8(body).unwrap(),
            }
        });
        (url, handle)
    }

    fn config(url: &str) -> kube::Config {
        let mut c = kube::Config::new(url.parse().unwrap());
        c.auth_info.token = Some("token-of-the-installer-sa".to_string().into());
        c
    }

    #[test]
    fn labels_the_node_with_a_merge_patch() {
        let (url, server) = api_server("200 OK", include_str!("testdata/node-labelled.json"));
        set(config(&url), "worker-1", Some("0.1.0")).unwrap();
        let req = server.join().unwrap();
        assert_eq!(req.line, "PATCH /api/v1/nodes/worker-1? HTTP/1.1");
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
        set(config(&url), "worker-1", None).unwrap();
        let body: serde_json::Value = serde_json::from_str(&server.join().unwrap().body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"metadata": {"labels": {"wasmpod.dev/installed": null}}})
        );
    }

    #[test]
    fn a_forbidden_answer_is_an_error_naming_the_node() {
        let (url, server) = api_server("403 Forbidden", include_str!("testdata/forbidden.json"));
        let err = set(config(&url), "worker-1", Some("0.1.0"))
            .unwrap_err()
            .to_string();
        server.join().unwrap();
        assert!(
            err.contains("worker-1") && err.contains("forbidden"),
            "{err}"
        );
    }
}
