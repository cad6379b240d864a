//! What a running containerd's CRI plugin sees: the runtime handlers in its verbose
//! `Status` (the `config` it loaded), asked over its socket the way kubelet asks.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::StatusRequest;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use super::error::NodeError;

/// The handler names the CRI plugin at `socket` has loaded, with each one's runtime type.
pub fn handlers(socket: &Path) -> Result<Vec<(String, String)>, NodeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NodeError::Command(format!("tokio: {e}")))?;
    let socket = socket.to_path_buf();
    rt.block_on(async move {
        let shown = socket.display().to_string();
        let channel = channel(&socket)
            .await
            .map_err(|e| NodeError::Command(format!("containerd at {shown}: {e}")))?;
        let status = RuntimeServiceClient::new(channel)
            .status(StatusRequest { verbose: true })
            .await
            .map_err(|e| NodeError::Command(format!("CRI status from {shown}: {}", e.message())))?
            .into_inner();
        let config = status.info.get("config").ok_or_else(|| {
            NodeError::Command(format!("the CRI plugin at {shown} reports no config"))
        })?;
        handlers_in_status(config)
    })
}

/// A gRPC channel to the unix socket `socket` (kubelet's way to reach a CRI runtime).
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

/// Waits up to `timeout` for the CRI plugin at `socket` to answer with all of `names`.
pub fn wait_for(socket: &Path, names: &[String], timeout: Duration) -> Result<(), NodeError> {
    let start = Instant::now();
    let mut last;
    loop {
        match handlers(socket) {
            Ok(seen) => {
                let missing: Vec<&String> = names
                    .iter()
                    .filter(|n| !seen.iter().any(|(s, _)| s == *n))
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                last = format!("it answers, without the handlers {missing:?}");
            }
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() > timeout {
            return Err(NodeError::Restart(format!(
                "containerd did not come back with wasmpod's handlers within {}s: {last}",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The runtimes in the `config` JSON of a verbose CRI status (`containerd.runtimes`, keyed
/// by handler, each with a `runtimeType`).
fn handlers_in_status(config: &str) -> Result<Vec<(String, String)>, NodeError> {
    let json: serde_json::Value = serde_json::from_str(config)
        .map_err(|e| NodeError::Command(format!("the CRI config is not JSON: {e}")))?;
    let runtimes = json
        .pointer("/containerd/runtimes")
        .and_then(|r| r.as_object())
        .ok_or_else(|| NodeError::Command("the CRI config lists no runtimes".into()))?;
    Ok(runtimes
        .iter()
        .map(|(name, r)| {
            let t = r
                .get("runtimeType")
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            (name.clone(), t.to_string())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_runtimes_from_the_status_config() {
        let config = r#"{"containerd":{"defaultRuntimeName":"runc","runtimes":{
            "runc":{"runtimeType":"io.containerd.runc.v2"},
            "spin":{"runtimeType":"io.containerd.spin.v2","options":{"SystemdCgroup":false}}}}}"#;
        assert_eq!(
            handlers_in_status(config).unwrap(),
            vec![
                ("runc".to_string(), "io.containerd.runc.v2".to_string()),
                ("spin".to_string(), "io.containerd.spin.v2".to_string())
            ]
        );
        assert!(handlers_in_status("{}").is_err());
        assert!(handlers_in_status("nope").is_err());
    }
}
